/**
 * The twin rule for output lengths: a policy sees what the client declares (maxTokens), never the
 * trace's true length. The twin's request objects do carry the true length at run time (the engine
 * needs it), so this checks every registered policy's decisions are the same whatever that hidden
 * length is, with what the policy may learn (declarations, completions' counts) held equal.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../core/request.ts';
import { Rng } from '../../core/rng.ts';
import { testCluster } from './conformance.ts';
import { createRoutingPolicy, routingPolicyNames } from './registry.ts';

/** A request as the twin builds it, with a hidden true length (and the old field name, in case). */
function twinRequest(i: number, trueOutputTokens: number): Request {
  const hashes = Array.from({ length: 1 + (i % 5) }, (_, b) => (i % 3) * 1000 + b);
  const request = makeRequest({
    id: `r${i}`,
    inputTokens: 200 + ((i * 977) % 6000),
    maxTokens: 4096,
    arrivalMs: i * 20,
    prefix: { blockTokens: 16, hashes },
    model: 'llama-3.1-8b',
    slo: { ttftMs: 2000, tpotMs: 100 },
  });
  return { ...request, trueOutputTokens, outputTokens: trueOutputTokens } as Request;
}

function decisions(name: string, trueOutputTokens: (i: number) => number): string[] {
  const policy = createRoutingPolicy(name);
  const rng = new Rng(7);
  const out: string[] = [];
  const live: Request[] = [];
  for (let i = 0; i < 300; i++) {
    const view = {
      ...testCluster(6, (k) => ({ inFlight: (i + k) % 4, models: ['llama-3.1-8b'] })),
      nowMs: i * 20,
    };
    const request = twinRequest(i, trueOutputTokens(i));
    const d = policy.decide(view, request, rng);
    out.push(d.kind === 'route' ? d.instanceId : `reject:${d.code}`);
    if (d.kind !== 'route') continue;
    policy.onRouted?.(request, d.instanceId, view.nowMs);
    policy.onFirstToken?.(request, d.instanceId, view.nowMs + 5);
    live.push(request);
    if (live.length > 8) {
      const done = live.shift() as Request;
      // What a completion reports is held equal across runs: only the hidden field differs.
      policy.onCompleted?.(done, 'i0', view.nowMs + 10, 100 + (i % 50));
    }
  }
  return out;
}

for (const name of routingPolicyNames()) {
  test(`${name}: decisions do not depend on the hidden true output length`, () => {
    assert.deepEqual(
      decisions(name, () => 1),
      decisions(name, (i) => 1 + ((i * 7919) % 8000)),
    );
  });
}
