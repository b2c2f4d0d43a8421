/**
 * An engine whose supervisor is gone before it serves exits at once instead of loading its model
 * for nobody, with real processes: a llama engine is started as `switchyard serve` starts it (its
 * stdin a pipe the supervisor holds, `SWITCHYARD_PARENT_PIPE=stdin`) and the pipe is closed at once,
 * as a killed supervisor's would be. Before the fix the engine loaded the model, printed its ready
 * line and only then noticed (a large model: minutes of an orphan holding its memory). An engine
 * that fails to start under a live supervisor still exits. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { before, describe, it } from 'node:test';
import { PARENT_PIPE_ENV } from '../../src/adapters/process-signals.ts';
import { BIN } from './support/cli.ts';
import { tinyLlamaModel } from './support/llama.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;

interface Run {
  readonly code: number | null;
  readonly stdout: string[];
  readonly stderr: string[];
}

/** Runs `switchyard engine ...args` under a pipe supervisor; `closeStdin` closes the pipe at once. */
function runEngine(args: readonly string[], closeStdin: boolean): Promise<Run> {
  const proc = spawn(process.execPath, [BIN, 'engine', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, [PARENT_PIPE_ENV]: 'stdin' },
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => stdout.push(l));
  createInterface({ input: proc.stderr }).on('line', (l) => stderr.push(l));
  if (closeStdin) proc.stdin.end();
  const guard = setTimeout(() => proc.kill('SIGKILL'), HANG_GUARD_MS);
  return new Promise((resolve) =>
    proc.once('close', (code) => {
      clearTimeout(guard);
      // A failed engine under a live supervisor: the pipe closes only now.
      proc.stdin.destroy();
      resolve({ code, stdout, stderr });
    }),
  );
}

describe('an engine started under a supervisor', () => {
  let model = '';
  before(() => {
    model = tinyLlamaModel();
  });

  it('exits before loading its model when the supervisor is already gone', async () => {
    const run = await runEngine(['llama', '--model', model, '--port', '0'], true);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.deepEqual(
      run.stdout.filter((l) => l.includes('"event":"ready"')),
      [],
      'no ready line: it never served',
    );
    assert.ok(
      run.stderr.some((l) => l.includes('its supervisor is gone before it served')),
      run.stderr.join('\n'),
    );
  });

  it('still exits with its usage error while the supervisor lives (the watch holds nothing open)', async () => {
    const run = await runEngine(['sim', '--port', '0', '--tp', '3', '--kv-events', 'none'], false);
    assert.equal(run.code, 2);
    assert.ok(
      run.stderr.some((l) => l.includes('SY_ERR_INVALID_ARGUMENT')),
      run.stderr.join('\n'),
    );
  });
});
