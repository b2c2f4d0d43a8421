import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../core/request.ts';
import { Rng } from '../../core/rng.ts';
import type { ClusterView } from '../../core/view.ts';
import { testCluster } from '../routing/conformance.ts';
import { createRoutingPolicy, defaultPolicyContext } from '../routing/registry.ts';
import { withEarlyReject } from './early-reject.ts';

const MODEL = 'llama-3.1-8b';
const slo = { ttftMs: 500, tpotMs: 50 };
const view = (pendingPrefillTokens: number): ClusterView =>
  testCluster(4, () => ({ models: [MODEL], pendingPrefillTokens, inFlight: 0, running: 0, waiting: 0 }));
const req = (id: string, inputTokens: number): Request =>
  makeRequest({ id, model: MODEL, inputTokens, maxTokens: 256, arrivalMs: 0, slo });

for (const predictor of ['goodput', 'optimistic'] as const) {
  test(`${predictor}: round-robin behind the step keeps its placement and loses only the hopeless`, () => {
    const alone = createRoutingPolicy('round-robin');
    const behind = withEarlyReject(createRoutingPolicy('round-robin'), { predictor }, defaultPolicyContext());
    assert.equal(behind.name, 'round-robin');
    const rngA = new Rng(1);
    const rngB = new Rng(1);
    // An idle cluster and short prompts: the step admits everything, round-robin places as alone.
    for (let i = 0; i < 8; i++) {
      const a = alone.decide(view(0), req(`a${i}`, 500), rngA);
      const b = behind.decide(view(0), req(`a${i}`, 500), rngB);
      assert.deepEqual(b, a);
      if (a.kind === 'route') alone.onRouted?.(req(`a${i}`, 500), a.instanceId, 0);
      if (b.kind === 'route') behind.onRouted?.(req(`a${i}`, 500), b.instanceId, 0);
    }
    // A prompt whose prefill alone takes longer than the TTFT SLO on any instance: refused.
    const hopeless = behind.decide(view(0), req('long', 120_000), new Rng(1));
    assert.ok(
      hopeless.kind === 'reject' && hopeless.code === 'SY_ERR_SLO_UNREACHABLE',
      JSON.stringify(hopeless),
    );
    assert.ok(hopeless.kind === 'reject' && (hopeless.retryAfterMs ?? 0) >= 1);
  });

  test(`${predictor}: a deep prefill queue everywhere refuses a request that fits an idle cluster`, () => {
    const behind = withEarlyReject(
      createRoutingPolicy('least-request'),
      { predictor },
      defaultPolicyContext(),
    );
    assert.equal(behind.decide(view(0), req('ok', 2000), new Rng(1)).kind, 'route');
    const queued = behind.decide(view(400_000), req('late', 2000), new Rng(1));
    // The optimistic predictor reads the host's pending prefill; goodput's its own accounting, which
    // has routed nothing yet: only the former sees this queue.
    assert.equal(queued.kind, predictor === 'optimistic' ? 'reject' : 'route');
  });
}

test('the goodput judge behind goodput without its own rejection refuses as goodput alone does', () => {
  const context = defaultPolicyContext();
  const alone = createRoutingPolicy('goodput', {}, context);
  const behind = withEarlyReject(
    createRoutingPolicy('goodput', { rejectEarly: false }, context),
    {},
    context,
  );
  for (let i = 0; i < 200; i++) {
    const r = req(`r${i}`, 500 + ((i * 7919) % 20_000));
    const v = { ...view(0), nowMs: i * 5 };
    const a = alone.decide(v, r, new Rng(i));
    const b = behind.decide(v, r, new Rng(i));
    assert.equal(b.kind, a.kind, `request ${i}`);
    if (a.kind === 'route') alone.onRouted?.(r, a.instanceId, v.nowMs);
    if (b.kind === 'route') behind.onRouted?.(r, b.instanceId, v.nowMs);
  }
});

test('bad step parameters fail as SY_ERR_INVALID_CONFIG naming the key', () => {
  assert.throws(
    () => withEarlyReject(createRoutingPolicy('random'), { ttftSlack: -1 }, defaultPolicyContext()),
    /SY_ERR_INVALID_CONFIG|earlyReject: ttftSlack/,
  );
  assert.throws(
    () =>
      withEarlyReject(createRoutingPolicy('random'), { goodput: { harmMax: 'x' } }, defaultPolicyContext()),
    /earlyReject\.goodput: harmMax/,
  );
});

test('the step never reads the hidden true output length (both predictors)', () => {
  for (const predictor of ['goodput', 'optimistic'] as const) {
    const run = (trueOutputTokens: (i: number) => number): string[] => {
      const policy = withEarlyReject(
        createRoutingPolicy('round-robin'),
        { predictor },
        defaultPolicyContext(),
      );
      const out: string[] = [];
      for (let i = 0; i < 200; i++) {
        const hidden = trueOutputTokens(i);
        const r = {
          ...req(`r${i}`, 500 + ((i * 7919) % 30_000)),
          trueOutputTokens: hidden,
          outputTokens: hidden,
        };
        const v = { ...view((i * 3001) % 20_000), nowMs: i * 10 };
        const d = policy.decide(v, r, new Rng(i));
        out.push(d.kind === 'route' ? d.instanceId : d.code);
        if (d.kind !== 'route') continue;
        policy.onRouted?.(r, d.instanceId, v.nowMs);
        policy.onFirstToken?.(r, d.instanceId, v.nowMs + 1);
        if (i % 3 === 0) policy.onCompleted?.(r, d.instanceId, v.nowMs + 2, 120);
      }
      return out;
    };
    assert.deepEqual(
      run(() => 1),
      run((i) => 1 + ((i * 104_729) % 9000)),
      predictor,
    );
  }
});
