import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { SwitchyardError } from '../../../core/errors.ts';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { InstanceView } from '../../../core/view.ts';
import { runProfileConformance, runRoutingConformance, testCluster } from '../conformance.ts';
import { createLlmd } from '../llm-d/llm-d.ts';
import { createProfilePolicy } from '../profile.ts';
import { createConfiguredPolicy, createRoutingPolicy } from '../registry.ts';
import { buildProfile, profileParams } from './profile-policy.ts';

const MIX = {
  filters: [{ type: 'low-queue', params: { queueDepthMax: 64 } }],
  scorers: [
    { type: 'in-flight', weight: 1 },
    { type: 'kv-usage', weight: 2 },
    { type: 'prefix-cache', weight: 3 },
    { type: 'session-affinity', weight: 1 },
    { type: 'kv-cost', weight: 1, params: { overlapWeight: 2 } },
  ],
  picker: { type: 'softmax', params: { temperature: 0.1 } },
};

runRoutingConformance('profile', () => createRoutingPolicy('profile', MIX));
runProfileConformance('profile', (extra) => {
  const spec = buildProfile(profileParams.parse(MIX));
  return createProfilePolicy('profile', { ...spec, filters: [...spec.filters, ...extra] });
});

function request(i: number): Request {
  const family = i % 3;
  const blocks = 4 + (i % 5);
  return makeRequest({
    id: `r${i}`,
    inputTokens: blocks * 16,
    maxTokens: 8,
    arrivalMs: i,
    prefix: { blockTokens: 16, hashes: Array.from({ length: blocks }, (_, b) => family * 1000 + b) },
  });
}

test("profile: llm-d's mix written in YAML decides exactly as the llm-d policy", () => {
  const yaml = `
routing:
  policy: mine
  policies:
    mine:
      type: profile
      params:
        scorers:
          - { type: queue, weight: 2 }
          - { type: kv-usage, weight: 2 }
          - { type: prefix-cache, weight: 3 }
        picker: { type: max-score }
`;
  const routing = (parseYaml(yaml) as { routing: { policy: string; policies: never } }).routing;
  const mine = createConfiguredPolicy(routing.policy, routing.policies);
  const llmd = createLlmd();
  assert.equal(mine.name, 'mine');
  const rngA = new Rng(3);
  const rngB = new Rng(3);
  let distinct = 0;
  for (let i = 0; i < 300; i++) {
    const view = testCluster(5, (k) => ({ waiting: (i * 7 + k * 3) % 6, kvUsage: ((i + k) % 10) / 10 }));
    const r = request(i);
    const a = mine.decide(view, r, rngA);
    const b = llmd.decide(view, r, rngB);
    assert.deepEqual(a, b, `decision ${i}`);
    if (a.kind !== 'route') continue;
    mine.onRouted?.(r, a.instanceId, i);
    llmd.onRouted?.(r, a.instanceId, i);
    if (a.instanceId !== 'i0') distinct++;
  }
  assert.ok(distinct > 0, 'the decisions vary');
});

test('profile: weights change the decision (queue-only vs kv-only on the same view)', () => {
  const view = testCluster(2, (k) => ({ waiting: [0, 9][k] ?? 0, kvUsage: [0.9, 0.1][k] ?? 0 }));
  const only = (type: string) =>
    createRoutingPolicy('profile', { scorers: [{ type, weight: 1 }] }).decide(view, request(1), new Rng(1));
  assert.deepEqual(only('queue'), { kind: 'route', instanceId: 'i0' });
  assert.deepEqual(only('kv-usage'), { kind: 'route', instanceId: 'i1' });
});

test('profile: low-queue filter keeps short queues, and everyone when no queue is short', () => {
  const policy = createRoutingPolicy('profile', {
    filters: [{ type: 'low-queue', params: { queueDepthMax: 2 } }],
    scorers: [{ type: 'kv-usage' }],
  });
  const busy = testCluster(3, (k) => ({ waiting: [5, 1, 9][k] ?? 0, kvUsage: [0, 0.5, 0][k] ?? 0 }));
  assert.deepEqual(policy.decide(busy, request(0), new Rng(1)), { kind: 'route', instanceId: 'i1' });
  const allBusy = testCluster(3, (k) => ({ waiting: 10, kvUsage: [0.5, 0.2, 0.9][k] ?? 0 }));
  assert.deepEqual(policy.decide(allBusy, request(0), new Rng(1)), { kind: 'route', instanceId: 'i1' });
});

function configError(params: unknown, ...fragments: string[]): void {
  assert.throws(
    () => createRoutingPolicy('profile', params as Record<string, unknown>, undefined, 'p'),
    (e: unknown) => {
      assert.ok(e instanceof SwitchyardError);
      assert.equal(e.code, 'SY_ERR_INVALID_CONFIG');
      for (const f of fragments) assert.ok(e.message.includes(f), `'${f}' not in: ${e.message}`);
      return true;
    },
  );
}

test('profile: unknown keys and plugin names fail, listing the valid ones', () => {
  configError({ scorer: [] }, 'scorer', 'valid: filters, picker, scorers');
  configError({ scorers: [{ type: 'queue', wieght: 2 }] }, 'scorers.0', 'valid: params, type, weight');
  configError(
    { scorers: [{ type: 'least-queue' }] },
    'scorers.0.type',
    "unknown scorer 'least-queue'",
    'kv-cost',
  );
  configError({ scorers: [{ type: 'kv-cost', params: { overlap: 1 } }] }, 'overlapWeight');
  configError({ filters: [{ type: 'zone' }] }, 'filters.0.type', 'valid: eligible, low-kv-usage, low-queue');
  configError({ picker: { type: 'random' } }, 'picker.type', 'valid: max-score, softmax');
  configError({ picker: { type: 'softmax' } }, 'picker.params.temperature');
  configError({ scorers: [] }, 'scorers');
  configError({ scorers: [{ type: 'queue', weight: -1 }] }, 'scorers.0.weight');
});

test('profile: a stateful scorer is fresh per policy, so two profiles never share an index', () => {
  const a = createRoutingPolicy('profile', { scorers: [{ type: 'prefix-cache' }] });
  const b = createRoutingPolicy('profile', { scorers: [{ type: 'prefix-cache' }] });
  const view = testCluster(4);
  const r = request(0);
  a.onRouted?.(r, 'i3', 0);
  assert.deepEqual(a.decide(view, r, new Rng(1)), { kind: 'route', instanceId: 'i3' });
  // b learned nothing: a tie over four instances, broken by its own seeded generator.
  const picks = new Set<string>();
  for (let s = 0; s < 16; s++) {
    const d = b.decide(view, r, new Rng(s));
    if (d.kind === 'route') picks.add(d.instanceId);
  }
  assert.ok(picks.size > 1);
  assert.equal((view.instances[3] as InstanceView).id, 'i3');
});
