/**
 * End-to-end: the gateway takes request bodies of the OpenAI endpoints only as
 * `Content-Type: application/json` (parameters allowed, any case), as vLLM's OpenAI server does;
 * `text/plain`, a form (`curl -d` without -H sends application/x-www-form-urlencoded) or no
 * Content-Type at all is 415 SY_ERR_UNSUPPORTED_MEDIA_TYPE naming the header to send, and the
 * connection goes on. Before, any of them was parsed as JSON and served.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { assertErrorBody, MODEL } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const setup = simGateway();

const BODIES: Record<string, Record<string, unknown>> = {
  '/v1/chat/completions': { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
  '/v1/completions': { model: MODEL, prompt: 'hi', max_tokens: 2 },
  '/v1/embeddings': { model: MODEL, input: 'hi' },
  '/v1/responses': { model: MODEL, input: 'hi', max_output_tokens: 2 },
};

/** POSTs the JSON bytes with `type` as Content-Type (undefined: none at all). */
async function send(path: string, type: string | undefined): Promise<{ status: number; text: string }> {
  // Bytes, not a string: fetch would add text/plain;charset=UTF-8 to a string body.
  const res = await fetch(`${setup.gw.url}${path}`, {
    method: 'POST',
    headers: type === undefined ? {} : { 'content-type': type },
    body: new TextEncoder().encode(JSON.stringify(BODIES[path])),
  });
  return { status: res.status, text: await res.text() };
}

describe('request Content-Type', { timeout: 60_000 }, () => {
  it('anything but application/json is 415 SY_ERR_UNSUPPORTED_MEDIA_TYPE on every endpoint; application/json in any case, with parameters, is served', async () => {
    for (const path of Object.keys(BODIES)) {
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', undefined]) {
        const r = await send(path, type);
        const what = `${path} ${type ?? '(none)'}`;
        assert.equal(r.status, 415, `${what}: ${r.text}`);
        const body = assertErrorBody(r.text, 415, what);
        assert.equal(body.error.code, 'SY_ERR_UNSUPPORTED_MEDIA_TYPE', what);
        assert.equal(body.error.param, 'content-type', what);
        assert.match(body.error.message, /send JSON with Content-Type: application\/json/, what);
        assert.match(
          body.error.message,
          type === undefined ? /with no Content-Type/ : new RegExp(`'${type}'`),
          what,
        );
      }
      for (const type of ['application/json', 'Application/JSON; charset=utf-8']) {
        const r = await send(path, type);
        assert.equal(r.status, 200, `${path} ${type}: ${r.text}`);
      }
    }
  });

  it("curl -d without -H is refused with the header to add; with -H 'Content-Type: application/json' it is served", async (t) => {
    const run = promisify(execFile);
    const curl = (...args: string[]) =>
      run('curl', ['-sS', '-w', '\n%{http_code}', ...args, `${setup.gw.url}/v1/completions`]).then(
        ({ stdout }) => stdout,
        (e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return undefined;
          throw e;
        },
      );
    const json = JSON.stringify(BODIES['/v1/completions']);
    const plain = await curl('-d', json);
    if (plain === undefined) return t.skip('no curl');
    const [text, status] = [
      plain.slice(0, plain.lastIndexOf('\n')),
      plain.slice(plain.lastIndexOf('\n') + 1),
    ];
    assert.equal(status, '415', plain);
    assert.match(
      assertErrorBody(text, 415, 'curl -d').error.message,
      /'application\/x-www-form-urlencoded'.*curl: -H 'Content-Type: application\/json'/,
    );
    const typed = await curl('-H', 'Content-Type: application/json', '-d', json);
    assert.equal(typed?.slice(typed.lastIndexOf('\n') + 1), '200', typed);
  });
});
