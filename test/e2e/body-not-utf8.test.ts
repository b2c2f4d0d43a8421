/**
 * End-to-end: a body whose bytes are not UTF-8 (a Latin-1 `é`, as a Windows shell's code page sends
 * it) is refused 400 SY_ERR_INVALID_ARGUMENT naming `body`, by the gateway (parsed on its event loop
 * or on a parse worker) and by a built-in engine reached directly. Both decoded it with U+FFFD in
 * place of each bad byte and served a prompt the client never sent (R1); vLLM answers 400 (FastAPI:
 * "There was an error parsing the body"). A valid multi-byte UTF-8 body is still served.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { assertErrorBody, MODEL, startSims } from './support/cluster.ts';
import { QUICK_SIM_ARGS, simGateway } from './support/sim-gateway.ts';

/** Bodies of this many bytes or more go to the gateway's parse worker. */
const OFF_THREAD_BYTES = 4096;
const setup = simGateway({ limits: { offThreadParseBytes: OFF_THREAD_BYTES } });

/** A chat body whose content is `text` then `bytes`, padded with `pad` ASCII words. */
function chat(bytes: Buffer, pad = 0): Buffer {
  return Buffer.concat([
    Buffer.from(
      `{"model":"${MODEL}","max_tokens":2,"messages":[{"role":"user","content":"${'w '.repeat(pad)}caf`,
    ),
    bytes,
    Buffer.from('"}]}'),
  ]);
}

const LATIN1_E_ACUTE = Buffer.from([0xe9]);

async function send(base: string, body: Buffer): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, text: await res.text() };
}

function assertNotUtf8(reply: { status: number; text: string }, what: string): void {
  assert.equal(reply.status, 400, `${what}: ${reply.text}`);
  const e = assertErrorBody(reply.text, reply.status, what);
  assert.equal(e.error.code, 'SY_ERR_INVALID_ARGUMENT', what);
  assert.equal(e.error.param, 'body', what);
  assert.match(e.error.message, /UTF-8/, what);
}

it('the gateway refuses a body that is not UTF-8, on its event loop and on a parse worker', async () => {
  const small = chat(LATIN1_E_ACUTE);
  const large = chat(LATIN1_E_ACUTE, OFF_THREAD_BYTES);
  assert.ok(small.length < OFF_THREAD_BYTES && large.length >= OFF_THREAD_BYTES);
  assertNotUtf8(await send(setup.gw.url, small), 'gateway, event loop');
  assertNotUtf8(await send(setup.gw.url, large), 'gateway, parse worker');
});

it('a built-in engine refuses it too', async () => {
  assertNotUtf8(await send(setup.engine.url, chat(LATIN1_E_ACUTE)), 'sim engine');
});

it('a sim P/D prefill engine refuses it too (its front passes it to the inner server as it came)', async () => {
  const prefill = await startSims(
    1,
    [...QUICK_SIM_ARGS, '--pd-protocol', 'vllm', '--pd-role', 'prefill'],
    setup.teardown,
  );
  const engine = prefill.engines[0] as (typeof prefill.engines)[number];
  const body = Buffer.concat([
    Buffer.from(`{"model":"${MODEL}","max_tokens":1,"kv_transfer_params":{"do_remote_decode":true},`),
    Buffer.from('"messages":[{"role":"user","content":"caf'),
    LATIN1_E_ACUTE,
    Buffer.from('"}]}'),
  ]);
  assertNotUtf8(await send(engine.url, body), 'sim P/D prefill');
});

it('a valid UTF-8 body (é as two bytes) is served', async () => {
  const reply = await send(setup.gw.url, chat(Buffer.from('é', 'utf8')));
  assert.equal(reply.status, 200, reply.text);
});
