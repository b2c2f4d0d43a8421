/**
 * End-to-end: what a real `switchyard serve` does with an error nothing in it caught
 * (src/cli/serve-process-errors.ts). A preload (support/process-fault-preload.mjs) makes the fault
 * happen inside the serve process on SIGUSR2. An unhandled rejection gets one stderr line naming it
 * and serving goes on (a request is served after it, and SIGTERM still drains and exits 0); an
 * uncaught exception gets one line with the error and exits 1, and the local engine, its parent
 * gone, exits too. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { alive } from './support/processes.ts';
import { type ServeProcess, startServe as startServeProcess } from './support/serve.ts';
import { killAll, until as untilGuarded } from './support/wait.ts';

const PRELOAD = fileURLToPath(new URL('./support/process-fault-preload.mjs', import.meta.url));
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;

const children: ChildProcess[] = [];
after(() => killAll(children));

const until = (what: string, check: () => boolean): Promise<void> =>
  untilGuarded(what, check, HANG_GUARD_MS, 20);

/** Starts serve with one sim engine and the fault preload; waits for its listening line. */
async function startServe(fault: 'reject' | 'throw'): Promise<ServeProcess & { enginePid: number }> {
  const s = await startServeProcess(['--engines', '1', '--time-scale', '0.1'], children, {
    nodeArgs: ['--import', PRELOAD],
    env: { ...process.env, SWITCHYARD_TEST_FAULT: fault },
  });
  const enginePid = Number(/engine 0 ready at \S+ \(pid (\d+),/.exec(s.stderr.join('\n'))?.[1]);
  assert.ok(enginePid > 0, s.stderr.join('\n'));
  return { ...s, enginePid };
}

async function complete(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama-3.1-8b', prompt: 'Hello', max_tokens: 4 }),
  });
  await res.text();
  return res.status;
}

describe('switchyard serve: errors nothing caught', { timeout: HANG_GUARD_MS * 2 }, () => {
  it('an unhandled rejection is logged in one line and serving goes on', async () => {
    const s = await startServe('reject');
    assert.equal(await complete(s.url), 200);
    s.proc.kill('SIGUSR2');
    await until('the rejection line', () => s.stderr.some((l) => l.includes('unhandled promise rejection')));
    const line = s.stderr.find((l) => l.includes('unhandled promise rejection')) as string;
    assert.match(
      line,
      /^switchyard serve: unhandled promise rejection, a bug; serving continues: Error: test fault: a rejection nothing handles \| at /,
    );
    assert.equal(s.proc.exitCode, null, 'still running');
    assert.equal(await complete(s.url), 200);
    // A second one within the window is counted, not logged, and serving still goes on. The preload
    // says when serve's handler has had the second one, so the count below reads a handled fault,
    // not one still waiting for its signal.
    s.proc.kill('SIGUSR2');
    await until('the second rejection to be handled', () =>
      s.stderr.includes('test fault preload: rejection 2 dispatched'),
    );
    assert.equal(
      s.stderr.filter((l) => l.includes('unhandled promise rejection')).length,
      1,
      s.stderr.join('\n'),
    );
    assert.equal(await complete(s.url), 200);
    s.proc.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.stderr.join('\n'));
    // Counted once serve has exited and its stderr is closed: a second line written late (a
    // logging bug) cannot slip past the check by arriving after it.
    assert.equal(s.stderr.filter((l) => l.includes('unhandled promise rejection')).length, 1);
  });

  it('an uncaught exception is logged in one line and serve exits 1; its engine exits too', async () => {
    const s = await startServe('throw');
    assert.ok(alive(s.enginePid));
    s.proc.kill('SIGUSR2');
    assert.equal(await s.exited, 1, s.stderr.join('\n'));
    const lines = s.stderr.filter((l) => l.includes('uncaught exception'));
    assert.equal(lines.length, 1, s.stderr.join('\n'));
    assert.match(
      lines[0] as string,
      /^switchyard serve: uncaught exception, a bug; exiting 1 without a drain \(local engines stop on their own\): Error: test fault: an exception nothing catches \| at /,
    );
    await until('the orphaned engine to exit', () => !alive(s.enginePid));
  });
});
