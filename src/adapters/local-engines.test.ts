import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startLocalEngines } from './local-engines.ts';

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
