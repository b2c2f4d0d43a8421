/**
 * What a built-in engine loads on its way to the ready line: not prom-client, whose load cost
 * every engine start (each `serve` scale-up, each cold start) about 0.13 s of CPU; the engines
 * write their /metrics page themselves (src/engine-servers/vllm-metrics.ts). A module hook (node's
 * `module.register`) records every module the process loads, and require's cache is added at exit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));

/** Writes the hook files into `dir`; returns the --import module and the log it appends URLs to. */
function moduleLog(dir: string): { register: string; log: string } {
  const log = join(dir, 'loaded.txt');
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    "import { appendFileSync } from 'node:fs';\n" +
      `export async function load(url, context, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, context); }\n`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(
    register,
    "import { appendFileSync } from 'node:fs';\nimport { createRequire, register } from 'node:module';\n" +
      "import { pathToFileURL } from 'node:url';\n" +
      `register(${JSON.stringify(pathToFileURL(hooks).href)});\n` +
      'const cache = createRequire(import.meta.url).cache;\n' +
      `process.on('exit', () => appendFileSync(${JSON.stringify(log)}, Object.keys(cache).map((p) => pathToFileURL(p).href + '\\n').join('')));\n`,
  );
  writeFileSync(log, '');
  return { register, log };
}

/** The prom-client modules among `urls`. */
function promClient(urls: readonly string[]): string[] {
  return urls.filter((url) => url.includes('/node_modules/prom-client/'));
}

test('engine sim reaches its ready line, answers, and serves /metrics without loading prom-client', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-engine-modules-'));
  const { register, log } = moduleLog(dir);
  const child = spawn(
    process.execPath,
    ['--import', register, BIN, 'engine', 'sim', '--port', '0', '--kv-events', 'none'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const lines = createInterface({ input: child.stdout });
    let ready: { url: string; model: string } | undefined;
    for await (const line of lines) {
      if (line.includes('"event":"ready"')) {
        ready = JSON.parse(line) as { url: string; model: string };
        break;
      }
    }
    assert.ok(ready !== undefined, 'no ready line');
    const atReady = readFileSync(log, 'utf8').split('\n');
    // The hook saw the engine's own modules (so an empty list below means something).
    assert.ok(atReady.some((url) => /\/engine-servers\/vllm-metrics\.(js|ts)$/.test(url)));
    assert.deepEqual(promClient(atReady), []);

    // One request, then the page: the counts are there, and still no prom-client.
    const answer = await fetch(`${ready.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: ready.model, prompt: 'hello', max_tokens: 3 }),
    });
    assert.equal(answer.status, 200);
    await answer.json();
    const scrape = await fetch(`${ready.url}/metrics`);
    assert.equal(scrape.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const page = await scrape.text();
    assert.match(
      page,
      /^vllm:request_success_total\{finished_reason="length",model_name="[^"]+",engine="0"\} 1$/m,
    );
    assert.match(page, /^vllm:e2e_request_latency_seconds_count\{model_name="[^"]+",engine="0"\} 1$/m);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.deepEqual(promClient(readFileSync(log, 'utf8').split('\n')), []);
  } finally {
    // A failed assertion must not leave the engine running (it would hold the test open).
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
