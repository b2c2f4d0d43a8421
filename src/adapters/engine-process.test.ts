import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { MALLOC_HUGETLB_TUNABLE, spawnEngine, withMallocHugePages } from './engine-process.ts';

test('withMallocHugePages adds the tunable, after any others, and keeps an operator value', () => {
  assert.equal(withMallocHugePages({ PATH: '/bin' })['GLIBC_TUNABLES'], `${MALLOC_HUGETLB_TUNABLE}=1`);
  assert.equal(withMallocHugePages({ PATH: '/bin' })['PATH'], '/bin');
  assert.equal(
    withMallocHugePages({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })['GLIBC_TUNABLES'],
    `glibc.malloc.arena_max=2:${MALLOC_HUGETLB_TUNABLE}=1`,
  );
  for (const own of [`${MALLOC_HUGETLB_TUNABLE}=0`, `glibc.malloc.arena_max=2:${MALLOC_HUGETLB_TUNABLE}=2`]) {
    assert.equal(withMallocHugePages({ GLIBC_TUNABLES: own })['GLIBC_TUNABLES'], own);
  }
  // A tunable whose name only starts with it is another tunable.
  assert.equal(
    withMallocHugePages({ GLIBC_TUNABLES: `${MALLOC_HUGETLB_TUNABLE}x=1` })['GLIBC_TUNABLES'],
    `${MALLOC_HUGETLB_TUNABLE}x=1:${MALLOC_HUGETLB_TUNABLE}=1`,
  );
});

test('a spawned llama engine runs with malloc huge pages in its environment', {
  skip: process.platform !== 'linux' && 'reads /proc/<pid>/environ',
}, async () => {
  const proc = spawnEngine(['llama', '--standby', '--port', '0']);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    // Once it says it waits for a model, it is the engine itself (not a wrapper) that runs.
    const standby = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).on('line', (l) => {
        if (l.startsWith('{"event":"standby"')) resolve(l);
      });
      proc.once('exit', (code) => reject(new Error(`the engine exited ${code} before its standby line`)));
    });
    assert.match(standby, /"engine":"llama"/);
    const environ = readFileSync(`/proc/${proc.pid}/environ`, 'utf8').split('\0');
    const tunables = environ.find((e) => e.startsWith('GLIBC_TUNABLES='));
    assert.ok(tunables?.split(/[=:]/).includes(MALLOC_HUGETLB_TUNABLE), `environment: ${tunables}`);
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
});
