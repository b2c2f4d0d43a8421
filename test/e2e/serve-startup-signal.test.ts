/**
 * A signal while `switchyard serve` is still starting its engines, with real processes: serve says
 * so, stops the engines still starting and exits 0, leaving no engine behind. The engines here never
 * get ready (a preload holds every `engine` process before it runs, as a large model's load would
 * for minutes), so the only way they end is being stopped. Before the fix serve died of the signal
 * at once, without a word, and the engines lived on. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { BIN } from './support/cli.ts';
import { pidsWith } from './support/processes.ts';
import { until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-startup-'));
/** Preloaded into every process: an `engine` child never gets past it (keeps its loop alive). */
const HOLD = join(dir, 'hold-engines.mjs');
writeFileSync(
  HOLD,
  "if (process.argv.includes('engine')) { setInterval(() => {}, 1000); await new Promise(() => {}); }\n",
);
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // Engines a failing run left behind: held forever, they would never exit on their own.
  for (const pid of pidsWith(HOLD, 'environ')) process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Starts serve with `args`, signals it once its engines run, and returns how it ended. */
async function signalDuringStart(args: readonly string[], signal: NodeJS.Signals) {
  const marker = `startup-${randomUUID()}`;
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--port', '0', '--served-model-name', marker, ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: `--import=${HOLD}` },
    },
  );
  children.push(proc);
  const stderr: string[] = [];
  createInterface({ input: proc.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('close', (code, sig) => resolve({ code, signal: sig })),
  );
  // Serve's own command line holds the marker too: its engines are the others.
  const engines = () => pidsWith(marker).filter((pid) => pid !== proc.pid);
  await until('the engine children', () => engines().length > 0, HANG_GUARD_MS);
  proc.kill(signal);
  const end = await exited;
  // The stop is SIGTERM then, past a grace period, SIGKILL: both are done when serve exits.
  return { ...end, stderr, left: engines() };
}

describe('serve: a signal during start-up', () => {
  it('stops the local engines still starting and exits 0', async () => {
    const run = await signalDuringStart(['--engines', '2'], 'SIGTERM');
    assert.deepEqual(
      { code: run.code, signal: run.signal },
      { code: 0, signal: null },
      run.stderr.join('\n'),
    );
    assert.ok(
      run.stderr.some((l) => l.includes('SIGTERM during start-up: stopping the engines started so far')),
      run.stderr.join('\n'),
    );
    assert.deepEqual(run.left, [], 'no engine left');
  });

  it('stops an autoscaled pool whose minimum is still starting', async () => {
    const run = await signalDuringStart(
      ['--autoscaler', 'static', '--min-instances', '1', '--max-instances', '1'],
      'SIGINT',
    );
    assert.deepEqual(
      { code: run.code, signal: run.signal },
      { code: 0, signal: null },
      run.stderr.join('\n'),
    );
    assert.ok(
      run.stderr.some((l) => l.includes('stopped (SIGINT during start-up)')),
      run.stderr.join('\n'),
    );
    assert.deepEqual(run.left, [], 'no engine left');
  });
});
