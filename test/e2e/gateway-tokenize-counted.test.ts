/**
 * End-to-end: the gateway's tokenizer routes (vLLM's /tokenize, /detokenize, /tokenizer_info;
 * src/gateway/tokenize-route.ts) are counted. They were served but in no counter: /stats and
 * /metrics showed nothing of them, so an operator could not see lm-eval's remote tokenizer traffic
 * or its failures. Each request now counts once, by route and outcome, in /stats (`tokenizer`) and
 * in `switchyard_gateway_tokenizer_requests_total{route,outcome}`: `ok` (the backend's 2xx relayed),
 * `backend_error` (its non-2xx relayed), `rejected` (the gateway refused it: also in
 * `rejected{code}`, as before) and `failed` (the backend's answer broke off). Errors stay
 * OpenAI-style.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FakeUpstream, startFakeUpstream } from '../../src/gateway/fake-upstream.ts';
import {
  assertErrorBody,
  MODEL,
  metricSum,
  post,
  REQUEST_DEADLINE_MS,
  scrape,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import { LLAMA_MODEL, startLlamaEngine, stopLlamaEngines, tinyLlamaModel } from './support/llama.ts';

const KEY = 'sk-tenant';
const AUTH = { authorization: `Bearer ${KEY}` };
/** A model a recording vLLM backend serves (told to break its answer off in one test). */
const REAL = 'real-model';

const set = fileSetUp(new Teardown(), ['gw', 'upstream'], async (teardown) => {
  const llama = await startLlamaEngine(['--model', tinyLlamaModel()]);
  teardown.add(() => stopLlamaEngines([llama]));
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const upstream: FakeUpstream = await startFakeUpstream(REAL);
  teardown.add(() => upstream.close());
  const gw: TestGateway = await startTestGateway(
    {
      backends: [
        { id: 'l0', type: 'llama', url: llama.url, models: [LLAMA_MODEL] },
        simBackend('s0', sims.engines[0]!, false),
        { id: 'rec', type: 'vllm', url: upstream.url, models: [REAL], metricsPath: null },
      ],
      tenants: [{ key: KEY, name: 'team' }],
    },
    teardown,
  );
  return { gw, upstream };
});

type Counts = Record<string, Record<string, number>>;

/** /stats' tokenizer counters and rejections. */
async function stats(): Promise<{ tokenizer: Counts; rejected: Record<string, number> }> {
  const res = await fetch(`${set.gw.url}/stats`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  return (await res.json()) as { tokenizer: Counts; rejected: Record<string, number> };
}

/** How many more of (route, outcome) `after` has than `before`. */
function delta(before: Counts, after: Counts, route: string, outcome: string): number {
  return (after[route]?.[outcome] ?? 0) - (before[route]?.[outcome] ?? 0);
}

async function get(
  path: string,
  headers: Record<string, string> = AUTH,
): Promise<{ status: number; text: string }> {
  const res = await fetch(set.gw.url + path, { headers, signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  return { status: res.status, text: await res.text() };
}

describe('tokenizer routes in /stats and /metrics', () => {
  it('a relayed 2xx counts ok, a relayed non-2xx backend_error, by route', async () => {
    const before = (await stats()).tokenizer;
    const tokenized = await post(
      set.gw.url,
      '/tokenize',
      { model: LLAMA_MODEL, prompt: 'hello' },
      { headers: AUTH },
    );
    assert.equal(tokenized.status, 200, tokenized.text);
    const detok = await post(
      set.gw.url,
      '/detokenize',
      { model: LLAMA_MODEL, tokens: [1, 2] },
      { headers: AUTH },
    );
    assert.equal(detok.status, 200, detok.text);
    // The sim has no vocabulary: its /detokenize is 400 and its /tokenizer_info 404, relayed.
    const simDetok = await post(set.gw.url, '/detokenize', { model: MODEL, tokens: [1] }, { headers: AUTH });
    assert.equal(simDetok.status, 400, simDetok.text);
    assertErrorBody(simDetok.text, 400);
    const info = await get(`/tokenizer_info?model=${LLAMA_MODEL}`);
    assert.equal(info.status, 200, info.text);
    const simInfo = await get(`/tokenizer_info?model=${MODEL}`);
    assert.equal(simInfo.status, 404, simInfo.text);
    const after = (await stats()).tokenizer;
    assert.equal(delta(before, after, '/tokenize', 'ok'), 1);
    assert.equal(delta(before, after, '/detokenize', 'ok'), 1);
    assert.equal(delta(before, after, '/detokenize', 'backend_error'), 1);
    assert.equal(delta(before, after, '/tokenizer_info', 'ok'), 1);
    assert.equal(delta(before, after, '/tokenizer_info', 'backend_error'), 1);
    const metrics = await scrape(set.gw.url);
    const name = 'switchyard_gateway_tokenizer_requests_total';
    for (const [route, byOutcome] of Object.entries(after))
      for (const [outcome, n] of Object.entries(byOutcome))
        assert.equal(
          metricSum(metrics, name, `route="${route}",outcome="${outcome}"`),
          n,
          `${route} ${outcome}`,
        );
  });

  it("the gateway's refusals count rejected (and in rejected{code}), OpenAI-style", async () => {
    const before = await stats();
    const unknown = await post(set.gw.url, '/tokenize', { model: 'nope', prompt: 'x' }, { headers: AUTH });
    assert.equal(assertErrorBody(unknown.text, 404).error.param, 'model');
    const notJson = await post(set.gw.url, '/detokenize', '{"tokens": [1', { headers: AUTH });
    assert.equal(assertErrorBody(notJson.text, 400).error.code, 'SY_ERR_INVALID_ARGUMENT');
    const noKey = await post(set.gw.url, '/tokenize', { model: LLAMA_MODEL, prompt: 'x' });
    assert.equal(assertErrorBody(noKey.text, 401).error.code, 'SY_ERR_UNAUTHORIZED');
    // Three models served, none named: 400 naming model.
    const noModel = await get('/tokenizer_info');
    assert.equal(assertErrorBody(noModel.text, 400).error.param, 'model');
    const infoNoKey = await get(`/tokenizer_info?model=${LLAMA_MODEL}`, {});
    assert.equal(infoNoKey.status, 401, infoNoKey.text);
    const after = await stats();
    assert.equal(delta(before.tokenizer, after.tokenizer, '/tokenize', 'rejected'), 2);
    assert.equal(delta(before.tokenizer, after.tokenizer, '/detokenize', 'rejected'), 1);
    assert.equal(delta(before.tokenizer, after.tokenizer, '/tokenizer_info', 'rejected'), 2);
    const rejected = (code: string): number => (after.rejected[code] ?? 0) - (before.rejected[code] ?? 0);
    assert.equal(rejected('SY_ERR_NOT_FOUND'), 1);
    assert.equal(rejected('SY_ERR_INVALID_ARGUMENT'), 2);
    assert.equal(rejected('SY_ERR_UNAUTHORIZED'), 2);
  });

  it('a backend answer that breaks off counts failed', async () => {
    const before = (await stats()).tokenizer;
    // A content-length 10 bytes past what it sends, then the connection closed.
    set.upstream.behaviour.shortByBytes = 10;
    try {
      await post(set.gw.url, '/tokenize', { model: REAL, prompt: 'x' }, { headers: AUTH }).catch(
        () => undefined,
      );
    } finally {
      delete set.upstream.behaviour.shortByBytes;
    }
    const after = (await stats()).tokenizer;
    assert.equal(delta(before, after, '/tokenize', 'failed'), 1);
    assert.equal(delta(before, after, '/tokenize', 'ok'), 0);
  });
});
