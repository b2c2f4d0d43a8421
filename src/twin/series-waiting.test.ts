import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routeTo } from '../core/decision.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import type { TwinRequest } from '../workload/types.ts';
import { toEngineConfig } from './config.ts';
import { runSimulation } from './simulator.ts';

/**
 * The run output's per-instance `waiting` series counts what the scraped view counts: a request
 * fetching its prefix from a KV store sits in vLLM's waiting queue (WAITING_FOR_REMOTE_KVS), so it
 * is waiting there, though the twin's engine has not been given it yet.
 */

const GPU = 'h100';
const MODEL = 'llama-3.1-8b';

function withPrefix(id: string, arrivalMs: number): TwinRequest {
  return {
    id,
    model: MODEL,
    tenant: 't',
    priority: 0,
    inputTokens: 4096 + 100,
    maxTokens: 4,
    trueOutputTokens: 4,
    arrivalMs,
    slo: undefined,
    prefix: { blockTokens: 512, hashes: [11, 12, 13, 14, 15, 16, 17, 18] },
    sessionId: undefined,
  } as TwinRequest;
}

const byId: RoutingPolicy = {
  name: 'scripted',
  decide: (_view, request) => routeTo(request.id === 'a' ? 'i0' : 'i1'),
};

test('the waiting series counts a request fetching its prefix from a KV store, as the view does', () => {
  // a caches the 4k-token prefix on i0; b reaches i1 10 ms before the 10 s sample and fetches it from
  // i0 (about 25 ms over RoCE), so the sample falls inside the fetch.
  const result = runSimulation([withPrefix('a', 0), withPrefix('b', 9_990)], {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: toEngineConfig({ kvStore: { kind: 'peer', link: 'roce-200' } }, GPU),
    policy: byId,
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'series waiting',
  });
  assert.equal(result.kvStore?.perInstance[1]?.fetches, 1, 'b fetched on i1');
  assert.ok((result.kvStore?.perInstance[1]?.fetchMs as number) > 10, 'the fetch spans the 10 s sample');
  const series = result.report.series;
  const at10s = series.tS.indexOf(10);
  assert.ok(at10s >= 0, `a sample at 10 s: ${series.tS.join(',')}`);
  assert.equal(series.waiting.i1?.[at10s], 1, 'the fetching request is waiting at 10 s');
  assert.equal(series.running.i1?.[at10s], 0, 'and not running');
  assert.equal(series.waiting.i1?.[at10s - 1], 0, 'nothing waited there before');
  assert.equal(result.summary.completed, 2);
});
