/**
 * End-to-end: `/v1/models` says when each model was created as a real Unix time in seconds, not 0.
 * vLLM stamps each ModelCard with the time it was built (`created`'s default_factory,
 * vllm/entrypoints/openai/models/protocol.py); the gateway gives the time it began serving the
 * models, read by the gateway host at start-up, the same in every answer. A gateway over a real sim
 * engine, asked over HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  getJson,
  MODEL,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';

const teardown = new Teardown();
let gw: TestGateway;
/** Unix seconds just before and just after the gateway started. */
let startedAfterS = 0;
let startedBeforeS = 0;

interface ModelEntry {
  readonly id: string;
  readonly object: string;
  readonly created: number;
}

before(async () => {
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  startedAfterS = Math.floor(Date.now() / 1000);
  gw = await startTestGateway({ backends: [simBackend('sim0', sims.engines[0] as never, false)] }, teardown);
  startedBeforeS = Math.ceil(Date.now() / 1000);
});

after(() => teardown.run());

describe('/v1/models created', { timeout: 30_000 }, () => {
  it("is the gateway's start in Unix seconds, the same in the list, on a second call and for one model", async () => {
    const first = await getJson<{ data: ModelEntry[] }>(`${gw.url}/v1/models`);
    const entry = first.data.find((m) => m.id === MODEL);
    assert.ok(entry !== undefined, JSON.stringify(first));
    assert.ok(Number.isInteger(entry.created), `created ${entry.created}`);
    assert.ok(
      entry.created >= startedAfterS && entry.created <= startedBeforeS,
      `created ${entry.created} is not within the start-up [${startedAfterS}, ${startedBeforeS}]`,
    );
    const again = await getJson<{ data: ModelEntry[] }>(`${gw.url}/v1/models`);
    assert.deepEqual(again, first);
    const one = await getJson<ModelEntry>(`${gw.url}/v1/models/${encodeURIComponent(MODEL)}`);
    assert.equal(one.created, entry.created);
  });
});
