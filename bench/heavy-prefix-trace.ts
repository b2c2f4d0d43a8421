/**
 * A synthetic Mooncake-format trace (JSONL: `timestamp` ms, `input_length`, `output_length`,
 * `hash_ids` of 512-token blocks) with much heavier prefix sharing than the conversation trace:
 * the shape of agent and chat traffic whose prompts grow turn by turn. Used by `npm run bench:twin`
 * (its third workload, `heavy-prefix`) to look for twin code whose cost grows with a prompt's or a
 * session's history; also a command that writes the file:
 *
 *   node --import tsx bench/heavy-prefix-trace.ts --out out/heavy-prefix.jsonl [--requests N] [--seed S]
 *     [--sessions-per-s R] [--mean-turns T] [--max-turns M]
 *
 * What the trace holds (every figure below is a flag of `HeavyPrefixOptions`):
 * - a few long shared system prompts (default 180, 120, 60 and 16 blocks: 92k to 8k tokens), each
 *   session starting from one of them, the long ones less often;
 * - multi-turn sessions: each turn's prompt is the previous turn's `hash_ids`, then blocks for the
 *   previous answer (its output length in blocks), then 1 to 4 blocks of new user text; a session
 *   ends after its drawn number of turns or before a prompt would pass `maxPromptTokens` (100,000);
 * - some sessions (`branchShare`, 10%) start as a branch of an earlier session's history (a retry,
 *   an edited message or a sub-agent), so the prefix tree branches below the system prompts too;
 * - sessions arrive as a Poisson process; a session's turns follow each other after exponential
 *   think times.
 * Deterministic: the same options give the same bytes.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import { Rng } from '../src/core/rng.ts';

/** Tokens per Mooncake hash id. */
const BLOCK_TOKENS = 512;

/** The generator's knobs; `DEFAULT_HEAVY_PREFIX` gives the bench's trace. */
export interface HeavyPrefixOptions {
  readonly seed: number;
  /** Rows to write (the last session is cut there). */
  readonly requests: number;
  /** Session starts per second (Poisson). */
  readonly sessionsPerS: number;
  /** Blocks of each shared system prompt. */
  readonly systemBlocks: readonly number[];
  /** Relative weight of each system prompt, same order. */
  readonly systemWeights: readonly number[];
  /** Mean turns of a session (geometric), and the most. */
  readonly meanTurns: number;
  readonly maxTurns: number;
  /** Mean think time between a session's turns, seconds (exponential). */
  readonly meanThinkS: number;
  /** Longest prompt written, tokens. */
  readonly maxPromptTokens: number;
  /** Share of sessions that start from an earlier session's history. */
  readonly branchShare: number;
  /** Mean output length, tokens (exponential above a floor of 16, capped at 2,048). */
  readonly meanOutputTokens: number;
}

/** The bench's trace: about the conversation trace's row count, prompts of 8k to 100k tokens. */
export const DEFAULT_HEAVY_PREFIX: HeavyPrefixOptions = {
  seed: 1,
  requests: 12_000,
  sessionsPerS: 0.5,
  systemBlocks: [180, 120, 60, 16],
  systemWeights: [1, 2, 3, 4],
  meanTurns: 8,
  maxTurns: 40,
  meanThinkS: 20,
  maxPromptTokens: 100_000,
  branchShare: 0.1,
  meanOutputTokens: 300,
};

/** One row of the trace. */
export interface HeavyPrefixRow {
  readonly timestamp: number;
  readonly input_length: number;
  readonly output_length: number;
  readonly hash_ids: readonly number[];
}

/** The trace's rows, sorted by timestamp (ties kept in generation order). */
export function heavyPrefixRows(options: HeavyPrefixOptions = DEFAULT_HEAVY_PREFIX): HeavyPrefixRow[] {
  const rng = new Rng(options.seed);
  const maxBlocks = Math.floor(options.maxPromptTokens / BLOCK_TOKENS);
  let nextId = 0;
  const systems = options.systemBlocks.map((n) => Array.from({ length: n }, () => nextId++));
  const weightSum = options.systemWeights.reduce((s, w) => s + w, 0);
  const pickSystem = (): readonly number[] => {
    let u = rng.next() * weightSum;
    for (let i = 0; i < systems.length; i++) {
      u -= options.systemWeights[i] as number;
      if (u < 0) return systems[i] as number[];
    }
    return systems[systems.length - 1] as number[];
  };
  const outputTokens = (): number =>
    Math.min(2048, 16 + Math.floor(rng.exponential(1 / Math.max(1, options.meanOutputTokens - 16))));
  // Histories of earlier sessions' turns, for branches (a bounded pool, oldest replaced).
  const pool: (readonly number[])[] = [];
  const POOL = 256;
  const rows: HeavyPrefixRow[] = [];
  let sessionStartS = 0;
  while (rows.length < options.requests) {
    sessionStartS += rng.exponential(options.sessionsPerS);
    const turns = Math.min(
      options.maxTurns,
      1 + Math.floor(rng.exponential(1 / Math.max(1e-9, options.meanTurns - 1))),
    );
    let history: number[];
    if (pool.length > 0 && rng.next() < options.branchShare) {
      const from = pool[rng.int(pool.length)] as readonly number[];
      // A branch keeps a prefix of that history, half of it or more (which may end inside a long
      // system prompt: the branch then shares only part of it).
      history = from.slice(0, Math.max(1, Math.ceil(from.length * (0.5 + 0.5 * rng.next()))));
    } else {
      history = [...pickSystem()];
    }
    let atS = sessionStartS;
    let previousOutput = 0;
    for (let t = 0; t < turns && rows.length < options.requests; t++) {
      const answerBlocks = Math.ceil(previousOutput / BLOCK_TOKENS);
      const userBlocks = 1 + rng.int(4);
      if (history.length + answerBlocks + userBlocks > maxBlocks) break;
      for (let i = 0; i < answerBlocks + userBlocks; i++) history.push(nextId++);
      // The last block is partly filled: 1 to 512 tokens of it.
      const inputLength = (history.length - 1) * BLOCK_TOKENS + 1 + rng.int(BLOCK_TOKENS);
      const output = outputTokens();
      rows.push({
        timestamp: Math.round(atS * 1000),
        input_length: inputLength,
        output_length: output,
        hash_ids: history.slice(),
      });
      previousOutput = output;
      atS += rng.exponential(1 / options.meanThinkS);
    }
    if (pool.length < POOL) pool.push(history.slice());
    else pool[rng.int(POOL)] = history.slice();
  }
  // Stable: rows of equal timestamps keep their order.
  return rows
    .map((row, i) => ({ row, i }))
    .sort((x, y) => x.row.timestamp - y.row.timestamp || x.i - y.i)
    .map((x) => x.row);
}

/** The rows as JSONL text (one object a line, the keys in Mooncake's order). */
export function heavyPrefixJsonl(options: HeavyPrefixOptions = DEFAULT_HEAVY_PREFIX): string {
  const rows = heavyPrefixRows(options);
  let text = '';
  for (const r of rows) {
    text += `{"timestamp": ${r.timestamp}, "input_length": ${r.input_length}, "output_length": ${r.output_length}, "hash_ids": [${r.hash_ids.join(', ')}]}\n`;
  }
  return text;
}

const USAGE = `Usage: node --import tsx bench/heavy-prefix-trace.ts --out FILE [options]

Writes the heavy-prefix Mooncake-format trace that \`npm run bench:twin\` replays (its heavy-prefix
scenario): long shared system prompts, multi-turn sessions growing to 100k tokens, branches. The
same options give the same bytes.

Options:
  --out FILE              where the JSONL goes, gzipped when it ends in .gz (required)
  --requests N            rows (default ${DEFAULT_HEAVY_PREFIX.requests})
  --seed S                the generator's seed (default ${DEFAULT_HEAVY_PREFIX.seed})
  --sessions-per-s R      session arrival rate, Poisson (default ${DEFAULT_HEAVY_PREFIX.sessionsPerS})
  --mean-turns T          mean turns per session (default ${DEFAULT_HEAVY_PREFIX.meanTurns})
  --max-turns M           most turns per session (default ${DEFAULT_HEAVY_PREFIX.maxTurns})
  -h, --help              this text

Example:
  node --import tsx bench/heavy-prefix-trace.ts --out out/heavy.jsonl.gz --requests 50000`;

function main(): void {
  const { values } = scriptArgs('heavy-prefix-trace', USAGE, () =>
    parseArgs({
      options: {
        out: { type: 'string' },
        requests: { type: 'string' },
        seed: { type: 'string' },
        'sessions-per-s': { type: 'string' },
        'mean-turns': { type: 'string' },
        'max-turns': { type: 'string' },
      },
      strict: true,
    }),
  );
  if (values.out === undefined)
    scriptUsageError('heavy-prefix-trace', USAGE, '--out FILE is required (.gz for a gzipped file)');
  const number = (text: string | undefined, flag: string, fallback: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!(n > 0 && Number.isFinite(n))) throw new Error(`${flag} must be a positive number, got '${text}'`);
    return n;
  };
  const options: HeavyPrefixOptions = {
    ...DEFAULT_HEAVY_PREFIX,
    requests: Math.floor(number(values.requests, '--requests', DEFAULT_HEAVY_PREFIX.requests)),
    seed: Math.floor(number(values.seed, '--seed', DEFAULT_HEAVY_PREFIX.seed)),
    sessionsPerS: number(values['sessions-per-s'], '--sessions-per-s', DEFAULT_HEAVY_PREFIX.sessionsPerS),
    meanTurns: number(values['mean-turns'], '--mean-turns', DEFAULT_HEAVY_PREFIX.meanTurns),
    maxTurns: Math.floor(number(values['max-turns'], '--max-turns', DEFAULT_HEAVY_PREFIX.maxTurns)),
  };
  const text = heavyPrefixJsonl(options);
  const out = resolve(values.out);
  writeFileSync(out, out.endsWith('.gz') ? gzipSync(text) : text);
  const rows = text.split('\n').length - 1;
  console.log(`${out}: ${rows} rows, ${(text.length / 1e6).toFixed(1)} MB of JSONL`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
