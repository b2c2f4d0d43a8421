/**
 * End-to-end: a backend URL ending in `/v1` (the OpenAI client's base URL people copy from LiteLLM
 * or an SDK) is refused when `switchyard serve` loads its config, with one line naming the backend
 * and the URL to write instead, rather than starting and answering "no healthy instance" after its
 * health checks of `/v1/health` got 404s. The same engine under its root URL serves.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN } from './support/cli.ts';
import { MODEL, type SimEngine, startSims, Teardown } from './support/cluster.ts';
import { startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

const teardown = new Teardown();
const children: ChildProcess[] = [];
let engine: SimEngine;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sy-backend-url-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  engine = (await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown))
    .engines[0] as SimEngine;
});

after(async () => {
  await killAll(children);
  await teardown.run();
});

/** A serve config with one sim backend `e0` at `url`. */
function configWith(url: string): string {
  const file = join(dir, `serve-${children.length}.yaml`);
  writeFileSync(file, `backends:\n  - id: e0\n    type: sim\n    url: ${url}\n    models: [${MODEL}]\n`);
  return file;
}

/** How `serve --config file` first ended: its exit (code, stderr), or 'listening' once it listens. */
async function startOutcome(file: string): Promise<{ code: number | null; stderr: string } | 'listening'> {
  const proc = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('close', resolve));
  let code: number | null | undefined;
  void exited.then((c) => {
    code = c;
  });
  await until(
    'serve to exit or listen',
    () => code !== undefined || stdout.includes('listening on'),
    30_000,
    25,
  );
  if (code === undefined) return 'listening';
  return { code, stderr };
}

describe('a backend URL ending in /v1', { timeout: 60_000 }, () => {
  for (const suffix of ['/v1', '/v1/']) {
    it(`is refused at start-up (${suffix}), naming the backend and the root URL to write`, async () => {
      const outcome = await startOutcome(configWith(`${engine.url}${suffix}`));
      assert.notEqual(outcome, 'listening', 'serve started with a /v1 backend URL');
      if (outcome === 'listening') return;
      assert.equal(outcome.code, 2, outcome.stderr);
      const lines = outcome.stderr.trim().split('\n');
      assert.equal(lines.length, 1, outcome.stderr);
      assert.match(lines[0] as string, /backend 'e0': url '.*\/v1' ends in \/v1/);
      assert.ok(
        (lines[0] as string).includes(`root instead, url: ${engine.url} (the gateway appends`),
        lines[0],
      );
      assert.match(lines[0] as string, /\[SY_ERR_INVALID_CONFIG\]$/);
    });
  }

  it('the same engine under its root URL serves', async () => {
    const serve = await startServe(['--config', configWith(engine.url)], children);
    const r = await fetch(`${serve.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(await serve.stop(), 0);
  });
});
