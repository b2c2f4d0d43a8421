/**
 * KV transfer between two built-in `llama` engines against raw TCP, measured side by side in one run
 * over loopback (issue 15).
 *
 *   npm run bench:kv-transfer                       # 128 MiB payload, 15 rounds; tiny-model engines
 *   npm run bench:kv-transfer -- --engine-state-mb 96 # larger engines moving ~96 MiB states
 *   npm run bench:kv-transfer -- --mb 256 --runs 7 --json out/kv-transfer.json
 *
 * The KV-state addon (`npm run build:kv-native`) is built first when it is not (best effort): with
 * it, the engines save and load states with llama.cpp's buffer state API and no file at either end.
 *
 * 1. Transfer path. A sender process (this file with --serve) holds a state file in /dev/shm and
 *    offers it on a KvStateServer (src/adapters/kv-transfer/, the code a prefill engine runs); this
 *    process fetches it with fetchKvState into a file of its own (what a decode engine does): disk
 *    read, framing, socket, disk write. Raw TCP: the same sender writes the same number of bytes from
 *    memory on a plain socket in 1 MiB writes and this process counts and drops them (no framing, no
 *    files: the most loopback gives). After one warm-up of each way, each round runs the buffer path
 *    (below) between raw TCP and raw TCP into memory (raw, buffer, memory; the next round memory,
 *    buffer, raw), then the other ways. The verdict is the median of the per-round ratios (runs back
 *    to back, so the machine's load weighs on both alike) with a 95 % bootstrap interval: the target
 *    is met when the whole interval is at or above 0.8x, not met when it is all below, else
 *    undecided; each way's median is printed as before. The receiving file is kept and overwritten,
 *    as a decode engine does. A third figure fetches the same state into a sink that drops it: the protocol without the file write
 *    that llama.cpp's file-only state API imposes. The KV fetches reuse the process's kept-alive
 *    connection, as a decode engine does; raw TCP opens one per transfer (at 128 MiB the set-up is
 *    noise). The buffer path: the same state offered from memory (`offerBuffer`, DATA frames that are
 *    views of it: what a prefill engine with the addon sends from llama_state_seq_get_data's buffer)
 *    and fetched into one reused buffer (`fetchKvState({buffer})`, what such a decode engine hands to
 *    llama_state_seq_set_data): no file at either end. A fourth raw figure reads raw TCP into one
 *    state-sized buffer at each read's offset, as the buffer path does: what the baseline costs
 *    when the bytes are kept in memory rather than dropped in one cache-hot MiB. Then small states (1,150 KiB): KV on the kept connection and on a fresh one, raw TCP on a
 *    fresh one. CPU time per transfer is read for both processes, all threads.
 * 2. Between two engines. A prefill and a decode engine (`switchyard engine llama --pd-role ...`,
 *    tiny model) serve vLLM's P/D flow on long prompts; the decode engine's /pd/stats gives the bytes
 *    it fetched and the time its fetches took (connect to file written), the prefill's the time its
 *    saves took. Raw TCP moves the same bytes per request on a fresh connection, as the engines do.
 *    Twice: engines on the buffer state API (when the addon is built), then engines on files
 *    (SWITCHYARD_KV_NATIVE=0). Those states are small (1.1 MiB), so fixed costs (event loops, round
 *    trips) weigh on the ratio; a third pair (`--no-large-engines` skips it) runs a larger
 *    random-weight model (width 256, as deep as `--engine-state-mb N` needs, default 32 MiB of state
 *    for the same prompt; written once into .cache/models/) for `--large-requests` requests (default
 *    4), on the buffer state API: the throughput figure. Each request's fetch, raw TCP and prefill
 *    wall time are printed and kept in the JSON (`betweenLargeEngines`).
 * 3. Mixed load (`--decodes`, `--long-prompts`): running generations (short prompts, 1,500 tokens,
 *    streamed) while long prompts (about 2,500 tokens) arrive one after another; first on one engine,
 *    then on a P/D pair through vLLM's flow. TPOT: the running generations' gaps between tokens;
 *    TTFT: the long prompts' (a P/D one counts its prefill leg and the decode's first token).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createConnection, createServer } from 'node:net';
import { loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { scriptArgs } from '../scripts/script-args.ts';
import {
  closeIdleKvConnections,
  fetchKvState,
  KvStateServer,
} from '../src/adapters/kv-transfer/kv-transfer.ts';
import { Rng } from '../src/core/rng.ts';
import type { LlamaPdStats } from '../src/engine-servers/llama/pd.ts';
import {
  ensureSizedLlamaGguf,
  ensureTinyLlamaGguf,
  TINY_LLAMA_DEFAULT_PATH,
  TINY_LLAMA_SHAPE,
  type TinyLlamaShape,
} from '../src/engine-servers/llama/tiny-gguf.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const SHM = statSafe('/dev/shm') ? '/dev/shm' : join(ROOT, '.cache');
const RAW_WRITE_BYTES = 1 << 20;
/** The small states of part 1: the size of the tiny model's state for a 2,200-token prompt. */
const SMALL_STATE_BYTES = 1150 << 10;
/** Small states fetched in part 1 (after one warm-up): half on the kept-alive connection, half on fresh ones. */
const SMALL_OFFERS = 41;

function statSafe(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Sender mode: a raw TCP server (client sends a uint32 MiB count... any byte count) and a KV server. */
async function serve(bytes: number, offers: number): Promise<void> {
  const dir = mkdtempSync(join(SHM, 'kv-bench-'));
  const base = join(dir, 'state');
  const payload = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4096) payload.writeUInt32LE(i, i);
  writeFileSync(base, payload);
  const kv = new KvStateServer({ offersMax: 3 * offers + 2 + 2 * SMALL_OFFERS });
  const kvPort = await kv.listen('127.0.0.1', 0);
  const ids: string[] = [];
  for (let i = 0; i <= 2 * offers; i++) {
    linkSync(base, `${base}.${i}`);
    ids.push(kv.offer(`${base}.${i}`, bytes, 0));
  }
  // The buffer path: the same bytes offered from memory (the buffer is never given back or changed).
  const bufferIds: string[] = [];
  for (let i = 0; i <= offers; i++) bufferIds.push(kv.offerBuffer(payload, bytes, 0));
  // Small states the size of the tiny model's (first bytes of the same payload).
  writeFileSync(`${base}.small`, payload.subarray(0, Math.min(bytes, SMALL_STATE_BYTES)));
  const smallIds: string[] = [];
  for (let i = 0; i < SMALL_OFFERS; i++) {
    linkSync(`${base}.small`, `${base}.small.${i}`);
    smallIds.push(kv.offer(`${base}.small.${i}`, Math.min(bytes, SMALL_STATE_BYTES), 0));
  }
  const smallBufferIds: string[] = [];
  for (let i = 0; i < SMALL_OFFERS; i++)
    smallBufferIds.push(kv.offerBuffer(payload, Math.min(bytes, SMALL_STATE_BYTES), 0));
  const raw = createServer({ noDelay: true }, (socket) => {
    socket.once('data', async (head: Buffer) => {
      // The state's own bytes in order (not one cache-hot MiB over and over).
      const total = Number(head.readBigUInt64LE(0));
      for (let sent = 0; sent < total && !socket.destroyed; ) {
        const at = sent % payload.length;
        const n = Math.min(total - sent, RAW_WRITE_BYTES, payload.length - at);
        sent += n;
        if (!socket.write(payload.subarray(at, at + n))) await new Promise((r) => socket.once('drain', r));
      }
      socket.end();
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
  process.stdout.write(
    `${JSON.stringify({ kvPort, rawPort: (raw.address() as AddressInfo).port, ids, smallIds, bufferIds, smallBufferIds })}\n`,
  );
  process.stdin.resume();
  process.stdin.on('end', () => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
}

/**
 * Raw TCP: asks for `bytes`, counts them, drops them; resolves with the milliseconds it took.
 * `onread`: each socket read lands in one reused 1 MiB buffer (node's `onread`, the way the KV client
 * reads: about a sixteenth of the reads of node's default); `data`: node's default reads (64 KiB at
 * most, a fresh buffer each), the baseline of the figures before the KV client read that way.
 */
function rawFetch(
  port: number,
  bytes: number,
  mode: 'onread' | 'data' | 'memory' = 'onread',
): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let got = 0;
    const socket = createConnection({
      host: '127.0.0.1',
      port,
      noDelay: true,
      ...(mode === 'memory'
        ? {
            // Each read lands at its offset in one state-sized buffer (as the buffer path's reads do).
            onread: {
              buffer: () => (got < bytes ? rawTarget(bytes).subarray(got) : rawReadBuffer),
              callback: (n: number) => {
                got += n;
                return true;
              },
            },
          }
        : {}),
      ...(mode === 'onread'
        ? {
            onread: {
              buffer: rawReadBuffer,
              callback: (n: number) => {
                got += n;
                return true;
              },
            },
          }
        : {}),
    });
    socket.on('connect', () => {
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(bytes));
      socket.write(head);
    });
    if (mode === 'data')
      socket.on('data', (c: Buffer) => {
        got += c.length;
      });
    socket.on('end', () =>
      got === bytes ? resolve(performance.now() - start) : reject(new Error(`raw got ${got}`)),
    );
    socket.on('error', reject);
  });
}
const rawReadBuffer = Buffer.alloc(1 << 20);
let rawMemory: Buffer | undefined;
/** Raw TCP into memory: one reused buffer the size of the state (touched once, so no page faults). */
function rawTarget(bytes: number): Buffer {
  if (rawMemory === undefined || rawMemory.byteLength < bytes) rawMemory = Buffer.alloc(bytes);
  return rawMemory;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** The target: the buffer path at least this fraction of raw TCP's throughput. */
const TARGET_RATIO = 0.8;

/** Resamples of the paired ratios for the bootstrap interval of their median. */
const BOOTSTRAP_RESAMPLES = 4000;

/**
 * Per-round ratios `base[i] / candidate[i]` (throughput of the candidate over the baseline's, each
 * pair run back to back), their median, a 95 % percentile-bootstrap interval of that median, and
 * the verdict against TARGET_RATIO: `met` when the whole interval is at or above it, `not met` when
 * it is all below, else `undecided` (the noise is larger than the distance to the target). Every
 * pair counts: none is dropped.
 */
function pairedRatio(base: readonly number[], candidate: readonly number[]) {
  const ratios = candidate.map((c, i) => (base[i] as number) / c);
  // Seeded (src/core/rng.ts), so a run's bootstrap interval is reproducible from its times.
  const random = new Rng(0x5eed15);
  const medians: number[] = [];
  for (let b = 0; b < BOOTSTRAP_RESAMPLES; b++) {
    const sample = ratios.map(() => ratios[random.int(ratios.length)] as number);
    medians.push(median(sample));
  }
  medians.sort((x, y) => x - y);
  const low = medians[Math.floor(0.025 * (medians.length - 1))] as number;
  const high = medians[Math.ceil(0.975 * (medians.length - 1))] as number;
  return {
    pairs: ratios.length,
    median: median(ratios),
    ci95: [low, high] as [number, number],
    min: Math.min(...ratios),
    max: Math.max(...ratios),
    atLeastTarget: ratios.filter((r) => r >= TARGET_RATIO).length,
    verdict: low >= TARGET_RATIO ? 'met' : high < TARGET_RATIO ? 'not met' : 'undecided',
    ratios,
  };
}

/** One line for a paired ratio: median, interval, spread, how many pairs reach the target. */
function pairedLine(p: ReturnType<typeof pairedRatio>): string {
  const f = (x: number) => x.toFixed(2);
  return (
    `median of ${p.pairs} adjacent pairs ${f(p.median)}x (95 % bootstrap interval ${f(p.ci95[0])} to ${f(p.ci95[1])}; ` +
    `pairs ${f(p.min)} to ${f(p.max)}, ${p.atLeastTarget} of ${p.pairs} at least ${TARGET_RATIO}x): target ${TARGET_RATIO}x ${p.verdict}`
  );
}

const gbps = (bytes: number, ms: number): number => (bytes * 8) / (ms / 1000) / 1e9;

async function firstLine(child: ChildProcess): Promise<Record<string, unknown>> {
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  return JSON.parse(line) as Record<string, unknown>;
}

type Way = 'raw' | 'rawData' | 'rawMem' | 'kv' | 'mem' | 'buf';

/** CPU milliseconds process `pid` (the sender) has used, all threads (Linux: /proc). */
function cpuMsOf(pid: number): number {
  let child = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      child += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
    } catch {
      // a thread that ended meanwhile
    }
  }
  return child;
}

/** CPU milliseconds this process (the receiver) has used, all threads. */
function cpuMsOwn(): number {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1000;
}

async function transferPath(bytes: number, runs: number) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', SELF, '--serve', '--bytes', String(bytes), '--runs', String(runs)],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const info = (await firstLine(child)) as {
    kvPort: number;
    rawPort: number;
    ids: string[];
    smallIds: string[];
    bufferIds: string[];
    smallBufferIds: string[];
  };
  const dir = mkdtempSync(join(SHM, 'kv-bench-in-'));
  const ways = ['raw', 'rawData', 'rawMem', 'kv', 'mem', 'buf'] as const;
  const wallMs = Object.fromEntries(ways.map((w) => [w, [] as number[]])) as Record<Way, number[]>;
  const cpuMs = Object.fromEntries(ways.map((w) => [w, [] as number[]])) as Record<Way, number[]>;
  const senderCpuMs = Object.fromEntries(ways.map((w) => [w, [] as number[]])) as Record<Way, number[]>;
  const peaks: number[] = [];
  const dropSink = () =>
    new Writable({
      write: (_c, _e, done) => done(),
      writev: (_c, done) => done(),
    });
  // The decode side's file is kept and overwritten, as a decode engine keeps its state files.
  const path = join(dir, 'in');
  const childPid = child.pid as number;
  const timed = async (way: Way, run: () => Promise<unknown>): Promise<void> => {
    const own0 = cpuMsOwn();
    const child0 = cpuMsOf(childPid);
    const start = performance.now();
    await run();
    wallMs[way].push(performance.now() - start);
    const sender = cpuMsOf(childPid) - child0;
    senderCpuMs[way].push(sender);
    cpuMs[way].push(cpuMsOwn() - own0 + sender);
  };
  await rawFetch(info.rawPort, bytes); // warm-up, every way
  await rawFetch(info.rawPort, bytes, 'data');
  await fetchKvState({ host: '127.0.0.1', port: info.kvPort, transferId: info.ids[runs] as string, path });
  // The buffer path's receiving buffer, kept and reused as a decode engine keeps its state buffers.
  const target = Buffer.allocUnsafeSlow(bytes);
  const intoTarget = { buffer: () => target };
  await fetchKvState({
    host: '127.0.0.1',
    port: info.kvPort,
    transferId: info.bufferIds[runs] as string,
    ...intoTarget,
  });
  // Each round runs the buffer path between the two baselines it is compared with, in the order
  // raw, buf, rawMem and then rawMem, buf, raw (ABC CBA): each buffer run has a raw run next to it,
  // and a load that drifts within a round weighs on both sides alike. The ratios are taken per
  // round (the adjacent runs), then summarised by their median with a bootstrap interval.
  const bufferRun = (i: number) => () =>
    fetchKvState({
      host: '127.0.0.1',
      port: info.kvPort,
      transferId: info.bufferIds[i] as string,
      ...intoTarget,
    });
  for (let i = 0; i < runs; i++) {
    const order: Way[] = i % 2 === 0 ? ['raw', 'buf', 'rawMem'] : ['rawMem', 'buf', 'raw'];
    for (const way of order) {
      if (way === 'raw') await timed('raw', () => rawFetch(info.rawPort, bytes));
      else if (way === 'rawMem') await timed('rawMem', () => rawFetch(info.rawPort, bytes, 'memory'));
      else await timed('buf', bufferRun(i));
    }
    await timed('rawData', () => rawFetch(info.rawPort, bytes, 'data'));
    await timed('kv', async () => {
      const got = await fetchKvState({
        host: '127.0.0.1',
        port: info.kvPort,
        transferId: info.ids[i] as string,
        path,
      });
      peaks.push(got.peakInFlightBytes);
    });
    await timed('mem', () =>
      fetchKvState({
        host: '127.0.0.1',
        port: info.kvPort,
        transferId: info.ids[runs + 1 + i] as string,
        sink: dropSink,
      }),
    );
  }
  // Small states: fixed costs (connection, HELLO/META, files) against raw TCP of the same bytes.
  const smallBytes = Math.min(bytes, SMALL_STATE_BYTES);
  // KV alternately on the kept-alive connection and on a fresh one (the pool emptied first).
  const smallKvMs: number[] = [];
  const smallKvFreshMs: number[] = [];
  const smallRawMs: number[] = [];
  const smallBufMs: number[] = [];
  const smallPath = join(dir, 'small');
  for (const [i, id] of info.smallIds.entries()) {
    const fresh = i % 2 === 1;
    if (fresh) closeIdleKvConnections();
    const start = performance.now();
    await fetchKvState({ host: '127.0.0.1', port: info.kvPort, transferId: id, path: smallPath });
    const kvMsSmall = performance.now() - start;
    const rawMsSmall = await rawFetch(info.rawPort, smallBytes);
    // The buffer path on the kept-alive connection (the one the file fetch left, or a fresh one).
    const startBuf = performance.now();
    await fetchKvState({
      host: '127.0.0.1',
      port: info.kvPort,
      transferId: info.smallBufferIds[i] as string,
      ...intoTarget,
    });
    const bufMsSmall = performance.now() - startBuf;
    if (i === 0) continue; // warm-up
    (fresh ? smallKvFreshMs : smallKvMs).push(kvMsSmall);
    smallRawMs.push(rawMsSmall);
    smallBufMs.push(bufMsSmall);
  }
  rmSync(dir, { recursive: true, force: true });
  const raw = median(wallMs.raw);
  const kv = median(wallMs.kv);
  const mem = median(wallMs.mem);
  const rawData = median(wallMs.rawData);
  const cpu = Object.fromEntries(ways.map((w) => [w, median(cpuMs[w])])) as Record<Way, number>;
  const senderCpu = Object.fromEntries(ways.map((w) => [w, median(senderCpuMs[w])])) as Record<Way, number>;
  return {
    bytes,
    runs,
    rawMsMedian: raw,
    kvMsMedian: kv,
    rawGbps: gbps(bytes, raw),
    kvGbps: gbps(bytes, kv),
    ratio: raw / kv,
    rawDataReadsMsMedian: rawData,
    rawDataReadsGbps: gbps(bytes, rawData),
    ratioToRawDataReads: rawData / kv,
    kvToMemoryMsMedian: mem,
    kvToMemoryGbps: gbps(bytes, mem),
    kvToMemoryRatio: raw / mem,
    rawIntoMemoryMsMedian: median(wallMs.rawMem),
    rawIntoMemoryGbps: gbps(bytes, median(wallMs.rawMem)),
    bufferToRawIntoMemoryRatio: median(wallMs.rawMem) / median(wallMs.buf),
    bufferMsMedian: median(wallMs.buf),
    bufferGbps: gbps(bytes, median(wallMs.buf)),
    bufferRatio: raw / median(wallMs.buf),
    /** Each round's raw TCP time over its buffer-path time (the two runs are adjacent). */
    bufferRatioPerRun: wallMs.buf.map((b, i) => (wallMs.raw[i] as number) / b),
    /** The verdict's figure: the per-round ratios' median, a 95 % bootstrap interval, min and max. */
    bufferRatioPaired: pairedRatio(wallMs.raw, wallMs.buf),
    /** The same against raw TCP read into a state-sized buffer. */
    bufferToRawIntoMemoryPaired: pairedRatio(wallMs.rawMem, wallMs.buf),
    /** CPU milliseconds per transfer, both processes and all their threads (median). */
    cpuMsMedian: cpu,
    /** Of which the sender's. */
    senderCpuMsMedian: senderCpu,
    peakInFlightBytesMax: Math.max(...peaks),
    small: {
      bytes: smallBytes,
      runs: smallKvMs.length,
      kvMsMedian: median(smallKvMs),
      kvFreshConnectionMsMedian: median(smallKvFreshMs),
      rawMsMedian: median(smallRawMs),
      ratio: median(smallRawMs) / median(smallKvMs),
      bufferMsMedian: median(smallBufMs),
      bufferRatio: median(smallRawMs) / median(smallBufMs),
    },
    rawPort: info.rawPort,
    child,
  };
}

/**
 * `--kv-reserve-mib` of the P/D engines (main's `--engine-kv-reserve-mib`; unset: the engines'
 * default, auto): 0 runs them as before stop 30, with no state buffer reserved at start.
 */
let engineKvReserveMib: string | undefined;

async function startEngine(
  model: string,
  role: string | undefined,
  sequences = 1,
  stateApi: 'auto' | 'file' = 'auto',
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'switchyard.mjs'),
      'engine',
      'llama',
      '--model',
      model,
      '--port',
      '0',
      '--sequences',
      String(sequences),
      '--context-size',
      '4096',
      ...(role === undefined ? [] : ['--pd-role', role]),
      ...(role === undefined || engineKvReserveMib === undefined
        ? []
        : ['--kv-reserve-mib', engineKvReserveMib]),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: stateApi === 'file' ? { ...process.env, SWITCHYARD_KV_NATIVE: '0' } : process.env,
    },
  );
  const ready = await firstLine(child);
  return { child, url: ready['url'] as string };
}

/** Posts a completion; the engine serves its model under the file's name, so `body.model` must say it. */
async function post(url: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-llama', ...body }),
  });
  if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
  return (await r.json()) as Record<string, unknown>;
}

/** Width of the larger engines' model: narrow, so a prefill costs little beside the state it leaves. */
const LARGE_WIDTH = 256;
/** About the tokens of part 2's prompt (its tiny-model state is 1,150 KiB at 512 bytes a token). */
const PROMPT_TOKENS_ABOUT = 2200;

/**
 * The random-weight model whose state for part 2's prompt takes about `stateMiB` MiB: width 256 (4
 * heads, 2 KV heads of 64), as many layers as the F16 KV bytes per token (layers x 2 x 2 KV heads x
 * 64 x 2 bytes = 512 bytes a layer) need. Written once into .cache/models/ and reused.
 */
function largeEngineModel(stateMiB: number): { path: string; shape: TinyLlamaShape } {
  const kvBytesPerTokenPerLayer = 2 * (LARGE_WIDTH / 2) * 2;
  const blockCount = Math.ceil((stateMiB * (1 << 20)) / (kvBytesPerTokenPerLayer * PROMPT_TOKENS_ABOUT));
  const shape: TinyLlamaShape = {
    embeddingLength: LARGE_WIDTH,
    blockCount,
    headCount: 4,
    headCountKv: 2,
    feedForwardLength: 3 * LARGE_WIDTH,
    contextLength: TINY_LLAMA_SHAPE.contextLength,
    seed: TINY_LLAMA_SHAPE.seed,
    weights: 'uniform',
  };
  const path = join(ROOT, '.cache', 'models', `random-llama-${blockCount}x${LARGE_WIDTH}.gguf`);
  return { path: ensureSizedLlamaGguf(path, shape), shape };
}

async function betweenEngines(
  requests: number,
  rawPort: number,
  stateApi: 'auto' | 'file',
  model: string = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH)),
) {
  const modelName = basename(model, '.gguf');
  const [prefill, decode] = await Promise.all([
    startEngine(model, 'prefill', 1, stateApi),
    startEngine(model, 'decode', 1, stateApi),
  ]);
  try {
    const rawMs: number[] = [];
    /** Each request's fetch (the decode's fetchMsTotal before and after it): a first one pays page faults. */
    const fetchMsEach: number[] = [];
    /** Each prefill request's wall time (the prompt's prefill, the state's save, the reply). */
    const prefillMsEach: number[] = [];
    /**
     * The decode process's CPU milliseconds (all threads) over each decode request: the fetch, the
     * load and 4 tokens. Wall times on a busy machine swing with the load; CPU shows what a first
     * transfer costs beyond the others.
     */
    const decodeCpuMsEach: number[] = [];
    const decodePid = decode.child.pid as number;
    let bytesEach = 0;
    for (let i = 0; i < requests; i++) {
      const prompt = `request ${i}: ${'the prefill engine computes this long prompt once. '.repeat(60)}`;
      const prefillStart = performance.now();
      const first = await post(prefill.url, {
        model: modelName,
        prompt,
        max_tokens: 1,
        temperature: 0,
        kv_transfer_params: { do_remote_decode: true },
      });
      prefillMsEach.push(performance.now() - prefillStart);
      const before = (await (await fetch(`${decode.url}/pd/stats`)).json()) as LlamaPdStats;
      const cpuBefore = cpuMsOf(decodePid);
      await post(decode.url, {
        model: modelName,
        prompt,
        max_tokens: 4,
        temperature: 0,
        kv_transfer_params: first['kv_transfer_params'],
      });
      decodeCpuMsEach.push(cpuMsOf(decodePid) - cpuBefore);
      const after = (await (await fetch(`${decode.url}/pd/stats`)).json()) as LlamaPdStats;
      bytesEach = after.importedBytes - before.importedBytes;
      fetchMsEach.push(after.fetchMsTotal - before.fetchMsTotal);
      rawMs.push(await rawFetch(rawPort, bytesEach));
    }
    const d = (await (await fetch(`${decode.url}/pd/stats`)).json()) as LlamaPdStats;
    const p = (await (await fetch(`${prefill.url}/pd/stats`)).json()) as LlamaPdStats;
    const fetchMs = d.fetchMsTotal / d.imported;
    const raw = median(rawMs);
    return {
      model: modelName,
      kvStateApi: d.kvStateApi,
      requests,
      stateBytes: bytesEach,
      loadMsMean: d.loadMsTotal / d.imported,
      fetchMsMean: fetchMs,
      fetchMsEach,
      rawMsEach: rawMs,
      fetchMsMedian: median(fetchMsEach),
      /** Raw TCP's median over the fetches' median: the first fetch (a fresh state buffer) weighs less. */
      ratioOfMedians: raw / median(fetchMsEach),
      prefillMsEach,
      decodeCpuMsEach,
      /** The state buffer each engine reserved at start (bytes) and how long that took (ms). */
      decodeReservedBytes: d.stateBufferReservedBytes,
      decodeReserveMs: d.stateBufferReserveMs,
      prefillReservedBytes: p.stateBufferReservedBytes,
      prefillReserveMs: p.stateBufferReserveMs,
      saveMsMean: p.saveMsTotal / p.exported,
      rawMsMedian: raw,
      engineGbps: gbps(bytesEach, fetchMs),
      rawGbps: gbps(bytesEach, raw),
      ratio: raw / fetchMs,
      imported: d.imported,
      localPrefills: d.localPrefills,
    };
  } finally {
    prefill.child.kill('SIGTERM');
    decode.child.kill('SIGTERM');
  }
}

/** Streams one completion; resolves with the first token's time and the gaps between tokens (ms). */
async function streamTimes(
  url: string,
  body: Record<string, unknown>,
): Promise<{ ttftMs: number; gapsMs: number[] }> {
  const start = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-llama', stream: true, ...body }),
  });
  if (r.status !== 200 || r.body === null) throw new Error(`${r.status} ${await r.text()}`);
  const gapsMs: number[] = [];
  let last = 0;
  let ttftMs = 0;
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    const text = Buffer.from(chunk).toString('utf8');
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: {') || !line.includes('"text":"') || line.includes('"text":""')) continue;
      const now = performance.now();
      if (last === 0) ttftMs = now - start;
      else gapsMs.push(now - last);
      last = now;
    }
  }
  return { ttftMs, gapsMs };
}

/** One request through a P/D pair, vLLM's flow (one-token prefill, then the decode streamed). */
async function pdStream(
  prefillUrl: string,
  decodeUrl: string,
  body: Record<string, unknown>,
): Promise<{ ttftMs: number; gapsMs: number[] }> {
  const start = performance.now();
  const first = await post(prefillUrl, {
    ...body,
    max_tokens: 1,
    kv_transfer_params: { do_remote_decode: true },
  });
  const prefillMs = performance.now() - start;
  const rest = await streamTimes(decodeUrl, { ...body, kv_transfer_params: first['kv_transfer_params'] });
  return { ttftMs: prefillMs + rest.ttftMs, gapsMs: rest.gapsMs };
}

const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

/**
 * Mixed load: `decodes` long-running generations (short prompts, many tokens) while `longPrompts`
 * long prompts arrive one after another; on one engine, then on a P/D pair. TPOT is the running
 * generations' gaps between tokens; TTFT the long prompts'.
 */
async function mixedLoad(decodes: number, longPrompts: number) {
  const model = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
  const sequences = decodes + 2;
  const run = async (
    send: (body: Record<string, unknown>) => Promise<{ ttftMs: number; gapsMs: number[] }>,
  ) => {
    const running = Array.from({ length: decodes }, (_, i) =>
      send({ prompt: `running generation ${i}:`, max_tokens: 1500, temperature: 0.8, seed: i }),
    );
    await new Promise((r) => setTimeout(r, 200));
    const ttfts: number[] = [];
    for (let i = 0; i < longPrompts; i++) {
      const prompt = `long prompt ${i}: ${'a long document the prefill reads before answering. '.repeat(70)}`;
      ttfts.push((await send({ prompt, max_tokens: 4, temperature: 0 })).ttftMs);
    }
    const gaps = (await Promise.all(running)).flatMap((x) => x.gapsMs);
    return {
      ttftMsMedian: median(ttfts),
      tpotMsMedian: median(gaps),
      tpotMsP99: quantile(gaps, 0.99),
      tpotMsP999: quantile(gaps, 0.999),
      gaps: gaps.length,
      tpotMsMax: Math.max(...gaps),
    };
  };
  const single = await startEngine(model, undefined, sequences);
  let alone: Awaited<ReturnType<typeof run>>;
  try {
    alone = await run((body) => streamTimes(single.url, body));
  } finally {
    single.child.kill('SIGTERM');
  }
  const [prefill, decode] = await Promise.all([
    startEngine(model, 'prefill', sequences),
    startEngine(model, 'decode', sequences),
  ]);
  let pd: Awaited<ReturnType<typeof run>>;
  try {
    pd = await run((body) => pdStream(prefill.url, decode.url, body));
  } finally {
    prefill.child.kill('SIGTERM');
    decode.child.kill('SIGTERM');
  }
  return { decodes, longPrompts, single: alone, pd };
}

/** Builds the KV-state addon when it is not (best effort); says whether the engines will use it. */
function ensureKvNative(): string {
  const build = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'scripts', 'build-kv-native.ts'), '--best-effort'],
    {
      encoding: 'utf8',
    },
  );
  return `${build.stdout}${build.stderr}`.trim().split('\n').at(-1) ?? '';
}

const USAGE = `Usage: npm run bench:kv-transfer -- [options]   (node --import tsx bench/kv-transfer.ts)

KV state transfer between built-in llama engines (buffer state API and file path) against raw TCP of
the same bytes over loopback, side by side in one run, with the ratios. Builds the optional KV-state
addon first when it is missing (best effort; without it only the file path runs).

Options:
  --mb N            payload of the transfer-path runs, MiB (default 128)
  --runs N          rounds after one warm-up of each path (default 15); each round runs the
                    buffer path between raw TCP and raw TCP into memory (ABC, then CBA);
                    the verdict is the per-round ratios' median with a 95 % bootstrap interval
  --requests N      P/D requests between two real engines (default 8)
  --engine-state-mb N
                    state per request between the two larger engines, MiB (default 32): a
                    random-weight model of width 256, as deep as that needs, built once into
                    .cache/models/
  --large-requests N  P/D requests between the larger engines (default 4)
  --no-large-engines  skip the larger engines
  --engine-kv-reserve-mib auto|N
                    the P/D engines' --kv-reserve-mib (default: theirs, auto); 0 reserves no
                    state buffer at start, as before stop 30
  --decodes N       running generations in the mixed-load part (default 2)
  --long-prompts N  long prompts arriving during the mixed load (default 6)
  --path-only       only the transfer path (part 1): seconds, for trying changes
  --json FILE       write every figure as JSON
  -h, --help        this text

Examples:
  npm run bench:kv-transfer
  npm run bench:kv-transfer -- --runs 9 --path-only
  npm run bench:kv-transfer -- --engine-state-mb 96 --large-requests 3 --json out/kv-transfer.json

Figures and what bounds them: docs/benchmarks.md, "KV transfer between llama engines".
`;

async function main(): Promise<void> {
  const { values } = scriptArgs('bench:kv-transfer', USAGE, () =>
    parseArgs({
      options: {
        // The sender child's flags (transferPath starts this file with them), not the user's.
        serve: { type: 'boolean' },
        bytes: { type: 'string' },
        mb: { type: 'string', default: '128' },
        runs: { type: 'string', default: '15' },
        requests: { type: 'string', default: '8' },
        'engine-state-mb': { type: 'string', default: '32' },
        'large-requests': { type: 'string', default: '4' },
        'no-large-engines': { type: 'boolean' },
        'engine-kv-reserve-mib': { type: 'string' },
        decodes: { type: 'string', default: '2' },
        'long-prompts': { type: 'string', default: '6' },
        json: { type: 'string' },
        /** Only the transfer path (part 1): seconds instead of half a minute, for trying changes. */
        'path-only': { type: 'boolean' },
      },
    }),
  );
  const runs = Number(values.runs);
  for (const [flag, value] of [
    ['--mb', values.mb],
    ['--runs', values.runs],
    ['--requests', values.requests],
    ['--engine-state-mb', values['engine-state-mb']],
    ['--large-requests', values['large-requests']],
    ['--decodes', values.decodes],
    ['--long-prompts', values['long-prompts']],
  ] as const) {
    if (!(Number.isInteger(Number(value)) && Number(value) >= 1)) {
      process.stderr.write(
        `kv-transfer: ${flag} takes a whole number >= 1; got ${value} (--help lists the options)\n`,
      );
      process.exit(2);
    }
  }
  if (values.serve === true) return serve(Number(values.bytes), runs);
  engineKvReserveMib = values['engine-kv-reserve-mib'];
  const bytes = Number(values.mb) * (1 << 20);
  const native = ensureKvNative();
  const load = loadavg()[0]?.toFixed(2);
  const path = await transferPath(bytes, runs);
  const { child: _child, ...pathOut } = path;
  if (values['path-only'] === true) {
    path.child.stdin!.end();
    console.log(
      JSON.stringify({ loadAvg1m: load, loadAvg1mEnd: loadavg()[0]?.toFixed(2), ...pathOut }, null, 2),
    );
    console.log(`buffer path vs raw TCP: ${pairedLine(path.bufferRatioPaired)}`);
    console.log(`buffer path vs raw TCP into memory: ${pairedLine(path.bufferToRawIntoMemoryPaired)}`);
    console.log(
      `medians of the ${runs} runs of each: raw TCP ${path.rawMsMedian.toFixed(1)} ms, buffer path ` +
        `${path.bufferMsMedian.toFixed(1)} ms, ratio of medians ${path.bufferRatio.toFixed(2)}x`,
    );
    return;
  }
  const engines = await betweenEngines(Number(values.requests), path.rawPort, 'auto');
  const enginesFile = await betweenEngines(Number(values.requests), path.rawPort, 'file');
  let enginesLarge: (Awaited<ReturnType<typeof betweenEngines>> & { layers: number }) | undefined;
  if (values['no-large-engines'] !== true) {
    const large = largeEngineModel(Number(values['engine-state-mb']));
    enginesLarge = {
      layers: large.shape.blockCount,
      ...(await betweenEngines(Number(values['large-requests']), path.rawPort, 'auto', large.path)),
    };
  }
  path.child.stdin!.end();
  const mixed = await mixedLoad(Number(values.decodes), Number(values['long-prompts']));
  const out = {
    loadAvg1m: load,
    loadAvg1mEnd: loadavg()[0]?.toFixed(2),
    kvNative: native,
    transferPath: pathOut,
    betweenEngines: engines,
    betweenEnginesFile: enginesFile,
    betweenLargeEngines: enginesLarge ?? null,
    mixedLoad: mixed,
  };
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(
    `KV transfer over loopback (load average ${load} at the start, ${out.loadAvg1mEnd} at the end)`,
  );
  console.log(`  the KV-state addon: ${native}`);
  console.log(
    `  transfer path, ${values.mb} MiB, median of ${runs}: raw TCP ${f(path.rawGbps)} Gb/s (${f(path.rawMsMedian, 1)} ms), ` +
      `KV transfer ${f(path.kvGbps)} Gb/s (${f(path.kvMsMedian, 1)} ms), ratio ${f(path.ratio)}x raw; ` +
      `peak in flight ${(path.peakInFlightBytesMax / (1 << 20)).toFixed(2)} MiB`,
  );
  console.log(
    `  buffer path (state sent from memory, received into one reused buffer: no files), median of ${runs}: ` +
      `${f(path.bufferGbps)} Gb/s (${f(path.bufferMsMedian, 1)} ms), ratio ${f(path.bufferRatio)}x raw ` +
      `(per run: ${path.bufferRatioPerRun.map((r) => f(r)).join(', ')})`,
  );
  console.log(
    `  raw TCP into memory (each read at its offset in one state-sized buffer, as the buffer path reads): ` +
      `${f(path.rawIntoMemoryGbps)} Gb/s (${f(path.rawIntoMemoryMsMedian, 1)} ms); buffer path ${f(path.bufferToRawIntoMemoryRatio)}x that`,
  );
  console.log(`  buffer path vs raw TCP, per round: ${pairedLine(path.bufferRatioPaired)}`);
  console.log(
    `  buffer path vs raw TCP into memory, per round: ${pairedLine(path.bufferToRawIntoMemoryPaired)}`,
  );
  console.log(
    `  raw TCP with node's default reads (64 KiB, a fresh buffer each): ${f(path.rawDataReadsGbps)} Gb/s ` +
      `(${f(path.rawDataReadsMsMedian, 1)} ms); KV transfer ${f(path.ratioToRawDataReads)}x that`,
  );
  console.log(
    `  the same KV transfer into memory (no file written: the protocol alone): ${f(path.kvToMemoryGbps)} Gb/s ` +
      `(${f(path.kvToMemoryMsMedian, 1)} ms), ratio ${f(path.kvToMemoryRatio)}x raw`,
  );
  console.log(
    `  small states on the transfer path, ${path.small.runs} of ${(path.small.bytes / 1024).toFixed(0)} KiB: ` +
      `KV on the kept-alive connection ${f(path.small.kvMsMedian)} ms (on a fresh one ` +
      `${f(path.small.kvFreshConnectionMsMedian)} ms), raw TCP on a fresh connection ${f(path.small.rawMsMedian)} ms, ` +
      `ratio ${f(path.small.ratio)}x raw; buffer path ${f(path.small.bufferMsMedian)} ms, ${f(path.small.bufferRatio)}x raw`,
  );
  for (const e of [engines, enginesFile]) {
    console.log(
      `  between two llama engines (${e.kvStateApi} state API), ${e.requests} states of ${(e.stateBytes / 1024).toFixed(0)} KiB: ` +
        `fetch ${f(e.fetchMsMean)} ms (${f(e.engineGbps)} Gb/s), raw TCP ${f(e.rawMsMedian)} ms ` +
        `(${f(e.rawGbps)} Gb/s), ratio ${f(e.ratio)}x raw; save ${f(e.saveMsMean)} ms, load ${f(e.loadMsMean)} ms each`,
    );
  }
  if (enginesLarge !== undefined) {
    const e = enginesLarge;
    console.log(
      `  between two larger llama engines (${e.model}.gguf: ${e.layers} layers of width ${LARGE_WIDTH}, ${e.kvStateApi} state API), ` +
        `${e.requests} states of ${(e.stateBytes / (1 << 20)).toFixed(1)} MiB: ` +
        `fetch median ${f(e.fetchMsMedian)} ms (${f(gbps(e.stateBytes, e.fetchMsMedian))} Gb/s), raw TCP median ${f(e.rawMsMedian)} ms ` +
        `(${f(e.rawGbps)} Gb/s), ratio ${f(e.ratioOfMedians)}x raw (fetch mean ${f(e.fetchMsMean)} ms, ${f(e.ratio)}x); save ${f(e.saveMsMean)} ms, load ${f(e.loadMsMean)} ms each; ` +
        `prefill request ${f(median(e.prefillMsEach), 0)} ms (median); per request: fetch ${e.fetchMsEach.map((x) => f(x, 1)).join(', ')} ms, raw TCP ${e.rawMsEach.map((x) => f(x, 1)).join(', ')} ms, ` +
        `decode CPU ${e.decodeCpuMsEach.map((x) => f(x, 1)).join(', ')} ms; state buffer reserved at start: decode ` +
        `${f(e.decodeReservedBytes / (1 << 20), 1)} MiB (${f(e.decodeReserveMs, 0)} ms), prefill ${f(e.prefillReservedBytes / (1 << 20), 1)} MiB (${f(e.prefillReserveMs, 0)} ms)`,
    );
  }
  for (const [name, m] of [
    ['one engine', mixed.single],
    ['P/D pair  ', mixed.pd],
  ] as const) {
    console.log(
      `  mixed load (${mixed.decodes} running generations, ${mixed.longPrompts} long prompts), ${name}: ` +
        `TPOT median ${f(m.tpotMsMedian)} ms, p99 ${f(m.tpotMsP99)} ms, p99.9 ${f(m.tpotMsP999)} ms, max ${f(m.tpotMsMax)} ms; ` +
        `long-prompt TTFT median ${f(m.ttftMsMedian, 0)} ms`,
    );
  }
  console.log(
    `KV transfer throughput ${f(path.bufferGbps)} Gb/s (buffer path; file path ${f(path.kvGbps)} Gb/s, ` +
      `${f(path.ratio)}x), raw TCP ${f(path.rawGbps)} Gb/s, ratio ${f(path.bufferRatio)} ` +
      `(per round: median ${f(path.bufferRatioPaired.median)}, 95 % interval ${f(path.bufferRatioPaired.ci95[0])} ` +
      `to ${f(path.bufferRatioPaired.ci95[1])}: target ${path.bufferRatioPaired.verdict})`,
  );
  if (values.json !== undefined) {
    mkdirSync(dirname(values.json), { recursive: true });
    writeFileSync(values.json, `${JSON.stringify(out, null, 2)}\n`);
  }
}

await main();
