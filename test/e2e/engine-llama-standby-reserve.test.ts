/**
 * End-to-end: a standby `switchyard engine llama` with `--standby-reserve-mib` holds that memory
 * while it stands by and frees it before its context is created (src/engine-servers/llama/memory-reserve.ts),
 * as a real child process on the tiny random-weight model. Reads /proc, so Linux only.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { spawnStandbyLlama } from './support/llama.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'switchyard.mjs');
const RESERVE_MIB = 256;
const linuxOnly = { skip: process.platform !== 'linux' && 'reads /proc/<pid>/status' };

/** The process's resident anonymous memory, MiB (/proc/<pid>/status RssAnon). */
function rssAnonMib(pid: number): number {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m !== null, 'no RssAnon');
  return Number(m[1]) / 1024;
}

test(
  'a standby engine holds its reserve while it stands by and frees it for the context',
  linuxOnly,
  async () => {
    const modelPath = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
    const { child, exited, line } = spawnStandbyLlama(['--standby-reserve-mib', String(RESERVE_MIB)]);
    try {
      assert.deepEqual(await line(1), { event: 'standby', engine: 'llama' });
      // Touched before the standby line: all of it is resident.
      const standing = rssAnonMib(child.pid!);
      assert.ok(standing >= RESERVE_MIB, `${standing.toFixed(0)} MiB resident while standing by`);
      child.stdin!.end(`${JSON.stringify({ model: modelPath, servedModelName: 'm' })}\n`);
      const ready = await line(2);
      assert.equal(ready['event'], 'ready');
      // The tiny model's weights and KV cache take a few MiB: the reserve is gone.
      const serving = rssAnonMib(child.pid!);
      assert.ok(serving < standing - RESERVE_MIB / 2, `${serving.toFixed(0)} MiB resident once ready`);
      const answer = await fetch(`${ready['url'] as string}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', prompt: 'Hi', max_tokens: 2 }),
      });
      assert.equal(answer.status, 200);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  },
);

test('--standby-reserve-mib without --standby is refused with one error line', async () => {
  const child = spawn(
    process.execPath,
    [BIN, 'engine', 'llama', '--model', 'x.gguf', '--standby-reserve-mib', '8', '--port', '0'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 2);
  assert.match(stderr.join('\n'), /standby-reserve-mib.*only with --standby.*SY_ERR_INVALID_ARGUMENT/);
});
