/**
 * End-to-end: every routing policy in the catalogue, and a profile composed in YAML, serves real
 * requests through one real `switchyard serve` process in front of real sim engines that serve a
 * model under its real-world name (not a catalogue id), switching policy through the admin API.
 * Then: a backend whose performance model cannot be resolved stops the gateway at start-up when a
 * policy needs one, and the same profile YAML runs in the twin.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { routingPolicyNames } from '../../src/policies/routing/registry.ts';
import { assertErrorBody, freePort, post, sseData } from './support/cluster.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
/** A real served name: the Hub id of the instruct model, which is no catalogue id. */
const SERVED = 'meta-llama/Llama-3.1-8B-Instruct';
const ADMIN = { authorization: 'Bearer admin-key-for-policies' };
/** Requests per policy: one chat, one streamed chat, one completion. */
const REQUESTS_PER_POLICY = 3;

const dir = mkdtempSync(join(tmpdir(), 'sy-policies-'));
const children: { child: ChildProcess; exited: Promise<number | null> }[] = [];
after(async () => {
  for (const { child, exited } of children.reverse())
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (d: string) => stdout.push(d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  children.push({ child, exited });
  return { child, stdout, stderr, exited };
}

async function listening(r: Run): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /listening on (http:\/\/\S+)/.exec(r.stdout.join(''));
    if (m !== null) return m[1] as string;
    if (r.child.exitCode !== null) assert.fail(`serve exited ${r.child.exitCode}: ${r.stderr.join('')}`);
    if (Date.now() > deadline) assert.fail(`serve not ready: ${r.stderr.join('')}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const PROFILE = {
  type: 'profile',
  params: {
    filters: [{ type: 'low-queue', params: { queueDepthMax: 32 } }],
    scorers: [
      { type: 'queue', weight: 2 },
      { type: 'kv-usage', weight: 2 },
      { type: 'prefix-cache', weight: 3 },
      { type: 'session-affinity', weight: 1 },
      { type: 'kv-cost', weight: 1 },
      { type: 'in-flight', weight: 1 },
    ],
    picker: { type: 'softmax', params: { temperature: 0.05 } },
  },
};

/** Sends one chat, one streamed chat and one completion; asserts each is a 200 with content. */
async function exercise(url: string, policy: string, round: number): Promise<void> {
  const prompt = `policy ${policy}: a shared system prompt about sorting freight cars, round ${round}.`;
  const chat = await post(url, '/v1/chat/completions', {
    model: SERVED,
    messages: [{ role: 'user', content: prompt }],
    max_tokens: 4,
    user: `session-${round % 2}`,
  });
  assert.equal(chat.status, 200, `${policy}: chat: ${chat.text}`);
  const message = (JSON.parse(chat.text) as { choices: { message: { content: string } }[] }).choices[0];
  assert.ok((message?.message.content.length ?? 0) > 0, `${policy}: empty chat content`);

  const stream = await post(url, '/v1/chat/completions', {
    model: SERVED,
    messages: [{ role: 'user', content: prompt }],
    max_tokens: 4,
    stream: true,
  });
  assert.equal(stream.status, 200, `${policy}: stream: ${stream.text}`);
  const data = sseData(stream.text);
  assert.equal(data.at(-1), '[DONE]', `${policy}: stream did not finish`);
  const text = data
    .slice(0, -1)
    .map(
      (d) =>
        (JSON.parse(d) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '',
    )
    .join('');
  assert.ok(text.length > 0, `${policy}: empty streamed content`);

  const completion = await post(url, '/v1/completions', { model: SERVED, prompt, max_tokens: 4 });
  assert.equal(completion.status, 200, `${policy}: completion: ${completion.text}`);
  const choice = (JSON.parse(completion.text) as { choices: { text: string }[] }).choices[0];
  assert.ok((choice?.text.length ?? 0) > 0, `${policy}: empty completion`);
}

describe('every policy through the live gateway, model served under a real-world name', {
  timeout: 120_000,
}, () => {
  it('answers 200 with content under each catalogue policy and a YAML profile', async () => {
    const config = join(dir, 'serve.yaml');
    writeFileSync(
      config,
      JSON.stringify({
        adminKey: 'admin-key-for-policies',
        slo: { ttftMs: 10_000, tpotMs: 1000 },
        routing: { policy: 'round-robin', policies: { mix: PROFILE } },
      }),
    );
    const serve = run([
      'serve',
      '--port',
      '0',
      '--engines',
      '2',
      '--served-model-name',
      SERVED,
      '--time-scale',
      '0.02',
      '--config',
      config,
    ]);
    const url = await listening(serve);
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(
      models.data.map((m) => m.id),
      [SERVED],
    );
    const policies = [...routingPolicyNames(), 'mix'];
    // The perf-model policies are what failed before: make sure they are in the run.
    for (const p of ['goodput', 'mooncake', 'preble', 'profile', 'llm-d']) assert.ok(policies.includes(p), p);
    let served = 0;
    for (const policy of policies) {
      const res = await fetch(`${url}/admin/policy`, {
        method: 'PUT',
        headers: { ...ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify({ policy }),
      });
      const body = await res.text();
      assert.equal(res.status, 200, `${policy}: ${body}`);
      assert.deepEqual(JSON.parse(body), { policy });
      for (let round = 0; round < 2; round++) {
        await exercise(url, policy, round);
        served += REQUESTS_PER_POLICY;
      }
    }
    const stats = (await (await fetch(`${url}/stats`)).json()) as { completed: number; failedTotal: number };
    assert.equal(stats.failedTotal, 0);
    assert.ok(stats.completed >= served, `${stats.completed} completed of ${served}`);
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0, serve.stderr.join(''));
  });
});

describe('a backend without a performance model', { timeout: 60_000 }, () => {
  it('stops the gateway at start-up, in one line naming the backend and the field, when a policy needs one', async () => {
    const port = await freePort();
    const config = join(dir, 'custom.yaml');
    const backends = [
      { id: 'known', type: 'vllm', url: `http://127.0.0.1:${port}`, models: [SERVED] },
      { id: 'custom-bot', type: 'vllm', url: `http://127.0.0.1:${port}`, models: ['acme/support-bot'] },
    ];
    writeFileSync(config, JSON.stringify({ backends, routing: { policy: 'goodput' } }));
    const serve = run(['serve', '--port', '0', '--config', config]);
    assert.equal(await serve.exited, 2, 'exit code 2: a handled error');
    const lines = serve.stderr.join('').trim().split('\n');
    assert.equal(lines.length, 1, lines.join('\n'));
    const line = lines[0] as string;
    for (const part of ['SY_ERR_INVALID_CONFIG', "'goodput'", "backend 'custom-bot'", 'backends.1.perfModel'])
      assert.ok(line.includes(part), `'${part}' not in: ${line}`);
    assert.ok(!line.includes("'known'"), 'a backend served under a catalogue Hugging Face name resolves');

    // With a policy that predicts nothing it starts, and switching to one is refused, not a 500 later.
    writeFileSync(
      config,
      JSON.stringify({ backends, routing: { policy: 'least-request' }, adminKey: 'admin-key-for-policies' }),
    );
    const lenient = run(['serve', '--port', '0', '--config', config]);
    const url = await listening(lenient);
    for (const policy of ['goodput', 'mooncake', 'preble']) {
      const res = await fetch(`${url}/admin/policy`, {
        method: 'PUT',
        headers: { ...ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify({ policy }),
      });
      const body = await res.text();
      assert.equal(res.status, 400, body);
      assert.equal(assertErrorBody(body, 400, policy).error.code, 'SY_ERR_INVALID_CONFIG');
      assert.ok(body.includes("backend 'custom-bot'"), body);
    }
    const active = await fetch(`${url}/admin/policy`, { headers: ADMIN });
    assert.equal(((await active.json()) as { policy: string }).policy, 'least-request');
    lenient.child.kill('SIGTERM');
    assert.equal(await lenient.exited, 0, lenient.stderr.join(''));

    // The same config names the model: it starts (and the backend's port is dead, which is fine here).
    backends[1] = { ...backends[1], perfModel: 'llama-3.1-8b' } as (typeof backends)[number];
    writeFileSync(config, JSON.stringify({ backends, routing: { policy: 'goodput' } }));
    const fixed = run(['serve', '--port', '0', '--config', config]);
    await listening(fixed);
    fixed.child.kill('SIGTERM');
    assert.equal(await fixed.exited, 0, fixed.stderr.join(''));
  });

  it('refuses role prefill without a protocol and a decode pool at start-up', async () => {
    const config = join(dir, 'role.yaml');
    writeFileSync(
      config,
      JSON.stringify({
        backends: [{ id: 'p', type: 'vllm', url: 'http://127.0.0.1:9', models: [SERVED], role: 'prefill' }],
      }),
    );
    const serve = run(['serve', '--port', '0', '--config', config]);
    assert.equal(await serve.exited, 2, 'exit code 2: a handled error');
    const err = serve.stderr.join('');
    for (const part of ['SY_ERR_INVALID_CONFIG', 'backends.0.pdProtocol', 'needs pdProtocol'])
      assert.ok(err.includes(part), `'${part}' not in: ${err}`);
  });
});

describe('the same profile in the twin', { timeout: 60_000 }, () => {
  it('runs a twin config whose policy is a profile composed in YAML', async () => {
    const config = join(dir, 'sim.yaml');
    writeFileSync(
      config,
      JSON.stringify({
        seed: 3,
        policy: 'mix',
        policies: { mix: PROFILE },
        cluster: { instances: 3, gpu: 'h100', model: 'llama-3.1-8b' },
        workload: {
          kind: 'poisson',
          rateRps: 20,
          maxRequests: 200,
          input: { kind: 'fixed', tokens: 512 },
          output: { kind: 'fixed', tokens: 32 },
        },
      }),
    );
    const out = join(dir, 'sim.json');
    const sim = run(['sim', '--config', config, '--json', out]);
    assert.equal(await sim.exited, 0, sim.stderr.join(''));
    const summary = JSON.parse(readFileSync(out, 'utf8')) as { requests: number; policy?: string };
    assert.equal(summary.requests, 200);
  });
});
