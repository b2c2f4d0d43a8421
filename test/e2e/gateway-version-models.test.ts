/**
 * End-to-end: vLLM's `GET /version` on the gateway and on both built-in engines, as real processes.
 *
 * vLLM answers `{"version": VLLM_VERSION}` (`show_version`, vllm/entrypoints/openai/api_server.py),
 * outside /v1, so without an API key; ops scripts and some clients (a vLLM-aware dashboard, health
 * scripts that log the server's version) GET it. The gateway answered 404 (with a hint that it was
 * vLLM's own route) and the engines a plain 404. Now each answers Switchyard's version, the
 * `version` of package.json: the gateway its own (its engines may run other versions, and the
 * route names no model), a built-in engine Switchyard's too.
 *
 * `max_model_len` in the gateway's /v1/models: vLLM's and SGLang's ModelCard carry the context length
 * and ops scripts and benchmarks read it; the built-in engines' own listings had it, the gateway's
 * had none. The gateway now reads each backend's /v1/models after a passed health check and lists,
 * per model, the smallest length its backends report; a backend that reports none (a hosted API)
 * adds nothing, and a model none of whose backends reports one has no such field.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type FakeUpstream, startFakeUpstream } from '../../src/gateway/fake-upstream.ts';
import {
  assertErrorBody,
  MODEL,
  REQUEST_DEADLINE_MS,
  type SimEngine,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import {
  LLAMA_MODEL,
  type LlamaEngine,
  startLlamaEngine,
  stopLlamaEngines,
  tinyLlamaModel,
} from './support/llama.ts';

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** A tenant key: /version needs none, as vLLM's --api-key guards only /v1 routes. */
const KEY = 'sk-tenant';

/** A model two recording vLLM backends serve, reporting different context lengths. */
const REAL = 'real-model';
/** A model only an OpenAI-type backend serves, whose listing has no `max_model_len`. */
const HOSTED = 'hosted-model';

/** A recording backend for `model` whose /v1/models reports `len` (none when undefined). */
async function upstream(model: string, len: number | undefined, teardown: Teardown): Promise<FakeUpstream> {
  const u = await startFakeUpstream(model);
  u.maxModelLen = len;
  teardown.add(() => u.close());
  return u;
}

const setUp = fileSetUp(new Teardown(), ['sim', 'llama', 'gw'], async (teardown) => {
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const sim = sims.engines[0] as SimEngine;
  const llama = await startLlamaEngine(['--model', tinyLlamaModel()]);
  teardown.add(() => stopLlamaEngines([llama]));
  const big = await upstream(REAL, 8192, teardown);
  const small = await upstream(REAL, 4096, teardown);
  const hosted = await upstream(HOSTED, undefined, teardown);
  const gw: TestGateway = await startTestGateway(
    {
      backends: [
        { id: 'sim0', type: 'sim', url: sim.url, models: [MODEL] },
        { id: 'l0', type: 'llama', url: llama.url, models: [LLAMA_MODEL] },
        { id: 'big', type: 'vllm', url: big.url, models: [REAL], metricsPath: null },
        { id: 'small', type: 'vllm', url: small.url, models: [REAL], metricsPath: null },
        { id: 'hosted', type: 'openai', url: hosted.url, models: [HOSTED], apiKey: 'sk-upstream' },
      ],
      tenants: [{ key: KEY, name: 'team' }],
    },
    teardown,
  );
  return { sim, llama: llama as LlamaEngine, gw };
});

async function get(url: string, method = 'GET'): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, { method, signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('GET /version', () => {
  it("the gateway answers vLLM's shape with Switchyard's package version, no API key needed", async () => {
    const r = await get(`${setUp.gw.url}/version`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(JSON.parse(r.text), { version: PACKAGE_VERSION });
    const head = await get(`${setUp.gw.url}/version`, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  it('the gateway answers another method 405 with Allow', async () => {
    const r = await get(`${setUp.gw.url}/version`, 'POST');
    assert.equal(r.status, 405, r.text);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
    assert.equal(assertErrorBody(r.text, 405).error.code, 'SY_ERR_METHOD_NOT_ALLOWED');
  });

  it('both built-in engines answer it too', async () => {
    for (const url of [setUp.sim.url, setUp.llama.url]) {
      const r = await get(`${url}/version`);
      assert.equal(r.status, 200, `${url}: ${r.text}`);
      assert.deepEqual(JSON.parse(r.text), { version: PACKAGE_VERSION });
      const wrong = await get(`${url}/version`, 'DELETE');
      assert.equal(wrong.status, 405, wrong.text);
    }
  });
});

/** One entry of a /v1/models answer. */
interface ModelEntry {
  readonly id: string;
  readonly max_model_len?: number;
}

async function gatewayModels(): Promise<Map<string, ModelEntry>> {
  const res = await fetch(`${setUp.gw.url}/v1/models`, {
    headers: { authorization: `Bearer ${KEY}` },
    signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { data: ModelEntry[] };
  return new Map(body.data.map((m) => [m.id, m]));
}

async function engineLen(url: string): Promise<number | undefined> {
  const res = await fetch(`${url}/v1/models`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  return ((await res.json()) as { data: ModelEntry[] }).data[0]?.max_model_len;
}

describe('max_model_len in the gateway /v1/models', () => {
  it("carries each built-in engine's own length, in the list and by id", async () => {
    const models = await gatewayModels();
    const simLen = await engineLen(setUp.sim.url);
    assert.ok(simLen !== undefined && simLen > 0, `the sim reports ${simLen}`);
    assert.equal(models.get(MODEL)?.max_model_len, simLen);
    // The llama engine of these tests runs with --context-size 1024.
    assert.equal(await engineLen(setUp.llama.url), 1024);
    assert.equal(models.get(LLAMA_MODEL)?.max_model_len, 1024);
    const res = await fetch(`${setUp.gw.url}/v1/models/${LLAMA_MODEL}`, {
      headers: { authorization: `Bearer ${KEY}` },
      signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
    });
    assert.equal(((await res.json()) as ModelEntry).max_model_len, 1024);
  });

  it('the smallest where backends of one model disagree; none where no backend reports one', async () => {
    const models = await gatewayModels();
    assert.equal(models.get(REAL)?.max_model_len, 4096);
    const hosted = models.get(HOSTED);
    assert.ok(hosted !== undefined);
    assert.equal(Object.hasOwn(hosted, 'max_model_len'), false, JSON.stringify(hosted));
  });

  it('a removed backend no longer bounds its model', async () => {
    assert.equal(setUp.gw.gateway.removeBackend('small'), true);
    assert.equal((await gatewayModels()).get(REAL)?.max_model_len, 8192);
  });
});
