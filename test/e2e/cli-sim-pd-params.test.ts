/**
 * `switchyard sim --pd-policy mooncake --pd-params JSON` as a real child process: the parameters reach
 * the pair policy (decodeAt arrival: refused requests never reach a prefill instance), the same seed
 * and parameters give the same JSON and decision log, and bad parameters are refused naming the key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, simPdArgs } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-pd-params-'));

/** 2 prefill + 2 decode, 200 3,000-token prompts at 40 req/s, TPOT SLO 8 ms: some refused, some not. */
function args(pdParams: string, name: string): string[] {
  const run = { rate: 40, requests: 200, inputTokens: 3000, outputTokens: 100, prefills: 2, decodes: 2 };
  const out = ['--json', join(dir, `${name}.json`), '--decision-log', join(dir, `${name}.jsonl`)];
  return simPdArgs(run, ['--pd-policy', 'mooncake', '--pd-params', pdParams, '--slo-tpot-ms', '8', ...out]);
}

interface RunJson {
  requests: number;
  completed: number;
  rejected: number;
  perInstance: { id: string; requests: number }[];
  pd: { transfers: number };
}

/** The JSON without the wall-clock fields (the only ones that may differ between two runs). */
function withoutWallClock(text: string): Record<string, unknown> {
  const { wallSeconds, eventsPerWallS, decisionUs, ...rest } = JSON.parse(text) as Record<string, unknown>;
  return rest;
}

test('--pd-params decodeAt arrival: the decode side refuses before any prefill; same seed, same output', async () => {
  const params = '{"decodeAt":"arrival"}';
  const runs = await Promise.all(['a', 'b'].map((name) => runCli(args(params, name))));
  for (const run of runs) assert.equal(run.code, 0, run.stderr);
  const text = readFileSync(join(dir, 'a.json'), 'utf8');
  const r = JSON.parse(text) as RunJson;
  assert.ok(r.rejected > 0 && r.completed > 0, `rejected ${r.rejected}, completed ${r.completed}`);
  assert.equal(r.completed + r.rejected, r.requests);
  // At arrival the refused requests never reach a prefill instance (i0, i1); at the prefill's end,
  // mooncake's default (cli-sim-pd.test.ts), all 200 would.
  const prefilled = r.perInstance
    .filter((i) => ['i0', 'i1'].includes(i.id))
    .reduce((n, i) => n + i.requests, 0);
  assert.equal(prefilled, r.completed);
  assert.equal(r.pd.transfers, r.completed);
  // Every refusal is logged (each request has one line, a reject or its prefill instance).
  const log = readFileSync(join(dir, 'a.jsonl'), 'utf8');
  assert.equal((log.match(/"reject":"SY_ERR_SLO_UNREACHABLE"/g) ?? []).length, r.rejected);
  // The same seed and parameters: the same JSON (wall-clock fields aside), byte for byte the same log.
  assert.deepEqual(withoutWallClock(readFileSync(join(dir, 'b.json'), 'utf8')), withoutWallClock(text));
  assert.equal(readFileSync(join(dir, 'b.jsonl'), 'utf8'), log);
});

test('--pd-params with an unknown key or a wrong value is refused, naming the key, before any run', async () => {
  const cases: [string, RegExp][] = [
    [
      '{"decodeAt":"arrival","tpotSlo":50}',
      /--pd-params: P\/D pair policy 'mooncake': .*"tpotSlo"; valid: .*tpotSloMs/,
    ],
    [
      '{"decodeAt":"at-once"}',
      /--pd-params: P\/D pair policy 'mooncake': decodeAt: .*"arrival"\|"prefill-end"/,
    ],
  ];
  const runs = await Promise.all(cases.map(([params], i) => runCli(args(params, `bad-${i}`))));
  for (const [i, run] of runs.entries()) {
    const [, message] = cases[i] as [string, RegExp];
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, message);
    assert.match(run.stderr, /\[SY_ERR_INVALID_ARGUMENT\]\n$/);
    assert.equal(run.stdout, '');
  }
});
