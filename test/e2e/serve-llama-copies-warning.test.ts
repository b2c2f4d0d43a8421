/**
 * End-to-end: the README says `serve` "warns when N copies would not fit" (each llama engine loads
 * the model). A model that fits once but not four times gets the warning line before anything
 * starts. The file is sparse (its size from the free memory, no disk used) and not a GGUF, so the
 * run then stops with exit 2 at the GGUF check, which follows the memory check, and starts no engine.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));

test('serve warns when N llama engines x the model exceed free memory, one copy fitting', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-copies-'));
  try {
    // Half the free memory: one copy fits (unless half of what is free now goes before serve
    // looks), four do not.
    const model = join(dir, 'half.gguf');
    const fd = openSync(model, 'w');
    ftruncateSync(fd, Math.floor(freemem() / 2));
    closeSync(fd);
    const child = spawn(
      process.execPath,
      [BIN, 'serve', '--port', '0', '--engine', 'llama', '--engines', '4', '--model', model],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.match(
      stderr,
      /switchyard serve: warning: 4 llama engines x [\d.]+ GiB model = [\d.]+ GiB, more than the [\d.]+ GiB free; each engine loads the model/,
    );
    // Then the GGUF check refuses the file: exit 2, and no engine was started.
    assert.equal(code, 2, stderr);
    assert.match(stderr, /GGUF/);
    assert.doesNotMatch(stdout + stderr, /engine 0 ready|starting \d+ local/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
