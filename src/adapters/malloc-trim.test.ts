import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  glibcVersion,
  type HeapControl,
  type HeapControlHost,
  heapControl,
  M_MMAP_MAX,
  M_TOP_PAD,
  MMAP_MAX_DEFAULT,
  openHeapControl,
  returnFreeHeap,
  TOP_PAD_DEFAULT,
} from './malloc-trim.ts';

/** A host on glibc Linux whose `load` is `load`. */
const linux = (load: HeapControlHost['load']): HeapControlHost => ({
  platform: 'linux',
  glibc: '2.36',
  load,
});

test('openHeapControl: off Linux and off glibc, koffi is never loaded', () => {
  const loaded: string[] = [];
  const load = (name: string) => {
    loaded.push(name);
    throw new Error('not expected');
  };
  const darwin = openHeapControl({ platform: 'darwin', glibc: undefined, load });
  assert.equal(darwin.control, undefined);
  assert.match(darwin.why ?? '', /glibc's, and this is darwin/);
  const musl = openHeapControl({ platform: 'linux', glibc: undefined, load });
  assert.equal(musl.control, undefined);
  assert.match(musl.why ?? '', /not glibc/);
  assert.deepEqual(loaded, []);
});

test('openHeapControl: koffi missing, libc not loadable, a function not bound: the reason, no throw', () => {
  const missing = openHeapControl(
    linux(() => {
      throw new Error("Cannot find module 'koffi'");
    }),
  );
  assert.equal(missing.control, undefined);
  assert.match(missing.why ?? '', /koffi could not bind malloc_trim: Cannot find module 'koffi'/);
  const noLibc = openHeapControl(
    linux(() => ({
      load: () => {
        throw new Error('libc.so.6: cannot open shared object file');
      },
    })),
  );
  assert.match(noLibc.why ?? '', /libc\.so\.6: cannot open/);
  const noSymbol = openHeapControl(
    linux(() => ({
      load: () => ({
        func: (signature: string) => {
          if (signature.includes('malloc_trim')) throw new Error('Cannot find function malloc_trim');
          return () => 1;
        },
      }),
    })),
  );
  assert.match(noSymbol.why ?? '', /Cannot find function malloc_trim/);
});

test('openHeapControl binds both functions from libc.so.6 by their C signatures', () => {
  const asked: string[] = [];
  const outcome = openHeapControl(
    linux((name) => {
      asked.push(name);
      return {
        load: (path: string) => {
          asked.push(path);
          return {
            func: (signature: string) => {
              asked.push(signature);
              return () => 7;
            },
          };
        },
      };
    }),
  );
  assert.equal(outcome.why, undefined);
  assert.equal(outcome.control?.mallocTrim(0), 7);
  assert.deepEqual(asked, [
    'koffi',
    'libc.so.6',
    'int mallopt(int param, int value)',
    'int malloc_trim(size_t pad)',
  ]);
});

test('returnFreeHeap puts the top pad and mmap limit back, then trims to nothing', () => {
  const calls: string[] = [];
  const control: HeapControl = {
    mallopt: (param, value) => {
      calls.push(`mallopt(${param}, ${value})`);
      return 1;
    },
    mallocTrim: (pad) => {
      calls.push(`malloc_trim(${pad})`);
      return 1;
    },
  };
  assert.equal(returnFreeHeap(control), 1);
  assert.deepEqual(calls, [
    `mallopt(${M_TOP_PAD}, ${TOP_PAD_DEFAULT})`,
    `mallopt(${M_MMAP_MAX}, ${MMAP_MAX_DEFAULT})`,
    'malloc_trim(0)',
  ]);
  // malloc.h's values.
  assert.deepEqual([M_TOP_PAD, M_MMAP_MAX, TOP_PAD_DEFAULT, MMAP_MAX_DEFAULT], [-2, -4, 131072, 65536]);
});

test('on this machine: bound where it is glibc Linux with koffi installed, a reason elsewhere', {
  skip: (process.platform !== 'linux' || glibcVersion() === undefined) && 'not glibc Linux',
}, () => {
  const outcome = heapControl();
  assert.equal(outcome.why, undefined);
  assert.equal(heapControl(), outcome, 'opened once');
  const control = outcome.control as HeapControl;
  // Real calls: mallopt accepts the defaults (1), malloc_trim answers 0 or 1.
  assert.equal(control.mallopt(M_TOP_PAD, TOP_PAD_DEFAULT), 1);
  assert.ok([0, 1].includes(returnFreeHeap(control)));
});
