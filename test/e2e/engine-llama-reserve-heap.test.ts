/**
 * End-to-end: a standby `switchyard engine llama` with `--standby-reserve-mib`, run with
 * withReserveHeap's malloc tunables (src/adapters/engine-process.ts), carves its KV cache out of the
 * freed reserve's own pages: from the hand-over to ready it faults in fewer pages than its KV cache
 * has, where the same engine without the tunables faults in at least all of them (a fresh mapping).
 * Both serve a completion. With the heap, the engine's trim (src/adapters/malloc-trim.ts) hands the
 * heap's free pages back at ready and once sleep mode has freed the KV cache. Real child processes on the tiny model, with 64 sequences of 4,096 tokens
 * so that the KV cache (128 MiB) is past glibc's largest mmap threshold; 4 KiB pages
 * (`glibc.malloc.hugetlb=0`), so that one fault is one page. Reads /proc: Linux, glibc, and THP not
 * `always`, else skipped.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { MALLOC_HUGETLB_TUNABLE, withReserveHeap } from '../../src/adapters/engine-process.ts';
import { kvCacheBytes, standbyReserveMibFor } from '../../src/core/standby-reserve.ts';
import { TINY_LLAMA_SHAPE } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { spawnStandbyLlama, tinyLlamaModel } from './support/llama.ts';

const SEQUENCES = 64;
const CONTEXT = 4096;
const PAGE = 4096;
const KV_BYTES =
  kvCacheBytes(
    {
      layers: TINY_LLAMA_SHAPE.blockCount,
      embedding: TINY_LLAMA_SHAPE.embeddingLength,
      heads: TINY_LLAMA_SHAPE.headCount,
      kvHeads: TINY_LLAMA_SHAPE.headCountKv,
    },
    SEQUENCES * CONTEXT,
  ) ?? 0;
const RESERVE_MIB = standbyReserveMibFor([KV_BYTES]);
/** Why the page counts would not mean what the test reads them as, or false. */
function skipWhy(): string | false {
  if (process.platform !== 'linux') return 'reads /proc/<pid>/stat';
  // The tunables are glibc's; another C library ignores them.
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
  if (header?.glibcVersionRuntime === undefined) return 'not glibc';
  // With THP `always` the fresh KV mapping comes in huge pages too: fewer faults than its 4 KiB pages.
  try {
    if (readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').includes('[always]'))
      return 'transparent huge pages are always on';
  } catch {
    // No THP at all: every page is 4 KiB.
  }
  return false;
}
const pagesCount = { skip: skipWhy() };

/** The process's resident anonymous memory, MiB (/proc/<pid>/status RssAnon). */
function rssAnonMib(pid: number): number {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m !== null, 'no RssAnon');
  return Number(m[1]) / 1024;
}

/** The resident part of the process's brk heap, MiB (/proc/<pid>/smaps, [heap]; 0 without one). */
function heapRssMib(pid: number): number {
  const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const at = smaps.indexOf('[heap]');
  if (at < 0) return 0;
  const m = /^Rss:\s+(\d+) kB$/m.exec(smaps.slice(at));
  assert.ok(m !== null, 'no Rss for [heap]');
  return Number(m[1]) / 1024;
}

/** The process's minor page faults so far (/proc/<pid>/stat field 10, every thread's). */
function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/** What one standby start measured (memory in MiB). */
interface Start {
  /** Minor faults from the hand-over to ready. */
  readonly faults: number;
  /** The status of one completion. */
  readonly status: number;
  /** The brk heap's resident part while standing by, at ready and asleep. */
  readonly heapStandby: number;
  readonly heapReady: number;
  readonly heapAsleep: number;
  /** RssAnon at ready and asleep. */
  readonly anonReady: number;
  readonly anonAsleep: number;
}

/**
 * A standby engine with the reserve and sleep mode, in `env`, handed the tiny model: its minor faults
 * from the hand-over to ready, the status of one completion, and its memory standing by, at ready
 * and once put to sleep (which frees the context and model).
 */
async function faultsToReady(env: NodeJS.ProcessEnv): Promise<Start> {
  const engine = spawnStandbyLlama(
    [
      '--standby-reserve-mib',
      String(RESERVE_MIB),
      '--sequences',
      String(SEQUENCES),
      '--context-size',
      String(CONTEXT),
      '--enable-sleep-mode',
    ],
    env,
  );
  const { child, stderr } = engine;
  try {
    assert.deepEqual(await engine.line(1), { event: 'standby', engine: 'llama' });
    const pid = child.pid!;
    const heapStandby = heapRssMib(pid);
    const before = minorFaults(pid);
    child.stdin!.end(`${JSON.stringify({ model: tinyLlamaModel(), servedModelName: 'm' })}\n`);
    const ready = await engine.line(2);
    assert.equal(ready['event'], 'ready', stderr.join('\n'));
    const faults = minorFaults(pid) - before;
    const heapReady = heapRssMib(pid);
    const anonReady = rssAnonMib(pid);
    const url = ready['url'] as string;
    const answer = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'Hi', max_tokens: 2 }),
    });
    await answer.arrayBuffer();
    assert.equal((await fetch(`${url}/sleep?level=1`, { method: 'POST' })).status, 200);
    const heapAsleep = heapRssMib(pid);
    const anonAsleep = rssAnonMib(pid);
    child.kill('SIGTERM');
    assert.equal(await engine.exited, 0, stderr.join('\n'));
    return { faults, status: answer.status, heapStandby, heapReady, heapAsleep, anonReady, anonAsleep };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

test(
  'with the reserve heap, the KV cache reuses the freed reserve (fewer faults than its pages), and the trim returns the free heap at ready and asleep',
  pagesCount,
  async (t) => {
    const kvPages = KV_BYTES / PAGE;
    assert.equal(KV_BYTES, 128 * 1048576);
    const smallPages = { ...process.env, GLIBC_TUNABLES: `${MALLOC_HUGETLB_TUNABLE}=0` };
    // Without the tunables the KV cache is a fresh mapping: every one of its pages is a fault.
    const plain = await faultsToReady(smallPages);
    assert.equal(plain.status, 200);
    assert.ok(
      plain.faults >= kvPages,
      `${plain.faults} faults without the reserve heap (${kvPages} KV pages)`,
    );
    const heap = await faultsToReady(withReserveHeap(smallPages, RESERVE_MIB));
    assert.equal(heap.status, 200);
    assert.ok(heap.faults < kvPages / 2, `${heap.faults} faults with the reserve heap (${kvPages} KV pages)`);
    t.diagnostic(`faults to ready: ${plain.faults} without, ${heap.faults} with (${kvPages} KV pages)`);
    const mib = (n: number) => n.toFixed(0);
    t.diagnostic(
      `MiB without / with: heap standing by ${mib(plain.heapStandby)} / ${mib(heap.heapStandby)}, ` +
        `at ready ${mib(plain.heapReady)} / ${mib(heap.heapReady)}, asleep ${mib(plain.heapAsleep)} / ${mib(heap.heapAsleep)}; ` +
        `RssAnon at ready ${mib(plain.anonReady)} / ${mib(heap.anonReady)}, asleep ${mib(plain.anonAsleep)} / ${mib(heap.anonAsleep)}`,
    );
    // The trim (src/adapters/malloc-trim.ts), read on the brk heap alone (RssAnon moves by tens of
    // MiB between runs with V8's heap). At ready, the free part of what the context left of the
    // reserve goes back (without the trim the heap stays as it stood by: the top pad keeps it); most
    // of the leftover is not free but llama.cpp's other buffers, so only some MiB (11 and 23 in two
    // runs). Asleep, the KV cache sleep freed goes back too (without the trim it stayed resident).
    assert.ok(
      heap.heapReady <= heap.heapStandby - 4,
      `heap ${mib(heap.heapStandby)} MiB standing by, ${mib(heap.heapReady)} at ready`,
    );
    const kvMib = KV_BYTES / 1048576;
    assert.ok(
      heap.heapAsleep <= heap.heapReady - kvMib / 2,
      `heap ${mib(heap.heapReady)} MiB at ready, ${mib(heap.heapAsleep)} asleep (KV ${kvMib} MiB)`,
    );
  },
);
