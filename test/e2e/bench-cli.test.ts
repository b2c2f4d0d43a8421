/**
 * End-to-end: `switchyard bench` as a real child process against real servers on 127.0.0.1: the
 * built-in sim engine (`switchyard engine sim`, another child process) and, for failures and the
 * exact bodies sent, the load generator's fake OpenAI server in this process.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { startFakeServer } from '../../src/loadgen/test-server.ts';
import type { BenchSummary } from '../../src/loadgen/types.ts';
import { readTrace } from '../../src/workload/traces/read.ts';
import { BIN, type CliRun, runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-'));

function bench(args: string[]): Promise<CliRun> {
  return runCli(['bench', '--no-progress', ...args], 60_000);
}

function readJson(path: string): BenchSummary {
  return JSON.parse(readFileSync(path, 'utf8')) as BenchSummary;
}

/** The sim engine as a child process, ten times faster than modelled. */
let engine: { child: ChildProcess; url: string; model: string };

before(async () => {
  const child = spawn(
    process.execPath,
    [BIN, 'engine', 'sim', '--port', '0', '--time-scale', '0.05', '--kv-events', 'none'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${stderr.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  const ready = JSON.parse(line) as { event: string; url: string; model: string };
  assert.equal(ready.event, 'ready');
  engine = { child, url: ready.url, model: ready.model };
});

after(async () => {
  if (engine !== undefined && engine.child.exitCode === null) {
    const exited = new Promise((r) => engine.child.once('exit', r));
    engine.child.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

/** The hash id at the head of each 2,048-character block (`Block <id>:`). */
function blockIds(prompt: string): number[] {
  const ids: number[] = [];
  for (let at = 0; at < prompt.length; at += 2048) {
    const m = /^Block (\d+):/.exec(prompt.slice(at, at + 32));
    if (m === null) break;
    ids.push(Number(m[1]));
  }
  return ids;
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

async function metric(series: string): Promise<number> {
  const text = await (await fetch(`${engine.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series) && !l.startsWith('#'));
  assert.ok(line !== undefined, `no ${series} in /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

// The sim-engine runs share the engine's prefix-cache counters, so they run one after the other;
// the rest use their own servers and run beside them.
describe('switchyard bench', { concurrency: true }, () => {
  test('against the sim engine', async (t) => {
    await t.test(
      'Poisson with shared prefixes against the sim engine: every request completes, exactly as asked',
      async () => {
        const out = join(dir, 'poisson.json');
        const hitsBefore = await metric('vllm:prefix_cache_hits_total');
        const run = await bench([
          '--url',
          engine.url,
          '--rate',
          '40',
          '--requests',
          '60',
          '--input-tokens',
          '64-256',
          '--output-tokens',
          '8-24',
          '--prefix-groups',
          '2',
          '--prefix-tokens',
          '512',
          '--slo-ttft-ms',
          '60000',
          '--slo-tpot-ms',
          '60000',
          '--json',
          out,
          '--save-requests',
        ]);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /TTFT/);
        assert.match(run.stdout, /goodput/);
        const s = readJson(out);
        assert.equal(s.model, engine.model, 'the model comes from GET /v1/models');
        assert.deepEqual(s.requests, { scheduled: 60, sent: 60, completed: 60, failed: 0 });
        assert.deepEqual(s.failures, {});
        assert.equal(s.records?.length, 60);
        let output = 0;
        for (const r of s.records ?? []) {
          assert.equal(r.ok, true);
          assert.equal(r.outputTokens, r.maxTokens, 'the sim engine generates exactly max_tokens');
          assert.ok(r.maxTokens >= 8 && r.maxTokens <= 24);
          assert.equal(r.outputTokensFrom, 'usage');
          assert.ok(r.inputTokens >= 512 + 64 && r.inputTokens <= 512 + 256, `input ${r.inputTokens}`);
          assert.ok(r.ttftMs !== undefined && r.e2eMs !== undefined && r.ttftMs > 0 && r.ttftMs <= r.e2eMs);
          output += r.outputTokens;
        }
        assert.equal(s.throughput.outputTokens, output);
        assert.ok(s.ttftMs.p50 <= s.ttftMs.p99 && s.e2eMs.p50 <= s.e2eMs.p99);
        assert.ok(s.tpotMs.count === 60 && (s.itlMs.count ?? 0) > 0);
        assert.equal(s.goodput?.requestsMeeting, 60, 'generous SLOs: everyone meets them');
        assert.ok(Math.abs((s.goodput?.requestsPerS ?? 0) - s.throughput.requestsPerS) < 1e-9);
        assert.ok(s.durationS > 1 && s.durationS < 30, `duration ${s.durationS}`);
        // Two shared 512-token system prompts: the engine's prefix cache hits on them (most requests;
        // one arriving while its group's prompt is still in prefill misses, as in vLLM).
        const hits = (await metric('vllm:prefix_cache_hits_total')) - hitsBefore;
        assert.ok(hits >= 30 * 512 && hits <= 58 * 512, `prefix cache hits ${hits}`);
      },
    );

    await t.test(
      'the Mooncake sample against the sim engine: shared hash ids hit the prefix cache',
      async () => {
        const out = join(dir, 'mooncake.json');
        const queriesBefore = await metric('vllm:prefix_cache_queries_total');
        const hitsBefore = await metric('vllm:prefix_cache_hits_total');
        const run = await bench([
          '--url',
          `${engine.url}/v1`,
          '--endpoint',
          'chat',
          '--trace',
          'sample:mooncake-conversation',
          '--rate-scale',
          '40',
          '--requests',
          '40',
          '--json',
          out,
        ]);
        assert.equal(run.code, 0, run.stderr);
        const s = readJson(out);
        assert.equal(s.requests.completed, 40);
        assert.equal(s.workload['trace'], 'sample:mooncake-conversation');
        const records = readTrace('sample:mooncake-conversation').records.slice(0, 40);
        const expectedOutput = records.reduce((a, r) => a + Math.max(1, r.outputTokens), 0);
        assert.equal(s.throughput.outputTokens, expectedOutput);
        const queries = (await metric('vllm:prefix_cache_queries_total')) - queriesBefore;
        const hits = (await metric('vllm:prefix_cache_hits_total')) - hitsBefore;
        assert.ok(queries > 0 && hits > 0, `hits ${hits} of ${queries} prompt tokens`);
        // No more than the trace shares: each request can hit at most its longest run of leading hash
        // ids in common with an earlier request. More would mean prompts share text the trace does not.
        let sharable = 0;
        for (const [i, r] of records.entries()) {
          let best = 0;
          for (const earlier of records.slice(0, i)) {
            let k = 0;
            while (k < r.hashIds.length && r.hashIds[k] === earlier.hashIds[k]) k++;
            best = Math.max(best, k);
          }
          sharable += Math.min(best * 512, r.inputTokens);
        }
        assert.ok(hits <= sharable, `hits ${hits} > what the trace shares, ${sharable}`);
      },
    );
  });

  test('failures by status, drops over the bound, and the bodies on the wire', async () => {
    const server = await startFakeServer({
      firstTokenMs: 30,
      tokenMs: 5,
      failWith: (n) => (n % 5 === 4 ? 503 : undefined),
    });
    try {
      const out = join(dir, 'fail.json');
      const run = await bench([
        '--url',
        server.url,
        '--model',
        'fake-model',
        '--rate',
        'inf',
        '--requests',
        '12',
        '--max-concurrency',
        '6',
        '--overflow',
        'drop',
        '--input-tokens',
        '50',
        '--output-tokens',
        '10',
        '--json',
        out,
      ]);
      assert.equal(run.code, 0, run.stderr);
      const s = readJson(out);
      // All 12 are due at t = 0: 6 go out, 6 find every slot taken and are dropped.
      assert.equal(s.requests.sent, 6);
      assert.equal(s.concurrency.overLimit, 6);
      assert.equal(s.failures['dropped'], 6);
      assert.equal(s.failures['http_503:FAKE_REFUSED'], 1, 'the fifth request is refused');
      assert.equal(s.requests.completed, 5);
      assert.match(run.stdout, /http_503:FAKE_REFUSED/);
      assert.match(run.stdout, /dropped/);
      const body = server.received[0]?.body ?? {};
      assert.equal(server.received[0]?.path, '/v1/completions');
      assert.equal(body['model'], 'fake-model');
      assert.equal(body['max_tokens'], 10);
      assert.equal(body['stream'], true);
      assert.deepEqual(body['stream_options'], { include_usage: true });
      assert.equal(body['ignore_eos'], true);
      assert.equal(String(body['prompt']).length, 200);
    } finally {
      await server.close();
    }
  });

  test('a Mooncake replay over chat, unstreamed: prompts share text exactly where the trace shares ids', async () => {
    const server = await startFakeServer();
    try {
      const run = await bench([
        '--url',
        server.url,
        '--trace',
        'sample:mooncake-conversation',
        '--requests',
        '30',
        '--rate-scale',
        '1000',
        '--endpoint',
        'chat',
        '--no-stream',
        '--no-ignore-eos',
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(server.received.length, 30);
      const body = server.received[0]?.body ?? {};
      assert.equal(server.received[0]?.path, '/v1/chat/completions');
      assert.equal(body['stream'], false);
      assert.equal(body['ignore_eos'], undefined);
      assert.equal(body['stream_options'], undefined);
      // Each 2,048-character block opens with its hash id, which ties a received prompt (in whatever
      // order it arrived) to its trace record.
      const records = readTrace('sample:mooncake-conversation').records.slice(0, 30);
      const prompts = server.received.map((r) => {
        const messages = r.body['messages'] as { role: string; content: string }[];
        assert.equal(messages.length, 1);
        return messages[0]?.content ?? '';
      });
      const tagged = prompts.map((p) => ({ p, ids: blockIds(p) }));
      const pairs = records.map((r) => {
        // A last block cut to a few characters may have lost its tag: match the rest.
        const match = tagged.find(
          (t) =>
            t.p.length === r.inputTokens * 4 &&
            t.ids.length >= r.hashIds.length - 1 &&
            t.ids.every((id, k) => id === r.hashIds[k]),
        );
        assert.ok(match !== undefined, `no prompt with the ids of ${JSON.stringify(r.hashIds)}`);
        return { ids: r.hashIds, prompt: match.p };
      });
      let sharing = 0;
      for (const [i, a] of pairs.entries()) {
        for (const b of pairs.slice(i + 1)) {
          let k = 0;
          while (k < a.ids.length && a.ids[k] === b.ids[k]) k++;
          const common = commonPrefix(a.prompt, b.prompt);
          const shared = Math.min(k * 2048, a.prompt.length, b.prompt.length);
          assert.ok(common >= shared && common < shared + 64, `shared ${common} chars for ${k} shared ids`);
          if (k > 0) sharing++;
        }
      }
      assert.ok(sharing > 0, 'the slice shares prefixes');
    } finally {
      await server.close();
    }
  });

  test('bad flags and an unreachable server: one line naming the value, exit 2, no stack', async () => {
    const nameless = await startFakeServer({ noModels: true });
    // The other messages are unit-tested (src/loadgen/options.test.ts); these go through the process.
    const [endpoint, unreachable, noModel] = await Promise.all([
      bench(['--url', engine.url, '--endpoint', 'embeddings']),
      bench(['--url', 'http://127.0.0.1:1', '--requests', '3']),
      bench(['--url', nameless.url, '--requests', '3']),
    ]).finally(() => nameless.close());
    assert.equal(nameless.received.length, 0, 'nothing is sent without a model');
    const oneLine = (r: CliRun, pattern: RegExp, code: string): void => {
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0] as string, pattern);
      assert.ok((lines[0] as string).endsWith(`[${code}]`), lines[0]);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    };
    oneLine(endpoint, /unknown --endpoint 'embeddings'; valid: chat, completions/, 'SY_ERR_UNKNOWN_NAME');
    oneLine(unreachable, /cannot reach http:\/\/127\.0\.0\.1:1: .*connection_refused/, 'SY_ERR_UPSTREAM');
    oneLine(noModel, /\/v1\/models lists no model; name the model with --model/, 'SY_ERR_UPSTREAM');
  });
});
