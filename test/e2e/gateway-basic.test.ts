// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the config file under test uses ${VAR}
/**
 * End-to-end: `switchyard serve` as a real child process in front of real `switchyard engine sim`
 * processes, on loopback. Run A lets serve start its own engines (no config); run B reads a YAML
 * config naming engines started here, one dead backend, tenants and an admin key.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type LocalEngines, startLocalEngines } from '../../src/adapters/local-engines.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
const MODEL = 'llama-3.1-8b';

interface Serve {
  readonly child: ChildProcess;
  readonly url: string;
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function serve(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Serve> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve not ready: ${stderr.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr.join('\n')}`)));
  });
  return { child, url, stderr, exited };
}

async function post(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; code: unknown }> {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let code: unknown;
  try {
    code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    code = undefined;
  }
  return { status: res.status, text, code };
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'Tell me about switchyards and how trains are sorted in them.' }],
  max_tokens: 6,
  ...extra,
});

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('switchyard serve with its own local engines', { timeout: 60_000 }, () => {
  it('proxies chat and completions (streaming and not), lists models, keeps admin closed, drains on SIGTERM', async () => {
    const s = await serve(['--engines', '2', '--policy', 'least-request']);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
    assert.equal((await fetch(`${s.url}/ready`)).status, 200);
    const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(
      models.data.map((m) => m.id),
      [MODEL],
    );

    const plain = await post(s.url, '/v1/chat/completions', chat());
    assert.equal(plain.status, 200, plain.text);
    const body = JSON.parse(plain.text) as {
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    assert.equal(body.usage.completion_tokens, 6);
    assert.ok((body.choices[0]?.message.content.length ?? 0) > 0);

    const streamed = await post(
      s.url,
      '/v1/chat/completions',
      chat({ stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(streamed.status, 200);
    const events = streamed.text.split('\n\n').filter((e) => e.length > 0);
    assert.equal(events.at(-1), 'data: [DONE]');
    assert.match(events.at(-2) ?? '', /"completion_tokens":6/);

    const completion = await post(s.url, '/v1/completions', {
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 4,
    });
    assert.equal(completion.status, 200);
    assert.equal((JSON.parse(completion.text) as { object: string }).object, 'text_completion');
    const completionStream = await post(s.url, '/v1/completions', {
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 4,
      stream: true,
    });
    assert.ok(completionStream.text.endsWith('data: [DONE]\n\n'));

    // No admin key: the admin API does not exist.
    assert.equal((await fetch(`${s.url}/admin/instances`)).status, 404);

    // SIGTERM while a long stream is in flight: it finishes, new work is refused, exit 0.
    const long = fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat({ stream: true, max_tokens: 150 })),
    });
    const longRes = await long;
    const reader = (longRes.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    s.child.kill('SIGTERM');
    // Draining: not ready, new requests answered 503.
    let sawDraining = false;
    for (let i = 0; i < 50 && !sawDraining; i++) {
      const r = await post(s.url, '/v1/chat/completions', chat());
      if (r.status === 503) {
        assert.equal(r.code, 'SY_ERR_DRAINING');
        assert.equal((await fetch(`${s.url}/ready`)).status, 503);
        sawDraining = true;
      } else {
        assert.equal(r.status, 200);
      }
    }
    assert.ok(sawDraining, 'never saw a 503 while draining');
    let rest = Buffer.from(first.value ?? new Uint8Array()).toString();
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      rest += Buffer.from(chunk.value).toString();
    }
    assert.ok(rest.endsWith('data: [DONE]\n\n'), 'the in-flight stream was cut');
    assert.doesNotMatch(rest, /"error"/);
    assert.equal(await s.exited, 0);
    assert.ok(s.stderr.some((l) => /stopped/.test(l)));
  });
});

describe('switchyard serve --config', { timeout: 60_000 }, () => {
  it('authenticates tenants, answers 400/401/404/413, retries past a dead backend, serves the admin API', async () => {
    const engines: LocalEngines = await startLocalEngines({
      count: 1,
      engine: 'sim',
      args: ['--model', MODEL],
      log: () => {},
    });
    cleanups.push(() => engines.stop());
    const engine = engines.engines[0];
    assert.ok(engine !== undefined);
    const dir = mkdtempSync(join(tmpdir(), 'sy-gw-e2e-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'gateway.yaml');
    const dead = await deadPort();
    writeFileSync(
      file,
      [
        'adminKey: ${SY_E2E_ADMIN}',
        'routing: { policy: round-robin }',
        'tenants:',
        '  - { key: tenant-key-a, name: a, priority: 1 }',
        'limits: { bodyBytesMax: 4096, retries: 2, retryBackoffBaseMs: 1, retryBackoffMaxMs: 5 }',
        'healthCheck: { intervalMs: 60000, failuresToEject: 50 }',
        'backends:',
        `  - { id: dead, type: vllm, url: "http://127.0.0.1:${dead}", models: [${MODEL}] }`,
        `  - { id: live, type: sim, url: "${engine.url}", models: [${MODEL}]${engine.kvEvents !== null ? `, kvEvents: "${engine.kvEvents}"` : ''} }`,
      ].join('\n'),
    );
    const { url, child, exited } = await serve(['--config', file], {
      ...process.env,
      SY_E2E_ADMIN: 'e2e-admin-key',
    });
    const auth = { authorization: 'Bearer tenant-key-a' };

    const unauth = await post(url, '/v1/chat/completions', chat());
    assert.equal(unauth.status, 401);
    assert.equal(unauth.code, 'SY_ERR_UNAUTHORIZED');
    const malformed = await post(url, '/v1/chat/completions', '{"model": ', auth);
    assert.equal(malformed.status, 400);
    assert.equal(malformed.code, 'SY_ERR_INVALID_ARGUMENT');
    const missing = await post(url, '/v1/completions', { model: MODEL }, auth);
    assert.equal(missing.status, 400);
    assert.match(missing.text, /"param":"prompt"/);
    const unknownModel = await post(url, '/v1/chat/completions', chat({ model: 'gpt-9' }), auth);
    assert.equal(unknownModel.status, 404);
    assert.equal(unknownModel.code, 'SY_ERR_NOT_FOUND');
    const big = await post(url, '/v1/chat/completions', chat({ pad: 'x'.repeat(8000) }), auth);
    assert.equal(big.status, 413);
    assert.equal(big.code, 'SY_ERR_REQUEST_TOO_LARGE');
    const route = await fetch(`${url}/nowhere`);
    assert.equal(route.status, 404);

    // Round robin sends every other request to the dead backend first: each one is retried.
    for (let i = 0; i < 4; i++) {
      const r = await post(url, '/v1/chat/completions', chat({ stream: i % 2 === 1 }), auth);
      assert.equal(r.status, 200, r.text);
    }
    const admin = { authorization: 'Bearer e2e-admin-key' };
    assert.equal((await fetch(`${url}/admin/stats`)).status, 401);
    const stats = (await (await fetch(`${url}/admin/stats`, { headers: admin })).json()) as {
      accepted: number;
      completed: number;
      failedTotal: number;
      inFlight: number;
      retries: number;
      rejected: Record<string, number>;
    };
    assert.ok(stats.retries >= 2, `retries ${stats.retries}`);
    assert.equal(stats.accepted, 4);
    assert.equal(stats.completed, 4);
    assert.equal(stats.accepted, stats.completed + stats.failedTotal + stats.inFlight);
    // One on /v1/chat/completions, one on /admin/stats: admin refusals count as the main path's do.
    assert.equal(stats.rejected['SY_ERR_UNAUTHORIZED'], 2);

    const instances = (await (await fetch(`${url}/admin/instances`, { headers: admin })).json()) as {
      instances: { id: string; healthy: boolean }[];
    };
    assert.deepEqual(
      instances.instances.map((i) => i.id),
      ['dead', 'live'],
    );
    const drain = await fetch(`${url}/admin/instances/dead/drain`, { method: 'POST', headers: admin });
    assert.equal(drain.status, 200);
    const put = await fetch(`${url}/admin/policy`, {
      method: 'PUT',
      headers: admin,
      body: JSON.stringify({ policy: 'kv-events' }),
    });
    assert.equal(put.status, 200);
    for (let i = 0; i < 3; i++)
      assert.equal((await post(url, '/v1/chat/completions', chat(), auth)).status, 200);
    const after = (await (await fetch(`${url}/stats`)).json()) as { retries: number; policy: string };
    assert.equal(after.retries, stats.retries);
    assert.equal(after.policy, 'kv-events');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /switchyard_gateway_requests_completed_total 7/);
    assert.match(metrics, /switchyard_gateway_instance_draining\{instance="dead"\} 1/);

    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});
