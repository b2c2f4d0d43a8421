/**
 * End-to-end: vLLM's `GET /version` on the gateway and on both built-in engines, as real processes.
 *
 * vLLM answers `{"version": VLLM_VERSION}` (`show_version`, vllm/entrypoints/openai/api_server.py),
 * outside /v1, so without an API key; ops scripts and some clients (a vLLM-aware dashboard, health
 * scripts that log the server's version) GET it. The gateway answered 404 (with a hint that it was
 * vLLM's own route) and the engines a plain 404. Now each answers Switchyard's version, the
 * `version` of package.json: the gateway its own (its engines may run other versions, and the
 * route names no model), a built-in engine Switchyard's too.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
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

const setUp = fileSetUp(new Teardown(), ['sim', 'llama', 'gw'], async (teardown) => {
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const sim = sims.engines[0] as SimEngine;
  const llama = await startLlamaEngine(['--model', tinyLlamaModel()]);
  teardown.add(() => stopLlamaEngines([llama]));
  const gw: TestGateway = await startTestGateway(
    {
      backends: [
        { id: 'sim0', type: 'sim', url: sim.url, models: [MODEL] },
        { id: 'l0', type: 'llama', url: llama.url, models: [LLAMA_MODEL] },
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
