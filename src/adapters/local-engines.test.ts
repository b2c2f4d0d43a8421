import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RESTART_POLICY_DEFAULT, restartDelayMs, startLocalEngines } from './local-engines.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('starts engines on free ports, reports one that dies, and stops the rest', async () => {
  const lines: string[] = [];
  const exits: [number, number | null, string | null][] = [];
  const local = await startLocalEngines({
    count: 2,
    engine: 'sim',
    args: ['--served-model-name', 'm', '--time-scale', '0.05', '--kv-events', 'none'],
    log: (line) => lines.push(line),
    onExit: (index, code, signal) => exits.push([index, code, signal]),
  });
  try {
    assert.equal(local.engines.length, 2);
    const [a, b] = local.engines;
    assert.notEqual(a!.url, b!.url);
    assert.notEqual(a!.pid, b!.pid);
    for (const engine of local.engines) {
      assert.match(engine.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(engine.model, 'm');
      assert.equal(engine.kvEvents, null);
      assert.equal((await fetch(`${engine.url}/health`)).status, 200);
      const models = (await (await fetch(`${engine.url}/v1/models`)).json()) as { data: { id: string }[] };
      assert.equal(models.data[0]!.id, 'm');
    }
    process.kill(b!.pid, 'SIGKILL');
    for (let i = 0; i < 100 && exits.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(exits, [[1, null, 'SIGKILL']]);
  } finally {
    await local.stop();
  }
  assert.equal(alive(local.engines[0]!.pid), false);
  assert.equal(exits.length, 1, 'a stop is not reported as a death');
  // The survivor's stderr came through with its prefix (the drain notice SIGTERM prints).
  assert.ok(
    lines.some((l) => l.startsWith('[engine 0] ') && l.includes('SIGTERM')),
    lines.join('\n'),
  );
});

test('an engine that fails to start rejects with its stderr and leaves nothing running', async () => {
  await assert.rejects(
    startLocalEngines({ count: 1, engine: 'sim', args: ['--gpu', 'nope'], log: () => {} }),
    (error: Error) => {
      assert.match(error.message, /engine 0 \(sim\) exited \(code 2/);
      assert.match(error.message, /unknown gpu 'nope'/);
      return true;
    },
  );
  await assert.rejects(startLocalEngines({ count: 0, engine: 'sim', args: [] }), /invalid count '0'/);
});

test('the restart backoff doubles from its minimum to its maximum', () => {
  const delays = [0, 1, 2, 3, 4, 5, 6, 100].map((n) => restartDelayMs(RESTART_POLICY_DEFAULT, n));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
});

test('with a restart policy a killed engine comes back on its port, until the bound, then stays down', async () => {
  const restarts: [number, number, number][] = [];
  const gaveUp: [number, number][] = [];
  const readyPids: number[] = [];
  const local = await startLocalEngines({
    count: 1,
    engine: 'sim',
    args: ['--time-scale', '0.05'],
    log: () => {},
    restart: { backoffMsMin: 20, backoffMsMax: 40, restartsMax: 2, windowMs: 60_000 },
    onReady: (_index, engine) => readyPids.push(engine.pid),
    onRestart: (index, n, delayMs) => restarts.push([index, n, delayMs]),
    onGiveUp: (index, n) => gaveUp.push([index, n]),
  });
  try {
    const engine = local.engines[0]!;
    assert.match(engine.kvEvents ?? '', /^tcp:/, 'the sim publishes KV events by default');
    for (let round = 1; round <= 2; round++) {
      const before = engine.pid;
      process.kill(before, 'SIGKILL');
      for (let i = 0; i < 400 && readyPids.length <= round; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(readyPids.length, round + 1, `restart ${round} printed its ready line`);
      assert.notEqual(engine.pid, before);
      assert.equal(engine.pid, readyPids[round]);
      assert.equal(
        (await fetch(`${engine.url}/health`)).status,
        200,
        'the new child answers on the same port',
      );
    }
    assert.deepEqual(restarts, [
      [0, 1, 20],
      [0, 2, 40],
    ]);
    process.kill(engine.pid, 'SIGKILL');
    for (let i = 0; i < 100 && gaveUp.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(gaveUp, [[0, 2]]);
    assert.equal(readyPids.length, 3, 'no third restart');
    await assert.rejects(fetch(`${engine.url}/health`));
  } finally {
    await local.stop();
  }
});
