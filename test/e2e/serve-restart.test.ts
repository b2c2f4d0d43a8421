/**
 * End-to-end: `switchyard serve` restarts a local engine that crashes. The real CLI starts two sim
 * engines; one is SIGKILLed; serve logs the death and the restart, a new process answers on the same
 * port, the gateway ejects the engine while it is down and re-admits it after, and requests succeed
 * throughout. Under the default routing policy (kv-events, Dynamo's cost, which prices the scraped KV
 * usage), the restarted engine takes its share of new requests: the gateway forgets an ejected
 * engine's scraped signals, so it does not come back showing the KV usage of the process that was
 * killed (engine 0 is killed here while a scrape shows KV in use on it). Deadlines here only guard
 * against hangs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const ADMIN_KEY = 'restart-test-admin';
const MODEL = 'llama-3.1-8b';

let serve: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'sy-serve-restart-'));
after(async () => {
  if (serve !== undefined && serve.exitCode === null && serve.signalCode === null) {
    const exited = new Promise((resolve) => serve?.once('close', resolve));
    serve.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Polls `check` until it is true; fails after HANG_GUARD_MS with `what`. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Each engine's ready lines in order: [index, url, pid]. */
function readyLines(stderr: readonly string[]): [number, string, number][] {
  return stderr.flatMap((l) => {
    const m = /engine (\d+) ready at (\S+) \(pid (\d+),/.exec(l);
    return m === null ? [] : [[Number(m[1]), m[2] as string, Number(m[3])] as [number, string, number]];
  });
}

interface InstanceJson {
  id: string;
  url: string;
  healthy: boolean;
  inFlight: number;
  pendingPrefillTokens: number;
  kvUsage: number;
}

async function instances(url: string): Promise<InstanceJson[]> {
  const res = await fetch(`${url}/admin/instances`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { instances: InstanceJson[] }).instances;
}

async function chat(url: string, content = 'hi', maxTokens = 4): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: maxTokens }),
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
  await res.arrayBuffer();
  return res.status;
}

/** A prompt of a few KV blocks, and enough output to stay on the engine across several scrapes. */
const LONG_PROMPT = 'a prompt long enough to hold a few blocks of KV cache on the engine while it decodes';
const LONG_MAX_TOKENS = 400;
/** Long requests kept running at once while waiting for a scrape that shows engine 0's KV in use. */
const LONGS_IN_FLIGHT = 16;

test('a SIGKILLed engine is restarted on its port, re-admitted, and serves again', {
  timeout: HANG_GUARD_MS * 2,
}, async () => {
  const config = join(dir, 'gateway.yaml');
  // Quick health checks, so the ejection and the re-admission both happen within the test.
  writeFileSync(
    config,
    'healthCheck:\n  intervalMs: 100\n  timeoutMs: 1000\n  failuresToEject: 1\n  successesToReadmit: 1\n',
  );
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--port',
      '0',
      '--engines',
      '2',
      '--time-scale',
      '0.05',
      '--admin-key',
      ADMIN_KEY,
      '--config',
      config,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  serve = child;
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => stdout.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  await until('the listening line', () => {
    if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${stderr.join('\n')}`);
    return stdout.some((l) => l.includes('listening on'));
  });
  const url = /listening on (http:\/\/\S+)/.exec(stdout.join('\n'))?.[1] as string;
  const first = readyLines(stderr);
  assert.equal(first.length, 2, stderr.join('\n'));
  const [, engineUrl, oldPid] = first.find(([i]) => i === 0)!;
  assert.equal(await chat(url), 200);

  // Kill engine 0 while its last scrape shows KV in use: long requests until the view shows it.
  // Up to LONGS_IN_FLIGHT at a time, topped up as they end, for as long as that takes: on a loaded
  // machine most scrapes time out (their deadline is a fraction of the interval), and a fixed
  // number of requests could all end before one scrape landed while they ran (a fresh-clone CI at
  // load 30 timed out here with nothing left running).
  const longs: Promise<unknown>[] = [];
  let longsInFlight = 0;
  await until('a scrape of engine-0 with KV in use', async () => {
    while (longsInFlight < LONGS_IN_FLIGHT) {
      longsInFlight++;
      longs.push(
        chat(url, LONG_PROMPT, LONG_MAX_TOKENS)
          .catch(() => 0)
          .finally(() => longsInFlight--),
      );
    }
    return (await instances(url)).some((i) => i.id === 'engine-0' && i.kvUsage > 0);
  });
  process.kill(oldPid, 'SIGKILL');
  await until('the restart line', () => stderr.some((l) => l.includes('restarting engine 0 in 0.5 s')));
  assert.ok(
    stderr.some((l) => l.includes('engine 0 exited (SIGKILL)')),
    stderr.join('\n'),
  );
  // While engine 0 is down, engine 1 serves every request.
  for (let i = 0; i < 5; i++) assert.equal(await chat(url), 200);
  await until('engine 0 ready again', () => readyLines(stderr).length === 3);
  const [index, newUrl, newPid] = readyLines(stderr)[2]!;
  assert.equal(index, 0);
  assert.equal(newUrl, engineUrl, 'the same port');
  assert.notEqual(newPid, oldPid);
  const direct = await fetch(`${engineUrl}/health`);
  assert.equal(direct.status, 200, 'the new process answers on the old port');
  await until('engine-0 re-admitted', async () => (await instances(url)).every((i) => i.healthy));
  assert.ok(
    stderr.some((l) => /instance engine-0 ejected/.test(l)),
    `the gateway ejected engine-0 while it was down:\n${stderr.join('\n')}`,
  );
  assert.ok(
    stderr.some((l) => /instance engine-0 re-admitted/.test(l)),
    stderr.join('\n'),
  );
  assert.equal((await fetch(`${url}/ready`)).status, 200);
  await Promise.all(longs);
  // The view shows nothing of the killed process: not its KV usage (the cost would price it).
  const readmitted = (await instances(url)).find((i) => i.id === 'engine-0')!;
  assert.equal(readmitted.kvUsage, 0, JSON.stringify(readmitted));
  const statuses = await Promise.all(Array.from({ length: 20 }, () => chat(url)));
  assert.deepEqual(new Set(statuses), new Set([200]));
  // The restarted engine takes its share: its own counters moved.
  const metrics = await (await fetch(`${engineUrl}/metrics`)).text();
  const line = metrics
    .split('\n')
    .find((l) => l.startsWith('vllm:request_success_total{finished_reason="length"'));
  assert.ok(line !== undefined && Number(line.slice(line.lastIndexOf(' ') + 1)) > 0, metrics.slice(0, 2000));
  // The host accounting of both engines comes back to zero: nothing leaked by the refused attempts.
  let last: InstanceJson[] = [];
  await until('host accounting back to zero', async () => {
    last = await instances(url);
    return last.every((i) => i.inFlight === 0 && i.pendingPrefillTokens === 0);
  }).catch((error: Error) => assert.fail(`${error.message}: ${JSON.stringify(last)}`));
  assert.ok(!stderr.some((l) => l.includes('giving up')), stderr.join('\n'));
});
