import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import {
  MALLOC_HUGETLB_TUNABLE,
  RESERVE_HEAP_SLACK_MIB,
  RESERVE_HEAP_TUNABLES,
  reserveHeapIn,
  spawnEngine,
  withMallocHugePages,
  withReserveHeap,
} from './engine-process.ts';

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

test('withReserveHeap: one arena, no mmap, a top pad above the reserve; an operator value wins', () => {
  const MiB = 1048576;
  assert.equal(
    withReserveHeap({ PATH: '/bin' }, 448)['GLIBC_TUNABLES'],
    `glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.top_pad=${(448 + RESERVE_HEAP_SLACK_MIB) * MiB}`,
  );
  // After the huge pages, which it does not replace.
  const both = withReserveHeap(withMallocHugePages({}), 8)['GLIBC_TUNABLES'] ?? '';
  assert.deepEqual(
    both.split(':').map((t) => t.split('=')[0]),
    [MALLOC_HUGETLB_TUNABLE, ...RESERVE_HEAP_TUNABLES],
  );
  for (const own of RESERVE_HEAP_TUNABLES) {
    const env = { GLIBC_TUNABLES: `${own}=4` };
    assert.equal(withReserveHeap(env, 448), env);
  }
  for (const none of [0, -1, 1.5, Number.NaN])
    assert.equal(withReserveHeap({}, none)['GLIBC_TUNABLES'], undefined);
});

test('reserveHeapIn: what withReserveHeap set, not an operator arena or mmap value of their own', () => {
  assert.equal(reserveHeapIn(withReserveHeap({}, 448)), true);
  assert.equal(reserveHeapIn(withReserveHeap(withMallocHugePages({}), 448)), true);
  assert.equal(reserveHeapIn({}), false);
  assert.equal(reserveHeapIn(withMallocHugePages({})), false);
  assert.equal(reserveHeapIn({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.mmap_max=0' }), false);
  assert.equal(reserveHeapIn({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=1' }), false);
});
