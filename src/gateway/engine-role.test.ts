import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent } from 'undici';
import { ROLE_ANSWER_BYTES_MAX, roleCheckOf, sglangRole } from './engine-role.ts';

/** An SGLang-like server on loopback: what each path answers, set per test. */
const answers = new Map<string, { status: number; body: string }>();
let server: Server;
let base: string;
const agent = new Agent();

before(async () => {
  server = createServer((req, res) => {
    const a = answers.get(req.url ?? '') ?? { status: 404, body: '' };
    res.writeHead(a.status, { 'content-type': 'application/json' });
    res.end(a.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await agent.close();
  await new Promise((resolve) => server.close(resolve));
});

const ask = (role: 'both' | 'prefill' | 'decode', type: 'sglang' | 'sim' = 'sglang') =>
  roleCheckOf({ id: 'b', type, url: base, role })?.ask(agent, {}, new AbortController().signal);

describe('sglangRole', () => {
  it('reads disaggregation_mode', () => {
    assert.equal(sglangRole('{"disaggregation_mode":"prefill"}'), 'prefill');
    assert.equal(sglangRole('{"disaggregation_mode":"decode"}'), 'decode');
    assert.equal(sglangRole('{"disaggregation_mode":"null"}'), 'both');
    assert.equal(sglangRole('{"model_path":"m"}'), undefined);
    assert.equal(sglangRole('not json'), undefined);
  });
});

describe('RoleCheck against a server', () => {
  it('asks /server_info, then the older /get_server_info on a 404', async () => {
    answers.clear();
    answers.set('/get_server_info', { status: 200, body: '{"disaggregation_mode":"decode"}' });
    assert.deepEqual(await ask('decode'), { kind: 'match' });
    const found = await ask('prefill');
    assert.equal(found?.kind, 'mismatch');
    assert.match(
      (found as { reason: string }).reason,
      /configured role prefill, but the engine runs as decode \(its \/get_server_info\)/,
    );
    answers.set('/server_info', { status: 200, body: '{"disaggregation_mode":"null"}' });
    assert.match(((await ask('decode')) as { reason: string }).reason, /serves whole requests/);
  });

  it('trusts an engine that cannot say, and asks again after an error answer', async () => {
    answers.clear();
    assert.deepEqual(await ask('prefill'), { kind: 'match' }, 'no server-info route');
    answers.set('/server_info', { status: 503, body: '' });
    assert.deepEqual(await ask('prefill'), { kind: 'unknown', reason: 'GET /server_info answered 503' });
    answers.set('/server_info', { status: 200, body: 'x'.repeat(ROLE_ANSWER_BYTES_MAX + 1) });
    assert.deepEqual(await ask('prefill'), { kind: 'match' }, 'a page past the bound is not read');
  });

  it('reads a sim engine role from its metrics, none meaning both', async () => {
    answers.clear();
    answers.set('/metrics', { status: 200, body: 'vllm:num_requests_running{model_name="m"} 0\n' });
    assert.deepEqual(await ask('both', 'sim'), { kind: 'match' });
    assert.equal((await ask('prefill', 'sim'))?.kind, 'mismatch');
    answers.set('/metrics', {
      status: 200,
      body: 'switchyard_pd_requests_total{role="prefill",protocol="vllm"} 3\n',
    });
    assert.deepEqual(await ask('prefill', 'sim'), { kind: 'match' });
    assert.equal((await ask('decode', 'sim'))?.kind, 'mismatch');
  });

  it('is not made for engines that do not report a role', () => {
    for (const type of ['vllm', 'llamacpp', 'openai', 'llama'] as const)
      assert.equal(roleCheckOf({ id: 'b', type, url: base, role: 'prefill' }), undefined, type);
  });

  it('gives up on a connection error as unknown', async () => {
    const check = roleCheckOf({ id: 'b', type: 'sglang', url: 'http://127.0.0.1:1', role: 'prefill' });
    const found = await check?.ask(agent, {}, new AbortController().signal);
    assert.equal(found?.kind, 'unknown');
    assert.match((found as { reason: string }).reason, /^GET \/server_info failed: .*ECONNREFUSED/);
  });
});
