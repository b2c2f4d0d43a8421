/**
 * End-to-end: the built-in engines (`switchyard engine sim` and `switchyard engine llama`, real
 * child processes) take request bodies of the OpenAI endpoints only as `Content-Type:
 * application/json` (parameters allowed, any case), by the gateway's own rule
 * (src/core/content-type.ts): `text/plain`, a form (`curl -d` without -H sends
 * application/x-www-form-urlencoded) or none at all is 415 SY_ERR_UNSUPPORTED_MEDIA_TYPE naming
 * the header to send, with the same body the gateway answers; a P/D engine's front server (which
 * rewrites chat and completion bodies) passes such a body on as it came, for the same refusal.
 * Before, the engines parsed any of them as JSON and served them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { contentTypeRefusal } from '../../src/core/content-type.ts';
import { errorBody } from '../../src/engine-servers/respond.ts';
import { MODEL, type SimEngine, spawnSim, Teardown } from './support/cluster.ts';
import {
  LLAMA_MODEL,
  type LlamaEngine,
  startLlamaEngine,
  stopLlamaEngines,
  tinyLlamaModel,
} from './support/llama.ts';

const teardown = new Teardown();
let sim: SimEngine;
let llama: LlamaEngine;
/** A sim engine as the decode side of a P/D pair: its front server reads chat and completion bodies. */
let pdDecode: SimEngine;

before(async () => {
  [sim, pdDecode, llama] = await Promise.all([
    spawnSim(['--time-scale', '0.05', '--kv-events', 'none'], 0, teardown),
    spawnSim(
      ['--time-scale', '0.05', '--kv-events', 'none', '--pd-protocol', 'vllm', '--pd-role', 'decode'],
      0,
      teardown,
    ),
    startLlamaEngine(['--model', tinyLlamaModel()]),
  ]);
  teardown.add(() => stopLlamaEngines([llama]));
});

after(() => teardown.run());

/** Request bodies of the four endpoints for `model`. */
function bodies(model: string): Record<string, Record<string, unknown>> {
  return {
    '/v1/chat/completions': { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    '/v1/completions': { model, prompt: 'hi', max_tokens: 2 },
    '/v1/embeddings': { model, input: 'hi' },
    '/v1/responses': { model, input: 'hi', max_output_tokens: 2 },
  };
}

/** POSTs `body`'s JSON bytes with `type` as Content-Type (undefined: none at all). */
async function send(
  url: string,
  body: unknown,
  type: string | undefined,
): Promise<{ status: number; text: string }> {
  // Bytes, not a string: fetch would add text/plain;charset=UTF-8 to a string body.
  const res = await fetch(url, {
    method: 'POST',
    headers: type === undefined ? {} : { 'content-type': type },
    body: new TextEncoder().encode(JSON.stringify(body)),
  });
  return { status: res.status, text: await res.text() };
}

/** curl's answer as [body, status], or undefined without curl. */
async function curl(url: string, ...args: string[]): Promise<[string, string] | undefined> {
  const out = await promisify(execFile)('curl', ['-sS', '-w', '\n%{http_code}', ...args, url]).then(
    ({ stdout }) => stdout,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    },
  );
  if (out === undefined) return undefined;
  const cut = out.lastIndexOf('\n');
  return [out.slice(0, cut), out.slice(cut + 1)];
}

describe('built-in engines: request Content-Type', { timeout: 120_000 }, () => {
  for (const [name, engine, model] of [
    ['sim', () => sim, MODEL],
    ['llama', () => llama, LLAMA_MODEL],
    ['sim P/D decode', () => pdDecode, MODEL],
  ] as const) {
    it(`${name}: anything but application/json is the gateway's 415 on every endpoint; application/json in any case, with parameters, is served`, async () => {
      for (const [path, body] of Object.entries(bodies(model))) {
        const url = engine().url + path;
        for (const type of [
          'text/plain',
          'application/x-www-form-urlencoded',
          'application/xml',
          undefined,
        ]) {
          const r = await send(url, body, type);
          const what = `${name} ${path} ${type ?? '(none)'}`;
          assert.equal(r.status, 415, `${what}: ${r.text}`);
          // Byte for byte what the gateway answers (its refusal, through the engines' error writer).
          const expected = contentTypeRefusal(type);
          assert.ok(expected !== undefined);
          assert.equal(r.text, errorBody(expected).body, what);
          const parsed = JSON.parse(r.text) as { error: { code: string; param: string; message: string } };
          assert.equal(parsed.error.code, 'SY_ERR_UNSUPPORTED_MEDIA_TYPE', what);
          assert.equal(parsed.error.param, 'content-type', what);
          assert.match(
            parsed.error.message,
            type === undefined ? /with no Content-Type/ : new RegExp(`'${type}'`),
          );
        }
        for (const type of ['application/json', 'Application/JSON; charset=utf-8']) {
          const r = await send(url, body, type);
          assert.equal(r.status, 200, `${name} ${path} ${type}: ${r.text}`);
        }
      }
    });

    it(`${name}: curl -d without -H is refused with the header to add; with -H it is served`, async (t) => {
      const url = `${engine().url}/v1/completions`;
      const json = JSON.stringify(bodies(model)['/v1/completions']);
      const plain = await curl(url, '-d', json);
      if (plain === undefined) return t.skip('no curl');
      assert.equal(plain[1], '415', plain[0]);
      assert.match(
        plain[0],
        /'application\/x-www-form-urlencoded'.*curl: -H 'Content-Type: application\/json'/,
      );
      const typed = await curl(url, '-H', 'Content-Type: application/json', '-d', json);
      assert.equal(typed?.[1], '200', typed?.[0]);
    });
  }
});
