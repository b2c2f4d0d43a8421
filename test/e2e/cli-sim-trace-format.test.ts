/**
 * A trace whose format cannot be detected: the error says where to set it (no command-line flag
 * does: the workload block's `format` key), and that key is honoured.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

test('an undetectable trace format names where to set it, and a config format: is used', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-trace-format-'));
  const trace = join(dir, 'odd.csv');
  writeFileSync(trace, 'a,b\n1,2\n');
  const run = await runCli(['sim', '--trace', trace, '--no-progress']);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /cannot tell the trace format/);
  assert.match(run.stderr, /format to one of azure, mooncake, vidur in a workload block \(sim --config/);
  assert.match(run.stderr, /SY_ERR_TRACE_PARSE/);
  const config = join(dir, 'sim.yaml');
  writeFileSync(config, `workload:\n  kind: trace\n  trace: ${JSON.stringify(trace)}\n  format: azure\n`);
  const named = await runCli(['sim', '--config', config, '--no-progress']);
  assert.equal(named.code, 2, named.stderr);
  assert.match(named.stderr, /Azure trace header must name columns/, 'the format from the config is used');
});
