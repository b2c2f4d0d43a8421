/**
 * Synthetic traces of shapes the twin's speed figures did not cover, for `npm run bench:twin`
 * (`--shapes`) and for replaying by hand with `switchyard sim --trace FILE`. Mooncake-format JSONL
 * (`timestamp` ms, `input_length`, `output_length`, `hash_ids` of 512-token blocks):
 * - agent: a few long shared system prompts (10 to 60 blocks), agent loops of many short steps
 *   (each step's prompt the previous one's plus a block or two of tool output), short outputs, a
 *   high rate;
 * - long-context: 30k to 120k-token prompts, each its own document (a few share one), little reuse;
 * - deep-sessions: chat sessions of 20 to 200 turns, each turn's `hash_ids` the previous turn's
 *   plus the answer's and the new message's blocks (prompts grow to 120k tokens);
 * - bursts: 10,000 requests inside one second, then a quiet minute, several times over.
 * And an Azure-format CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`, 1,000,000 rows by default):
 * - azure: Poisson arrivals, lognormal prompt and output lengths.
 * None is drawn from a real trace; the figures are picked to stress per-block, per-session and
 * per-burst bookkeeping. Deterministic: the same shape, seed and size give the same bytes.
 *
 *   node --import tsx bench/trace-shapes.ts --shape agent --out out/agent.jsonl [--requests N] [--seed S]
 */
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import { Rng } from '../src/core/rng.ts';

/** Tokens per Mooncake hash id. */
const BLOCK_TOKENS = 512;

/** The Mooncake-format shapes. */
export const MOONCAKE_SHAPES = ['agent', 'long-context', 'deep-sessions', 'bursts'] as const;
export type MooncakeShape = (typeof MOONCAKE_SHAPES)[number];
/** Every shape, the Azure CSV last. */
export const SHAPES = [...MOONCAKE_SHAPES, 'azure'] as const;
export type Shape = (typeof SHAPES)[number];

/** Rows each shape writes by default (the bench's size). */
export const DEFAULT_SHAPE_REQUESTS: Record<Shape, number> = {
  agent: 50_000,
  'long-context': 6_000,
  'deep-sessions': 20_000,
  bursts: 50_000,
  azure: 1_000_000,
};

/** One Mooncake row. */
export interface ShapeRow {
  readonly timestamp: number;
  readonly input_length: number;
  readonly output_length: number;
  readonly hash_ids: readonly number[];
}

/** Hands out fresh hash ids (ids are never reused, as in the Mooncake traces). */
class Ids {
  private next = 0;
  /** `n` fresh ids appended to `to`. */
  push(to: number[], n: number): void {
    for (let i = 0; i < n; i++) to.push(this.next++);
  }
  /** `n` fresh ids. */
  take(n: number): number[] {
    const ids: number[] = [];
    this.push(ids, n);
    return ids;
  }
}

/** A prompt of `blocks` blocks whose last block holds 1 to 512 tokens. */
function promptTokens(rng: Rng, blocks: number): number {
  return (blocks - 1) * BLOCK_TOKENS + 1 + rng.int(BLOCK_TOKENS);
}

/** A length drawn lognormally around `median` (spread `sigma`), within [lo, hi]. */
function lognormalInt(rng: Rng, median: number, sigma: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.round(median * Math.exp(sigma * rng.normal()))));
}

/** Rows sorted by timestamp, ties in generation order (Array.prototype.sort is stable). */
function byTime(rows: ShapeRow[]): ShapeRow[] {
  return rows.sort((x, y) => x.timestamp - y.timestamp);
}

/**
 * Agent loops: a loop starts (Poisson, 8 a second) from one of four system prompts of 60, 40, 24
 * and 10 blocks, and takes 4 to 24 steps about a second apart; each step's prompt is the previous
 * step's plus one block (the previous output and the tool's answer); outputs are short (a tool call).
 */
function agentRows(rng: Rng, requests: number): ShapeRow[] {
  const ids = new Ids();
  const systems = [60, 40, 24, 10].map((n) => ids.take(n));
  const loopsPerS = 8;
  const rows: ShapeRow[] = [];
  let startS = 0;
  while (rows.length < requests) {
    startS += rng.exponential(loopsPerS);
    const history = [...(systems[rng.int(systems.length)] as number[])];
    const steps = 4 + rng.int(21);
    let atS = startS;
    for (let s = 0; s < steps && rows.length < requests; s++) {
      ids.push(history, 1);
      const output = lognormalInt(rng, 60, 0.6, 8, 400);
      rows.push({
        timestamp: Math.round(atS * 1000),
        input_length: promptTokens(rng, history.length),
        output_length: output,
        hash_ids: history.slice(),
      });
      atS += 0.2 + rng.exponential(1);
    }
  }
  return byTime(rows);
}

/**
 * Long-context requests: 30k to 120k-token prompts (Poisson, 1.5 a second), each a document of its
 * own; one in ten reads one of twenty shared documents (a retrieval corpus) with its own question.
 */
function longContextRows(rng: Rng, requests: number): ShapeRow[] {
  const ids = new Ids();
  const shared = Array.from({ length: 20 }, () => ids.take(59 + rng.int(176)));
  const rows: ShapeRow[] = [];
  let atS = 0;
  for (let i = 0; i < requests; i++) {
    atS += rng.exponential(1.5);
    let hashIds: number[];
    if (rng.next() < 0.1) {
      hashIds = [...(shared[rng.int(shared.length)] as number[])];
      ids.push(hashIds, 1 + rng.int(3));
    } else {
      hashIds = ids.take(59 + rng.int(176));
    }
    rows.push({
      timestamp: Math.round(atS * 1000),
      input_length: promptTokens(rng, hashIds.length),
      output_length: lognormalInt(rng, 300, 0.8, 16, 4096),
      hash_ids: hashIds,
    });
  }
  return rows;
}

/**
 * Deep sessions: sessions (Poisson, one every 20 s) of 20 to 200 turns with 2 to 20 s between
 * turns, from a 4-block system prompt; each turn's prompt is the previous turn's `hash_ids`, the
 * previous answer's blocks and 1 or 2 blocks of new message, until it would pass 120k tokens.
 */
function deepSessionRows(rng: Rng, requests: number): ShapeRow[] {
  const ids = new Ids();
  const system = ids.take(4);
  const maxBlocks = Math.floor(120_000 / BLOCK_TOKENS);
  const rows: ShapeRow[] = [];
  let startS = 0;
  while (rows.length < requests) {
    startS += rng.exponential(0.05);
    const history = [...system];
    const turns = 20 + rng.int(181);
    let atS = startS;
    let previousOutput = 0;
    for (let t = 0; t < turns && rows.length < requests; t++) {
      const grow = Math.ceil(previousOutput / BLOCK_TOKENS) + 1 + rng.int(2);
      if (history.length + grow > maxBlocks) break;
      ids.push(history, grow);
      const output = lognormalInt(rng, 200, 0.7, 16, 2048);
      rows.push({
        timestamp: Math.round(atS * 1000),
        input_length: promptTokens(rng, history.length),
        output_length: output,
        hash_ids: history.slice(),
      });
      previousOutput = output;
      atS += 2 + rng.next() * 18;
    }
  }
  return byTime(rows);
}

/**
 * Bursts: 10,000 requests spread uniformly over one second, then 60 s with none, repeated; prompts
 * of 1 to 16 blocks, a third of them behind one of three shared 8-block prefixes.
 */
function burstRows(rng: Rng, requests: number): ShapeRow[] {
  const ids = new Ids();
  const prefixes = [ids.take(8), ids.take(8), ids.take(8)];
  const perBurst = 10_000;
  const rows: ShapeRow[] = [];
  for (let i = 0; i < requests; i++) {
    const burst = Math.floor(i / perBurst);
    const atMs = burst * 61_000 + rng.next() * 1000;
    const own = 1 + rng.int(16);
    const hashIds = rng.next() < 1 / 3 ? [...(prefixes[rng.int(3)] as number[])] : [];
    ids.push(hashIds, own);
    rows.push({
      timestamp: Math.round(atMs),
      input_length: promptTokens(rng, hashIds.length),
      output_length: lognormalInt(rng, 150, 0.8, 8, 2048),
      hash_ids: hashIds,
    });
  }
  return byTime(rows);
}

/** The rows of a Mooncake-format shape, sorted by timestamp. */
export function shapeRows(shape: MooncakeShape, seed: number, requests: number): ShapeRow[] {
  const rng = new Rng(seed).fork(shape);
  switch (shape) {
    case 'agent':
      return agentRows(rng, requests);
    case 'long-context':
      return longContextRows(rng, requests);
    case 'deep-sessions':
      return deepSessionRows(rng, requests);
    case 'bursts':
      return burstRows(rng, requests);
  }
}

/** The rows as JSONL text (one object a line, the keys in Mooncake's order). */
export function shapeJsonl(rows: readonly ShapeRow[]): string {
  const lines: string[] = [];
  for (const r of rows) {
    lines.push(
      `{"timestamp": ${r.timestamp}, "input_length": ${r.input_length}, "output_length": ${r.output_length}, "hash_ids": [${r.hash_ids.join(', ')}]}\n`,
    );
  }
  return lines.join('');
}

/** `2023-11-16 18:15:46.6805900` for `ns` nanoseconds after 2023-11-16 00:00 (100 ns ticks). */
function azureStamp(ns: number): string {
  const ticks = Math.floor(ns / 100);
  const dayTicks = 864_000_000_000;
  const day = 16 + Math.floor(ticks / dayTicks);
  let rest = ticks % dayTicks;
  const fraction = rest % 10_000_000;
  rest = (rest - fraction) / 10_000_000;
  const pad = (n: number, w: number): string => String(n).padStart(w, '0');
  // 1M rows at 100 req/s span under two days: November has room.
  return `2023-11-${pad(day, 2)} ${pad(Math.floor(rest / 3600), 2)}:${pad(Math.floor(rest / 60) % 60, 2)}:${pad(rest % 60, 2)}.${pad(fraction, 7)}`;
}

/**
 * Writes an Azure-format CSV of `requests` rows to `path` in chunks (the text of 1M rows is never
 * held whole): Poisson arrivals at 100 req/s, prompts lognormal around 1,000 tokens, outputs
 * around 200.
 */
export function writeAzureCsv(path: string, seed: number, requests: number): void {
  const rng = new Rng(seed).fork('azure');
  const fd = openSync(path, 'w');
  try {
    let chunk = 'TIMESTAMP,ContextTokens,GeneratedTokens\n';
    let atNs = 0;
    for (let i = 0; i < requests; i++) {
      atNs += Math.round(rng.exponential(100) * 1e9);
      const input = lognormalInt(rng, 1000, 1, 2, 30_000);
      const output = lognormalInt(rng, 200, 0.9, 1, 4096);
      chunk += `${azureStamp(atNs)},${input},${output}\n`;
      if (chunk.length > 1 << 20) {
        writeSync(fd, chunk);
        chunk = '';
      }
    }
    writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `shape`'s trace to `path` (a Mooncake shape gzipped when the path ends in .gz); returns
 * the rows written.
 */
export function writeShape(shape: Shape, path: string, seed: number, requests: number): number {
  if (shape === 'azure') {
    writeAzureCsv(path, seed, requests);
    return requests;
  }
  const rows = shapeRows(shape, seed, requests);
  const text = shapeJsonl(rows);
  writeFileSync(path, path.endsWith('.gz') ? gzipSync(text) : text);
  return rows.length;
}

const USAGE = `Usage: node --import tsx bench/trace-shapes.ts --shape SHAPE --out FILE [options]

Writes a synthetic trace of one shape: Mooncake-format JSONL (agent, long-context, deep-sessions,
bursts) or an Azure-format CSV (azure). \`npm run bench:twin -- --shapes\` replays them. The same
shape, seed and size give the same bytes.

Shapes:
  agent           agent loops behind 4 shared system prompts (10-60 blocks): many short steps
                  each extending the last by a block, short outputs, ~8 loops/s (~110 req/s) (default ${DEFAULT_SHAPE_REQUESTS.agent} rows)
  long-context    30k-120k-token prompts, 1.5 req/s, one in ten on a shared document (default ${DEFAULT_SHAPE_REQUESTS['long-context']})
  deep-sessions   chat sessions of 20-200 turns, each turn's hash_ids extending the previous
                  turn's, prompts up to 120k tokens (default ${DEFAULT_SHAPE_REQUESTS['deep-sessions']})
  bursts          10,000 requests in 1 s, then 60 s quiet, repeated (default ${DEFAULT_SHAPE_REQUESTS.bursts})
  azure           Azure LLM 2023-format CSV, Poisson 100 req/s (default ${DEFAULT_SHAPE_REQUESTS.azure})

Options:
  --shape SHAPE     one of the above (required)
  --out FILE        where it goes; a JSONL shape is gzipped when FILE ends in .gz (required)
  --requests N      rows (default: the shape's, above)
  --seed S          the generator's seed (default 1)
  -h, --help        this text

Example:
  node --import tsx bench/trace-shapes.ts --shape deep-sessions --out /tmp/deep.jsonl
  node bin/switchyard.mjs sim --trace /tmp/deep.jsonl --instances 16 --policy prefix-affinity`;

function main(): void {
  const { values } = scriptArgs('trace-shapes', USAGE, () =>
    parseArgs({
      options: {
        shape: { type: 'string' },
        out: { type: 'string' },
        requests: { type: 'string' },
        seed: { type: 'string', default: '1' },
      },
      strict: true,
    }),
  );
  const shape = values.shape;
  if (shape === undefined || values.out === undefined)
    scriptUsageError('trace-shapes', USAGE, '--shape SHAPE and --out FILE are required');
  if (!(SHAPES as readonly string[]).includes(shape))
    scriptUsageError('trace-shapes', USAGE, `--shape must be one of ${SHAPES.join(', ')}; got '${shape}'`);
  const count = (text: string | undefined, flag: string, fallback: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`${flag} must be a non-negative integer, got '${text}'`);
    return n;
  };
  const requests = count(values.requests, '--requests', DEFAULT_SHAPE_REQUESTS[shape as Shape]);
  const seed = count(values.seed, '--seed', 1);
  const out = resolve(values.out);
  const rows = writeShape(shape as Shape, out, seed, requests);
  console.log(`${out}: ${rows} rows of ${shape}`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
