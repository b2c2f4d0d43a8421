/**
 * End-to-end: a standby `switchyard engine llama` with `--standby-reserve-mib`, run with
 * withReserveHeap's malloc tunables (src/adapters/engine-process.ts), carves its KV cache out of the
 * freed reserve's own pages: from the hand-over to ready it faults in fewer pages than its KV cache
 * has, where the same engine without the tunables faults in at least all of them (a fresh mapping).
 * Both serve a completion. Real child processes on the tiny model, with 64 sequences of 4,096 tokens
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

/** The process's minor page faults so far (/proc/<pid>/stat field 10, every thread's). */
function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/**
 * A standby engine with the reserve, in `env`, handed the tiny model: its minor faults from the
 * hand-over to ready, and the status of one completion.
 */
async function faultsToReady(env: NodeJS.ProcessEnv): Promise<{ faults: number; status: number }> {
  const engine = spawnStandbyLlama(
    [
      '--standby-reserve-mib',
      String(RESERVE_MIB),
      '--sequences',
      String(SEQUENCES),
      '--context-size',
      String(CONTEXT),
    ],
    env,
  );
  const { child, stderr } = engine;
  try {
    assert.deepEqual(await engine.line(1), { event: 'standby', engine: 'llama' });
    const before = minorFaults(child.pid!);
    child.stdin!.end(`${JSON.stringify({ model: tinyLlamaModel(), servedModelName: 'm' })}\n`);
    const ready = await engine.line(2);
    assert.equal(ready['event'], 'ready', stderr.join('\n'));
    const faults = minorFaults(child.pid!) - before;
    const answer = await fetch(`${ready['url'] as string}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'Hi', max_tokens: 2 }),
    });
    await answer.arrayBuffer();
    child.kill('SIGTERM');
    assert.equal(await engine.exited, 0, stderr.join('\n'));
    return { faults, status: answer.status };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

test(
  'with the reserve heap, the KV cache reuses the freed reserve: fewer faults than its pages',
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
  },
);
