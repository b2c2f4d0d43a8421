/**
 * `switchyard sim --disable-cascade-attn` as a real child process: with a 512-token system prompt
 * shared by every request, the run without cascade attention decodes slower per token; the flag and
 * a config file's `engine.disableCascadeAttn` agree, the flag wins over the file, and the same seed
 * twice gives the same JSON.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-cascade-'));

/**
 * The fidelity harness's cascade case (src/twin/cascade-fidelity.test.ts) as a sim config: one
 * Llama-2-7B (MHA: vLLM takes cascade at >= 8 requests) at 20 req/s, every prompt 512 shared tokens
 * plus 293 of its own, so about a hundred sequences decode at once behind the shared prefix.
 */
function config(name: string, engineExtra: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(
    path,
    [
      'seed: 3',
      'cluster: { instances: 1, gpu: h100, model: llama-2-7b, tp: 1 }',
      `engine: { maxNumSeqs: 128, maxNumBatchedTokens: 2048${engineExtra} }`,
      'workload:',
      '  kind: system-prompts',
      '  rateRps: 20',
      '  groups: 1',
      '  prefixTokens: 512',
      '  suffix: { kind: fixed, tokens: 293 }',
      '  output: { kind: fixed, tokens: 250 }',
      '  maxRequests: 300',
      '',
    ].join('\n'),
  );
  return path;
}

interface RunJson {
  completed: number;
  tpotMs: { mean: number; p50: number };
}

/** The JSON without the wall-clock fields (the only ones that may differ between two runs). */
function withoutWallClock(name: string): Record<string, unknown> {
  const text = readFileSync(join(dir, `${name}.json`), 'utf8');
  const { wallSeconds, eventsPerWallS, decisionUs, ...rest } = JSON.parse(text) as Record<string, unknown>;
  return rest;
}

test('--disable-cascade-attn: a shared prefix decodes slower per token; file and flag agree; same seed, same JSON', async () => {
  const plain = config('plain', '');
  const runs: [string, string[]][] = [
    ['on', ['--config', plain]],
    ['off-a', ['--config', plain, '--disable-cascade-attn']],
    ['off-b', ['--config', plain, '--disable-cascade-attn']],
    ['off-file', ['--config', config('file-off', ', disableCascadeAttn: true')]],
    // A flag given on the command line wins over the file, as the other engine flags do.
    [
      'off-flag-over-file',
      ['--config', config('file-on', ', disableCascadeAttn: false'), '--disable-cascade-attn'],
    ],
  ];
  const results = await Promise.all(
    runs.map(([name, args]) =>
      runCli(['sim', ...args, '--no-progress', '--json', join(dir, `${name}.json`)]),
    ),
  );
  for (const run of results) assert.equal(run.code, 0, run.stderr);
  const on = withoutWallClock('on') as unknown as RunJson;
  const off = withoutWallClock('off-a') as unknown as RunJson;
  assert.equal(on.completed, 300);
  assert.equal(off.completed, 300);
  // Each sequence reads the 512 shared tokens itself: most of a step's KV read for the 7B.
  assert.ok(
    off.tpotMs.mean > on.tpotMs.mean * 1.2,
    `per-token mean: cascade ${on.tpotMs.mean} ms, --disable-cascade-attn ${off.tpotMs.mean} ms`,
  );
  assert.deepEqual(withoutWallClock('off-b'), withoutWallClock('off-a'));
  assert.deepEqual(withoutWallClock('off-file'), withoutWallClock('off-a'));
  assert.deepEqual(withoutWallClock('off-flag-over-file'), withoutWallClock('off-a'));
});

test('sim --help lists --disable-cascade-attn among the engine flags', async () => {
  const run = await runCli(['sim', '--help']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /--disable-cascade-attn\s+engine: turn off cascade attention/);
});
