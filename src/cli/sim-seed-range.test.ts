/**
 * `sim --seed` past 2^32 - 1 ran another seed's run: the Rng keeps the low 32 bits, so
 * `--seed 4294967296` gave seed 0's results byte for byte (and `--seed 1e20` was taken), while a
 * config file's `seed` above 4294967295 is refused. The flag is now bounded the same way.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const run = (seed: string) =>
  runCliInProcess(['sim', '--no-progress', '--seed', seed, '--rate', '2', '--duration', '5']);

test('--seed past 4294967295 is refused; 0 and 4294967295 run', async () => {
  for (const seed of ['4294967296', '1e20']) {
    const r = await run(seed);
    assert.equal(r.code, USAGE_EXIT_CODE, seed);
    assert.match(r.stderr, new RegExp(`'${seed}' is past the largest seed, 4294967295`));
  }
  assert.equal((await run('0')).code, 0);
  assert.equal((await run('4294967295')).code, 0);
});
