/**
 * A ServeGen replay names each client at most once. `--servegen-clients 35,35` replayed client 35
 * twice from the same seed fork, so every arrival came twice at the same instant (3,404 requests in
 * 300 s against about 1,700 for `35` alone), with no word said.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { parseWorkloadSpec } from './create.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-servegen-clients-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'chunk-7-trace.csv'), '0,2,1.5,Gamma,0.4,2.5\n600,2,2,Gamma,0.25,4\n');
writeFileSync(join(dir, 'chunk-9-trace.csv'), '0,1,1,Gamma,1,1\n600,1,1,Gamma,1,1\n');

test('a repeated client id is refused, naming workload.clients and the flag', () => {
  const spec = (clients: string[]) => ({ kind: 'servegen', file: dir, clients, ...FIXED_LENGTHS });
  const e = refusal(() => parseWorkloadSpec(spec(['7', '9', '7'])));
  assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.match(e.message, /workload\.clients: each client id at most once \(--servegen-clients\)/);
  assert.deepEqual((parseWorkloadSpec(spec(['7', '9'])) as { clients: string[] }).clients, ['7', '9']);
});

test('sim --servegen-clients 7,7 exits 2 before the run; 7,9 runs', async () => {
  const twice = await runCliInProcess([
    'sim',
    '--no-progress',
    '--servegen-file',
    dir,
    '--servegen-clients',
    '7,7',
  ]);
  assert.equal(twice.code, USAGE_EXIT_CODE);
  assert.match(
    twice.stderr,
    /option '--servegen-clients <ids>' argument '7,7' is invalid\. '7,7' names a client twice\..*\[SY_ERR_INVALID_ARGUMENT\]/s,
  );
  const both = await runCliInProcess([
    'sim',
    '--no-progress',
    '--servegen-file',
    dir,
    '--servegen-clients',
    '7,9',
    '--duration',
    '60',
  ]);
  assert.equal(both.code, 0, both.stderr);
});
