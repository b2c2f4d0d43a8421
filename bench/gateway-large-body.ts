/**
 * Where a large request body's event-loop time goes in the gateway, and what the intake changes
 * saved: the previous path (chunks kept, one Buffer.concat at the end, JSON.parse, the routing
 * fields with the prefix chain hashed to 65,536 blocks) against ours (chunks copied into one
 * buffer as they arrive, the depth scan, JSON.parse, the routing fields with the chain cut at
 * ROUTING_PREFIX_BLOCKS_MAX), side by side per phase, for four body shapes of about 8 MB.
 *
 *   npm run bench:large-body                 # 15 rounds per shape
 *   npm run bench:large-body -- --rounds 40
 *
 * Each phase is timed alone (median of the rounds, garbage collection included where it falls).
 * "end of body" is what runs in one event-loop turn when the last chunk arrives: that turn blocks
 * every other request (health checks included). The per-chunk copy runs spread over the turns that
 * read the chunks (about 120 of 64 KiB), so it is listed apart. Then a nested-array
 * body of the same size: parsed by the previous path, refused on its bytes by ours.
 *
 * Last, the hand-off to a parse worker (limits.offThreadParseBytes, parse-pool.ts), which takes
 * decode, JSON.parse and the routing fields off the event loop: what posting the body costs the
 * event loop (structured clone of a plain Buffer, a copy into shared memory, or a body read into
 * shared memory as the gateway does), and the event loop's whole share of one worker parse (post,
 * reply, fields rebuilt), against the same parse on the event loop.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { MessageChannel } from 'node:worker_threads';
import { scriptArgs } from '../scripts/script-args.ts';
import { parseRouting, ROUTING_PREFIX_BLOCKS_MAX } from '../src/gateway/fast-parse.ts';
import { jsonDepthExceeds } from '../src/gateway/json-depth.ts';
import { ParsePool } from '../src/gateway/parse-pool.ts';
import { parseBodyFields } from '../src/gateway/request-build.ts';

const CHUNK_BYTES = 64 * 1024;
const PREVIOUS_PREFIX_BLOCKS_MAX = 1 << 16;
const JSON_DEPTH_MAX = 64;

type Kind = 'chat' | 'completion';

interface Shape {
  readonly name: string;
  readonly kind: Kind;
  readonly body: Buffer;
}

/** Bodies of about `bytes` bytes: one long ASCII message, one long non-ASCII one, many turns, token ids. */
function shapes(bytes: number): Shape[] {
  const ascii = 'The quick brown fox jumps over the lazy dog. ';
  const unicode = 'héllo wörld 日本語のテキスト 🙂 ';
  const chat = (messages: unknown): Buffer =>
    Buffer.from(JSON.stringify({ model: 'm', messages, max_tokens: 16 }));
  const repeat = (s: string): string => s.repeat(Math.ceil(bytes / Buffer.byteLength(s)));
  const turns = Math.floor(bytes / 1000);
  return [
    {
      name: 'one ASCII message',
      kind: 'chat',
      body: chat([{ role: 'user', content: repeat(ascii).slice(0, bytes) }]),
    },
    {
      name: 'one non-ASCII message',
      kind: 'chat',
      body: chat([{ role: 'user', content: repeat(unicode).slice(0, bytes / 2) }]),
    },
    {
      name: `${turns} turns of ~1 KB`,
      kind: 'chat',
      body: chat(
        Array.from({ length: turns }, (_, i) => ({
          role: i % 2 === 0 ? 'user' : 'assistant',
          content: ascii.repeat(21),
        })),
      ),
    },
    {
      name: 'completion token ids',
      kind: 'completion',
      body: Buffer.from(
        JSON.stringify({
          model: 'm',
          prompt: Array.from({ length: bytes / 6 }, (_, i) => (i * 7919) % 100_000),
        }),
      ),
    },
  ];
}

/** The body cut as a socket delivers it. */
function chunksOf(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += CHUNK_BYTES) out.push(Buffer.from(body.subarray(i, i + CHUNK_BYTES)));
  return out;
}

/** Milliseconds `f` takes. */
function timed<T>(f: () => T): [T, number] {
  const start = performance.now();
  const value = f();
  return [value, performance.now() - start];
}

interface Phases {
  perChunkCopy: number;
  assemble: number;
  depthScan: number;
  decode: number;
  jsonParse: number;
  routing: number;
}

function endOfBody(p: Phases): number {
  return p.assemble + p.depthScan + p.decode + p.jsonParse + p.routing;
}

function previousPath(shape: Shape, chunks: readonly Buffer[]): Phases {
  const [body, assemble] = timed(() => Buffer.concat(chunks as Buffer[], shape.body.length));
  const [text, decode] = timed(() => body.toString('utf8'));
  const [json, jsonParse] = timed(() => JSON.parse(text) as unknown);
  const [, routing] = timed(() => parseRouting(shape.kind, json, PREVIOUS_PREFIX_BLOCKS_MAX));
  return { perChunkCopy: 0, assemble, depthScan: 0, decode, jsonParse, routing };
}

function oursPath(shape: Shape, chunks: readonly Buffer[]): Phases {
  const [body, perChunkCopy] = timed(() => {
    const whole = Buffer.allocUnsafe(shape.body.length);
    let at = 0;
    for (const c of chunks) at += c.copy(whole, at);
    return whole;
  });
  const [deep, depthScan] = timed(() => jsonDepthExceeds(body, JSON_DEPTH_MAX));
  if (deep) throw new Error(`${shape.name}: unexpectedly deep`);
  const [text, decode] = timed(() => body.toString('utf8'));
  const [json, jsonParse] = timed(() => JSON.parse(text) as unknown);
  const [, routing] = timed(() => parseRouting(shape.kind, json));
  return { perChunkCopy, assemble: 0, depthScan, decode, jsonParse, routing };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function medianPhases(runs: Phases[]): Phases {
  const pick = (k: keyof Phases): number => median(runs.map((r) => r[k]));
  return {
    perChunkCopy: pick('perChunkCopy'),
    assemble: pick('assemble'),
    depthScan: pick('depthScan'),
    decode: pick('decode'),
    jsonParse: pick('jsonParse'),
    routing: pick('routing'),
  };
}

function row(label: string, previous: number, ours: number): string {
  const r = previous / ours;
  const ratio = ours > 0 ? `${r >= 100 ? r.toFixed(0) : r.toFixed(2)}x` : '-';
  return `  ${label.padEnd(32)}${previous.toFixed(2).padStart(10)}${ours.toFixed(2).padStart(10)}${ratio.padStart(10)}`;
}

const USAGE = `Usage: npm run bench:large-body -- [options]   (node --import tsx bench/gateway-large-body.ts)

Where a large request body's event-loop time goes in the gateway, in one process: the previous
intake against the current one per phase, for four body shapes, a nested-array body against the
depth scan, and the hand-off to a parse worker against a parse on the event loop.

Options:
  --rounds N        measured rounds per shape, after two warm-up rounds (default 15)
  --bytes N         the bodies' size in bytes (default 7900000)
  -h, --help        this text

Examples:
  npm run bench:large-body
  npm run bench:large-body -- --rounds 40`;

async function main(): Promise<void> {
  const { values } = scriptArgs('bench:large-body', USAGE, () =>
    parseArgs({
      options: { rounds: { type: 'string', default: '15' }, bytes: { type: 'string', default: '7900000' } },
    }),
  );
  const rounds = Number(values.rounds);
  const bytes = Number(values.bytes);
  console.log(
    `gateway large-body intake: ${rounds} rounds per shape, median ms; routing chain cap ${PREVIOUS_PREFIX_BLOCKS_MAX} -> ${ROUTING_PREFIX_BLOCKS_MAX} blocks`,
  );
  for (const shape of shapes(bytes)) {
    const chunks = chunksOf(shape.body);
    const previous: Phases[] = [];
    const ours: Phases[] = [];
    for (let i = 0; i < rounds + 2; i++) {
      // Alternate, so both see the same heap and the same warm-up; the first two rounds are warm-up.
      const p = previousPath(shape, chunks);
      const o = oursPath(shape, chunks);
      if (i >= 2) {
        previous.push(p);
        ours.push(o);
      }
    }
    const p = medianPhases(previous);
    const o = medianPhases(ours);
    console.log(`\n${shape.name} (${(shape.body.length / 1e6).toFixed(1)} MB)`);
    console.log(
      `  ${'phase'.padEnd(32)}${'previous'.padStart(10)}${'ours'.padStart(10)}${'ratio'.padStart(10)}`,
    );
    console.log(row('assemble (Buffer.concat)', p.assemble, o.assemble));
    console.log(row('depth scan', p.depthScan, o.depthScan));
    console.log(row('decode (toString utf8)', p.decode, o.decode));
    console.log(row('JSON.parse', p.jsonParse, o.jsonParse));
    console.log(row('routing fields + prefix hash', p.routing, o.routing));
    console.log(row('= end of body (one turn)', endOfBody(p), endOfBody(o)));
    console.log(row('per-chunk copies (spread)', p.perChunkCopy, o.perChunkCopy));
    const totalP = median(previous.map((r) => endOfBody(r) + r.perChunkCopy));
    const totalO = median(ours.map((r) => endOfBody(r) + r.perChunkCopy));
    console.log(row('= all event-loop time', totalP, totalO));
  }
  deepBomb(bytes);
  await handOff(shapes(bytes), rounds);
}

/** `body` in shared memory, as body-reader.ts reads a body bound for a parse worker. */
function shared(body: Buffer): Buffer {
  const out = Buffer.from(new SharedArrayBuffer(body.length));
  body.copy(out);
  return out;
}

/** The event loop's cost of handing bodies to a parse worker, against parsing them on it (median ms). */
async function handOff(all: readonly Shape[], rounds: number): Promise<void> {
  const pool = new ParsePool({ bytesMax: 1 << 30, threads: 1 });
  const { port1, port2 } = new MessageChannel();
  port2.on('message', () => {});
  console.log('\nhand-off to a parse worker, event-loop ms (median)');
  console.log(
    `  ${'shape'.padEnd(26)}${'clone'.padStart(8)}${'to SAB'.padStart(8)}${'SAB'.padStart(8)}${'worker'.padStart(9)}${'main'.padStart(8)}${'ratio'.padStart(8)}`,
  );
  for (const shape of all) {
    const inShared = shared(shape.body);
    const clone: number[] = [];
    const toShared: number[] = [];
    const post: number[] = [];
    const worker: number[] = [];
    const main: number[] = [];
    for (let i = 0; i < rounds + 2; i++) {
      const c = timed(() => port1.postMessage(shape.body))[1];
      const t = timed(() => port1.postMessage(shared(shape.body)))[1];
      const p = timed(() => port1.postMessage(inShared))[1];
      // The event loop's busy time over a whole worker parse: post, reply, fields rebuilt.
      const before = performance.eventLoopUtilization();
      await pool.parse(shape.kind, inShared);
      const w = performance.eventLoopUtilization(before).active;
      const m = timed(() => parseBodyFields(shape.kind, shape.body))[1];
      if (i < 2) continue;
      clone.push(c);
      toShared.push(t);
      post.push(p);
      worker.push(w);
      main.push(m);
    }
    const [cm, tm, pm, wm, mm] = [clone, toShared, post, worker, main].map(median) as number[];
    const cells = [cm, tm, pm].map((x) => (x as number).toFixed(2).padStart(8)).join('');
    console.log(
      `  ${shape.name.slice(0, 25).padEnd(26)}${cells}${(wm as number).toFixed(2).padStart(9)}${(mm as number).toFixed(2).padStart(8)}${`${((mm as number) / (wm as number)).toFixed(1)}x`.padStart(8)}`,
    );
  }
  console.log(
    '  clone: posting a plain Buffer; to SAB: copying it into shared memory and posting that; SAB: posting a body\n' +
      '  already in shared memory (what the gateway does); worker: event-loop busy time over one whole worker parse\n' +
      '  (post, wait, reply; ELU active); main: the same parse on the event loop (decode, JSON.parse, fields).',
  );
  port1.close();
  await pool.close();
}

/** A body of nested arrays: the previous path parsed it (then failed its schema); ours refuses it on the bytes. */
function deepBomb(bytes: number): void {
  const depth = Math.floor((bytes - 40) / 2);
  const body = Buffer.from(`{"model":"m","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`);
  const [, previous] = timed(() => {
    try {
      parseRouting('chat', JSON.parse(body.toString('utf8')), PREVIOUS_PREFIX_BLOCKS_MAX);
    } catch {
      // The schema refuses it, after the parse.
    }
  });
  const [deep, ours] = timed(() => jsonDepthExceeds(body, JSON_DEPTH_MAX));
  if (!deep) throw new Error('the bomb passed the depth scan');
  console.log(`\nnested arrays, depth ${depth} (${(body.length / 1e6).toFixed(1)} MB), one round`);
  console.log(
    `  ${'phase'.padEnd(32)}${'previous'.padStart(10)}${'ours'.padStart(10)}${'ratio'.padStart(10)}`,
  );
  console.log(row('parse + schema / depth scan', previous, ours));
}

await main();
