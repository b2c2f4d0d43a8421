import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InstanceId } from '../core/ids.ts';
import type { KvEvent } from '../core/kv-events.ts';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { createWorkload } from '../workload/create.ts';
import { runSimulation } from './simulator.ts';

/**
 * The twin hands each engine's KV events to the policy when vLLM publishes them: at the end of the
 * step that caused them (`update_from_output`), not when the step is scheduled. Every Mooncake
 * conversation prompt opens with the same 512-token block; had the first instance's BlockStored for
 * it arrived while its first step was still running, every later request would match it there
 * alone, and `kv-events` (longest match first) would send the whole trace to that one instance.
 */
test('twin: kv-events spreads a Mooncake burst over the fleet (KV events arrive at step ends)', () => {
  const inner = createRoutingPolicy('kv-events');
  const routed = new Map<string, number>();
  let events = 0;
  const policy: RoutingPolicy = {
    name: inner.name,
    decide(view, request, rng) {
      const decision = inner.decide(view, request, rng);
      if (decision.kind === 'route')
        routed.set(decision.instanceId, (routed.get(decision.instanceId) ?? 0) + 1);
      return decision;
    },
    onKvEvent(instanceId: InstanceId, event: KvEvent, nowMs: number) {
      events++;
      inner.onKvEvent?.(instanceId, event, nowMs);
    },
  };
  const source = createWorkload(
    { kind: 'trace', trace: 'sample:mooncake-conversation', maxRequests: 300 },
    new Rng(1).fork('workload'),
  );
  const result = runSimulation(source, {
    seed: 1,
    cluster: { groups: [{ count: 8, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: { ...DEFAULT_ENGINE_CONFIG },
    policy,
    slo: { ttftMs: 5000, tpotMs: 100 },
    workload: 'kv-events delivery test',
  });
  assert.ok(events > 0, 'no KV events reached the policy');
  assert.equal(result.summary.completed, 300);
  // Every instance takes a share; none more than a third of the trace.
  assert.equal(routed.size, 8, `routed to ${[...routed.keys()].join(',')}`);
  for (const [id, n] of routed) assert.ok(n <= 100, `${id} took ${n} of 300`);
});
