/**
 * glibc's `mallopt` and `malloc_trim`, called through koffi (an FFI with prebuilt binaries: no
 * native addon to build), for the standby llama engine's reserve heap (engine-process.ts
 * withReserveHeap).
 *
 * Why: the reserve heap's tunables (one arena, no mmap'd chunks, a top pad of the reserve plus
 * 64 MiB) are what let the KV cache be carved from the freed reserve's pages, but glibc reads them at
 * process start and keeps obeying them: the heap keeps up to the pad free for the engine's life (the
 * leftover of the reserve stays resident), and a KV cache freed by sleep mode, on the heap rather
 * than in its own mapping, stays too. Once the context is created, `mallopt` puts the top pad and the
 * mmap limit back to glibc's defaults (later large blocks are mappings again, unmapped on free) and
 * `malloc_trim(0)` hands the heap's free pages back to the kernel (it also releases free pages in the
 * middle of the heap, which a plain trim of the top does not). node-llama-cpp has no binding for
 * either and Node 20 no FFI of its own.
 *
 * koffi is loaded lazily and only on glibc Linux; anywhere it is missing or fails, callers get the
 * reason instead and carry on without the reserve heap.
 */
import { createRequire } from 'node:module';

/** malloc.h's `M_TOP_PAD`: what glibc keeps free at the top of the heap when it grows or trims it. */
export const M_TOP_PAD = -2;
/** malloc.h's `M_MMAP_MAX`: how many blocks glibc may serve with their own mapping (0: none). */
export const M_MMAP_MAX = -4;
/** glibc's default top pad (DEFAULT_TOP_PAD, 128 KiB). */
export const TOP_PAD_DEFAULT = 128 * 1024;
/** glibc's default mmap limit (DEFAULT_MMAP_MAX). */
export const MMAP_MAX_DEFAULT = 65536;

/** The two C functions. */
export interface HeapControl {
  /** `int mallopt(int param, int value)`: 1 on success, 0 on error. */
  mallopt(param: number, value: number): number;
  /** `int malloc_trim(size_t pad)`: 1 when memory went back to the kernel, 0 otherwise. */
  mallocTrim(pad: number): number;
}

/** The control, or why there is none. */
export type HeapControlOutcome =
  | { readonly control: HeapControl; readonly why?: undefined }
  | { readonly control?: undefined; readonly why: string };

/** What openHeapControl looks at: the defaults are this process's (a test passes others). */
export interface HeapControlHost {
  readonly platform: NodeJS.Platform;
  /** glibc's version at run time, or undefined under another C library (musl, say). */
  readonly glibc: string | undefined;
  /** Loads a package by name (CommonJS require). */
  readonly load: (name: string) => unknown;
}

/** The subset of koffi's API used here. */
interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
}

/** This process's glibc version at run time (Node's report header), or undefined. */
export function glibcVersion(): string | undefined {
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
  return header?.glibcVersionRuntime;
}

function thisHost(): HeapControlHost {
  return { platform: process.platform, glibc: glibcVersion(), load: createRequire(import.meta.url) };
}

/**
 * Loads koffi and binds `mallopt` and `malloc_trim` from libc.so.6. Never throws: off Linux, under
 * another C library, or when koffi or the functions cannot be loaded, the outcome says why.
 */
export function openHeapControl(host: HeapControlHost = thisHost()): HeapControlOutcome {
  if (host.platform !== 'linux') return { why: `malloc_trim is glibc's, and this is ${host.platform}` };
  if (host.glibc === undefined) return { why: "malloc_trim is glibc's, and this C library is not glibc" };
  try {
    const koffi = host.load('koffi') as Koffi;
    const libc = koffi.load('libc.so.6');
    const mallopt = libc.func('int mallopt(int param, int value)') as (p: number, v: number) => number;
    const mallocTrim = libc.func('int malloc_trim(size_t pad)') as (pad: number) => number;
    return { control: { mallopt, mallocTrim } };
  } catch (error) {
    return { why: `koffi could not bind malloc_trim: ${(error as Error).message}` };
  }
}

let opened: HeapControlOutcome | undefined;

/** openHeapControl for this process, once: later calls return the first outcome. */
export function heapControl(): HeapControlOutcome {
  opened ??= openHeapControl();
  return opened;
}

/**
 * Undoes withReserveHeap's run-time tunables and hands the heap's free pages back to the kernel:
 * the top pad and the mmap limit back to glibc's defaults, then `malloc_trim(0)`. The arena limit
 * stays: glibc fixes its arena count at the first thread's allocation. Returns malloc_trim's answer
 * (1: memory was returned).
 */
export function returnFreeHeap(control: HeapControl): number {
  control.mallopt(M_TOP_PAD, TOP_PAD_DEFAULT);
  control.mallopt(M_MMAP_MAX, MMAP_MAX_DEFAULT);
  return control.mallocTrim(0);
}
