/**
 * What `switchyard` loads as it starts: `--version` needs no command's module (loading them all
 * was most of its start-up, bench/cli-startup.ts), and a command loads its own alone. A module
 * hook (node's `module.register`) records every module the process loads, from dist/ or, when
 * dist/ is stale, from src/ through tsx, and require's cache adds what require() loaded.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SWITCHYARD_VERSION } from '../../src/gateway/version.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));

/** The command modules src/cli/main.ts loads on demand (sim-command.js, fidelity.ts, ...). */
const COMMAND_MODULE = /\/cli\/([a-z-]+-command|fidelity)\.(js|ts)$/;

/**
 * Runs switchyard with `args`; returns its stdout and stderr, the command modules and every URL it
 * loaded. Rejects unless it exits with `code`.
 */
async function loadedBy(
  args: readonly string[],
  code = 0,
): Promise<{ stdout: string; stderr: string; commands: string[]; urls: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-startup-'));
  try {
    const log = join(dir, 'loaded.txt');
    const hooks = join(dir, 'hooks.mjs');
    writeFileSync(
      hooks,
      "import { appendFileSync } from 'node:fs';\n" +
        `export async function load(url, context, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, context); }\n`,
    );
    const register = join(dir, 'register.mjs');
    // The hook sees what the module graph loads; require() (createRequire) does not pass through
    // it, so the CommonJS modules in require's cache are added as the process exits.
    writeFileSync(
      register,
      "import { appendFileSync } from 'node:fs';\nimport { createRequire, register } from 'node:module';\n" +
        "import { pathToFileURL } from 'node:url';\n" +
        `register(${JSON.stringify(pathToFileURL(hooks).href)});\n` +
        'const cache = createRequire(import.meta.url).cache;\n' +
        `process.on('exit', () => appendFileSync(${JSON.stringify(log)}, Object.keys(cache).map((p) => pathToFileURL(p).href + '\\n').join('')));\n`,
    );
    writeFileSync(log, '');
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, ['--import', register, BIN, ...args], (error, out, err) =>
        (error?.code ?? 0) === code
          ? resolve({ stdout: out, stderr: err })
          : reject(new Error(`exit ${error?.code ?? 0}, not ${code}: ${error?.message}\n${err}`)),
      );
    });
    const urls = readFileSync(log, 'utf8').split('\n');
    const commands = urls.map((url) => COMMAND_MODULE.exec(url)?.[1]).filter((name) => name !== undefined);
    return { stdout, stderr, commands: [...new Set(commands)].sort(), urls };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('--version, -V, the top-level help and an unknown command load no command module', async () => {
  for (const flag of ['--version', '-V']) {
    const { stdout, commands } = await loadedBy([flag]);
    assert.equal(stdout, `${SWITCHYARD_VERSION}\n`);
    assert.deepEqual(commands, [], flag);
  }
  // The list of commands comes from main.ts's table (main.test.ts holds it to the real commands).
  for (const args of [['--help'], ['help']]) {
    const help = await loadedBy(args);
    assert.match(help.stdout, /^Usage: switchyard/);
    assert.match(help.stdout, /\n {2}fidelity \[options\] <files\.\.\.> +Replay published/);
    assert.deepEqual(help.commands, [], args.join(' '));
  }
  const unknown = await loadedBy(['simm'], 2);
  assert.match(unknown.stderr, /unknown command 'simm' \(Did you mean sim\?\)/);
  assert.deepEqual(unknown.commands, []);
});

test('help COMMAND loads that command alone', async () => {
  const { stdout, commands } = await loadedBy(['help', 'sim']);
  assert.match(stdout, /^Usage: switchyard sim \[options\]/);
  assert.deepEqual(commands, ['sim-command']);
});

test('a command loads its own module alone', async () => {
  const { stdout, commands } = await loadedBy(['engine', 'sim', '--help']);
  assert.match(stdout, /^Usage: switchyard engine sim/);
  assert.deepEqual(commands, ['engine-command', 'llama-engine-command']);
});

test('a sim run without --config loads no YAML parser, and one whose stderr is no terminal no progress bar library', async () => {
  const run = await loadedBy([
    'sim',
    '--workload',
    'poisson',
    '--rate',
    '1',
    '--requests',
    '5',
    '--seed',
    '1',
  ]);
  assert.match(run.stdout, /SLO attainment/);
  assert.deepEqual(run.commands, ['sim-command']);
  // The hook sees the command's own modules and CommonJS packages (cli-table3 draws the tables).
  assert.ok(run.urls.some((url) => url.includes('/node_modules/cli-table3/')));
  assert.deepEqual(
    run.urls.filter(
      (url) => url.includes('/node_modules/cli-progress/') || url.includes('/node_modules/yaml/'),
    ),
    [],
  );
});

test('a sim run with --config loads the YAML parser and reads the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-startup-config-'));
  try {
    const config = join(dir, 'sim.yaml');
    writeFileSync(config, 'seed: 7\n');
    const run = await loadedBy([
      'sim',
      '--config',
      config,
      '--workload',
      'poisson',
      '--rate',
      '1',
      '--requests',
      '5',
    ]);
    assert.match(run.stdout, /SLO attainment/);
    assert.ok(run.urls.some((url) => url.includes('/node_modules/yaml/')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
