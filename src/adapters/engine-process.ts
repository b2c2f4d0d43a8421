/**
 * What every built-in engine child has in common, whoever spawns it (the supervisor in
 * local-engines.ts, the standby pool in standby-engines.ts): the command line it runs, its stdio
 * (a stdin pipe held for its life, so it exits when we die), the tail of its stderr kept for the
 * error when it fails, and the JSON ready line it prints once it serves.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LocalEngine } from './local-engines.ts';
import { PARENT_PIPE_ENV } from './process-signals.ts';

/** The CLI entry point the children run. */
const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));

/** Most stderr characters kept per child, for the error when it dies before it is ready. */
const STDERR_TAIL_CHARS = 4000;

/** glibc's tunable that has malloc ask for transparent huge pages (madvise) on what it maps. */
export const MALLOC_HUGETLB_TUNABLE = 'glibc.malloc.hugetlb';

/**
 * `env` with `glibc.malloc.hugetlb=1` added to GLIBC_TUNABLES (colon-separated `name=value`s),
 * unless it already names that tunable (the operator's value wins).
 *
 * Why: a llama engine's context creation is almost all the first touch of its KV cache, which
 * llama.cpp allocates with malloc and clears at once (384 MiB for the default 4 x 4,096 tokens of
 * the 606 MB bench model). Where THP is `madvise` (Debian's default) those are 4 KiB pages: about
 * 100,000 page faults, 1.2 s of CPU on the 2-vCPU bench VM, whose faults are expensive. With the
 * tunable glibc madvises its mappings for huge pages and the faults drop to a few hundred
 * (docs/benchmarks.md, "Cold start of the llama engine"). glibc reads the tunable only at process
 * start, so the spawner sets it; other C libraries ignore it, and where THP is `never` it does nothing.
 */
export function withMallocHugePages(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const tunables = env['GLIBC_TUNABLES'] ?? '';
  const named = tunables.split(':').some((t) => t.split('=')[0] === MALLOC_HUGETLB_TUNABLE);
  if (named) return env;
  const hugetlb = `${MALLOC_HUGETLB_TUNABLE}=1`;
  return { ...env, GLIBC_TUNABLES: tunables === '' ? hugetlb : `${tunables}:${hugetlb}` };
}

/** MiB above a standby reserve that withReserveHeap's heap keeps free at its top (the heap's other free memory). */
export const RESERVE_HEAP_SLACK_MIB = 64;

/** glibc's tunables withReserveHeap sets; an operator naming any of them keeps the environment as it is. */
export const RESERVE_HEAP_TUNABLES = [
  'glibc.malloc.arena_max',
  'glibc.malloc.mmap_max',
  'glibc.malloc.top_pad',
] as const;

/**
 * `env` for a standby llama engine holding a reserve of `reserveMib` MiB (`--standby-reserve-mib`):
 * GLIBC_TUNABLES gains one malloc arena (`arena_max=1`), no mmap'd chunks (`mmap_max=0`) and a top
 * pad of the reserve plus RESERVE_HEAP_SLACK_MIB, so the reserve, freed, stays in the process's heap
 * and llama.cpp's KV cache is carved from its pages (already backed: no kernel zeroing, no fresh
 * faults) instead of a fresh mapping. Unless the operator names one of RESERVE_HEAP_TUNABLES, or
 * `reserveMib` is not a positive integer: then `env` as it is.
 *
 * Why all three: glibc serves a block over its mmap threshold (32 MiB at most) with its own mapping
 * and unmaps it on free, and a thread's arena cannot hold a block over 64 MiB, so it maps those
 * whatever `mmap_max` says; the reserve (a worker thread's Buffer) and the KV cache (node-llama-cpp's
 * worker thread) meet in one heap only with one arena. The top pad is what glibc keeps free at the
 * top of the heap when it trims, so freeing the reserve returns nothing to the kernel; and since
 * glibc's first growth of the heap asks for the pad too, the heap has its room before V8 reserves its
 * address ranges (with a trim threshold instead, V8's ranges sat right above the heap in 7 of 10
 * standby starts, and glibc grew it with mappings its trim never returns).
 *
 * The price: glibc obeys the tunables for the engine's life, so the heap would keep up to the pad
 * free (what the context does not take of the reserve stays resident) and a KV cache freed by sleep
 * mode would stay too. A standby engine that finds the tunables in its environment (reserveHeapIn)
 * undoes that once the context is created, and after each large free, with mallopt and malloc_trim
 * (malloc-trim.ts): the free pages go back, sleep's KV cache included. What it cannot give back is
 * what llama.cpp allocated on the reserve's already-faulted pages without touching yet (compute
 * buffers): RssAnon at ready still about 42 MiB above the plain reserve's for the bench model, 15 MiB
 * after a 540-token prompt; so serve does not set it (docs/benchmarks.md, "Stop 35").
 */
export function withReserveHeap(env: NodeJS.ProcessEnv, reserveMib: number): NodeJS.ProcessEnv {
  if (!Number.isInteger(reserveMib) || reserveMib < 1) return env;
  const tunables = env['GLIBC_TUNABLES'] ?? '';
  const names = new Set(tunables.split(':').map((t) => t.split('=')[0]));
  if (RESERVE_HEAP_TUNABLES.some((name) => names.has(name))) return env;
  const padBytes = (reserveMib + RESERVE_HEAP_SLACK_MIB) * 1048576;
  const heap = [
    'glibc.malloc.arena_max=1',
    'glibc.malloc.mmap_max=0',
    `glibc.malloc.top_pad=${padBytes}`,
  ].join(':');
  return { ...env, GLIBC_TUNABLES: tunables === '' ? heap : `${tunables}:${heap}` };
}

/** Whether `env`'s GLIBC_TUNABLES hold withReserveHeap's arena and mmap settings (an engine started with them). */
export function reserveHeapIn(env: NodeJS.ProcessEnv): boolean {
  const tunables = (env['GLIBC_TUNABLES'] ?? '').split(':');
  return tunables.includes('glibc.malloc.arena_max=1') && tunables.includes('glibc.malloc.mmap_max=0');
}

/**
 * Spawns `switchyard engine <args>` in its own process group (a terminal's Ctrl-C reaches only us),
 * stdio piped. Its stdin is never written to by default: it only has to stay open while this
 * process lives (see `whenParentGone`); errors on it are the child's exit, reported elsewhere.
 * A llama engine (`args[0]` is `llama`) gets malloc's huge pages (withMallocHugePages).
 */
export function spawnEngine(args: readonly string[]): ChildProcess {
  const env = { ...process.env, [PARENT_PIPE_ENV]: 'stdin' };
  const proc = spawn(process.execPath, [BIN, 'engine', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
    env: args[0] === 'llama' ? withMallocHugePages(env) : env,
  });
  proc.stdin?.on('error', () => {});
  return proc;
}

/**
 * Passes each stderr line of `proc` to `onLine` and keeps the last STDERR_TAIL_CHARS of them;
 * returns a reader of that tail.
 */
export function keepStderrTail(proc: ChildProcess, onLine: (line: string) => void): () => string {
  let tail = '';
  createInterface({ input: proc.stderr! }).on('line', (line) => {
    tail = (tail + line + '\n').slice(-STDERR_TAIL_CHARS);
    onLine(line);
  });
  return () => tail;
}

/** `why`, and the child's stderr tail when it has one (for an error message). */
export function withStderrTail(why: string, stderrTail: string): string {
  return stderrTail === '' ? why : `${why}; its stderr ends:\n${stderrTail}`;
}

/** The engine's ready line (`{"event":"ready","url",...}`) with pid 0, or undefined for any other line. */
export function parseReadyLine(line: string): LocalEngine | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v['event'] !== 'ready' || typeof v['url'] !== 'string' || typeof v['model'] !== 'string')
    return undefined;
  const kv = v['kvEvents'];
  return { url: v['url'], model: v['model'], kvEvents: typeof kv === 'string' ? kv : null, pid: 0 };
}
