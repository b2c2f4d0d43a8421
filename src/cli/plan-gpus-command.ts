/**
 * `switchyard plan-gpus`: the cheapest mix of GPU types and TP degrees for a workload's lengths, a
 * request rate and latency objectives, at the prices of a price table (src/control/gpu-choice).
 */
import { fileURLToPath } from 'node:url';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { readYamlFile } from '../adapters/yaml-file.ts';
import { type GpuPlan, planGpuMix } from '../control/gpu-choice/choose.ts';
import { type GpuPrices, parseGpuPrices } from '../control/gpu-choice/prices.ts';
import type { LengthSample } from '../control/gpu-choice/workload.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { resolveGpuId } from '../model/gpus.ts';
import { writeTextFile } from '../twin/fidelity/write.ts';
import { servableTokens } from '../workload/common.ts';
import { readTraceLengths } from '../workload/traces/read.ts';
import { modelFlag, modelFlagHelp } from './catalogue-flags.ts';
import { checkOutputFile } from './output-file.ts';
import { decimalNumber, positiveInt, positiveNumber } from './parse.ts';
import { requireOptions } from './usage-error.ts';

/** The shipped price table (AWS us-east-1 on-demand), resolved from this module so any cwd works. */
export const DEFAULT_PRICES_FILE = fileURLToPath(
  new URL('../../data/prices/gpu-prices.yaml', import.meta.url),
);

interface PlanGpusFlags {
  model: string;
  rate: number;
  sloTtftMs?: number;
  sloTpotMs?: number;
  inputTokens?: number;
  outputTokens?: number;
  trace?: string;
  prices: string;
  gpus?: string;
  tp?: string;
  engine?: string;
  json?: string | true;
}

function listOf(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return items.length > 0 ? items : undefined;
}

/**
 * --gpus: catalogue GPUs only (ids, or names resolveGpuId reads as one), as ids; an unknown one
 * would otherwise read as a GPU without a price. Throws SY_ERR_UNKNOWN_NAME saying why and listing the ids.
 */
function gpuList(value: string | undefined): string[] | undefined {
  return listOf(value)?.map((name) => {
    try {
      return resolveGpuId(name);
    } catch (error) {
      // The resolver's message names the GPU; a usage error must also name the flag.
      if (!(error instanceof SwitchyardError)) throw error;
      throw new SwitchyardError(error.code, `invalid gpus: ${error.message}`, { param: 'gpus', value: name });
    }
  });
}

function tpDegrees(value: string | undefined): number[] | undefined {
  return listOf(value)?.map((s) => {
    const tp = decimalNumber(s);
    if (!Number.isInteger(tp) || tp < 1 || tp > 8)
      throw invalidArgument('tp', s, 'a list of integers in 1..8');
    return tp;
  });
}

/** Request lengths from --trace, or the one length of --input-tokens and --output-tokens. */
function lengthsOf(flags: PlanGpusFlags): readonly LengthSample[] {
  const single = flags.inputTokens !== undefined || flags.outputTokens !== undefined;
  if (flags.trace !== undefined && single) {
    throw invalidArgument('trace', flags.trace, 'either --trace or --input-tokens/--output-tokens, not both');
  }
  // A trace's recorded output lengths are history (what completed requests generated), the same
  // figure a live host measures after the fact: never a pending request's future.
  if (flags.trace !== undefined) {
    // A row with 0 prompt or 0 output tokens (BurstGPT's failed requests) is served as 1 token,
    // as trace replay serves it (servableTokens): no engine takes an empty prompt or max_tokens 0.
    return readTraceLengths(flags.trace).map((p) => ({
      inputTokens: servableTokens(p.inputTokens),
      generatedTokens: servableTokens(p.outputTokens),
    }));
  }
  if (flags.inputTokens === undefined || flags.outputTokens === undefined) {
    throw invalidArgument(
      flags.inputTokens === undefined ? 'input-tokens' : 'output-tokens',
      'missing',
      '--trace FILE, or both --input-tokens N and --output-tokens N',
    );
  }
  return [{ inputTokens: flags.inputTokens, generatedTokens: flags.outputTokens }];
}

function usd(x: number): string {
  return `$${x.toFixed(2)}`;
}

/**
 * Rows of cells as lines, each column as wide as its widest cell (a plan for a billion req/s has
 * eight-digit counts and nine-digit dollars), right-aligned where `right` says, two spaces apart.
 */
export function alignColumns(rows: readonly (readonly string[])[], right: readonly boolean[]): string[] {
  const widths = right.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) =>
    `  ${r
      .map((cell, c) =>
        c === r.length - 1 ? cell : right[c] ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0),
      )
      .join('  ')}`.trimEnd(),
  );
}

/** The plan as text: the mix, then where each bucket's requests go. */
export function formatPlan(plan: GpuPlan, prices: GpuPrices): string {
  const lines = [
    `${plan.model} at ${plan.rateRps} req/s: ${usd(plan.usdPerHour)}/hour on ${plan.gpuCount} GPU${plan.gpuCount === 1 ? '' : 's'}`,
    '',
    ...alignColumns(
      [
        ['instances', 'gpu', 'tp', '$/hour', 'utilization'],
        ...plan.variants.map((v) => [
          String(v.instances),
          v.variant.gpu,
          String(v.variant.tp),
          usd(v.usdPerHour),
          `${(v.utilization * 100).toFixed(0)}%`,
        ]),
      ],
      [true, false, true, true, true],
    ),
    '',
    ...alignColumns(
      [
        ['bucket (tokens)', 'share', 'req/s', 'served by'],
        ...plan.buckets.map((b) => [
          b.bucket,
          `${(b.share * 100).toFixed(1)}%`,
          b.rateRps.toFixed(2),
          b.slices.map((x) => `${x.gpu}/tp${x.tp} ${(x.fraction * 100).toFixed(0)}%`).join(', '),
        ]),
      ],
      [false, true, true, false],
    ),
  ];
  const unpriced = [
    ...new Set(plan.skipped.filter((s) => s.reason.startsWith('no price')).map((s) => s.gpu)),
  ];
  lines.push('', `prices: ${prices.source.name}, ${prices.source.region}, read ${prices.source.retrieved}`);
  lines.push(`        ${prices.source.url}`);
  if (unpriced.length > 0) lines.push(`not considered (no price): ${unpriced.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

/**
 * The highest rate plan-gpus plans for: a billion requests a second is past any cluster (tens of
 * millions of GPUs). At --rate 1e300 the plan printed "6.6296114778975765e+299 GPUs", counts past
 * 2^53 that are no longer whole numbers.
 */
export const PLAN_RATE_MAX_RPS = 1e9;

/** Parses --rate: a positive number of requests a second, at most PLAN_RATE_MAX_RPS. */
function planRate(value: string): number {
  const rate = positiveNumber(value);
  if (rate > PLAN_RATE_MAX_RPS)
    throw new InvalidArgumentError(
      `'${value}' is past ${PLAN_RATE_MAX_RPS.toExponential()} req/s, more than any cluster serves.`,
    );
  return rate;
}

/** Registers `switchyard plan-gpus`. */
export function registerPlanGpusCommand(program: Command): void {
  program
    .command('plan-gpus')
    .summary('Choose the cheapest mix of GPU types and TP degrees that serves a workload within its SLO')
    .description(
      'Choose the cheapest mix of GPU types and tensor-parallel degrees that serves a request rate of a ' +
        "workload's lengths within TTFT and TPOT objectives, after Mélange (Griggs et al., 2024). Each " +
        "(GPU, TP) pair the model fits on is profiled on the twin's performance model per request-size " +
        'bucket, then a small integer program picks instance counts and splits each bucket between them at ' +
        'the least cost per hour. Method and simplifications: src/control/gpu-choice/README.md.',
    )
    .option('--model <id>', modelFlagHelp('model from the catalogue (required)'), modelFlag)
    .option(
      '--rate <rps>',
      `total request rate to serve, requests per second, at most ${PLAN_RATE_MAX_RPS.toExponential()} (required)`,
      planRate,
    )
    .option('--slo-ttft-ms <ms>', 'time-to-first-token objective (omit: unconstrained)', positiveNumber)
    .option('--slo-tpot-ms <ms>', 'time-per-output-token objective (omit: unconstrained)', positiveNumber)
    .option('--input-tokens <n>', 'prompt length of every request (with --output-tokens)', positiveInt)
    .option('--output-tokens <n>', 'output length of every request (with --input-tokens)', positiveInt)
    .option('--trace <file>', 'take the length distribution from a trace (a path or sample:azure-conv)')
    .addOption(
      new Option('--prices <file>', 'price table (YAML or JSON, data/prices/gpu-prices.yaml format)').default(
        DEFAULT_PRICES_FILE,
        'data/prices/gpu-prices.yaml, AWS us-east-1 on-demand',
      ),
    )
    .option('--gpus <list>', 'GPUs that may be used, comma-separated (default: every priced GPU)')
    .option('--tp <list>', 'TP degrees that may be used, comma-separated (default 1,2,4,8)')
    .option('--engine <profile>', 'engine profile of the performance model (default vllm)')
    .option('--json [file]', 'write the plan as JSON to the file, or to stdout instead of the table')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard plan-gpus --model llama-3.1-8b --rate 20 --input-tokens 1000 --output-tokens 200 \\\n' +
        '      --slo-ttft-ms 1000 --slo-tpot-ms 50\n' +
        '  switchyard plan-gpus --model llama-3.1-8b --rate 50 --trace sample:azure-conv --slo-ttft-ms 2000 --slo-tpot-ms 60\n' +
        '  switchyard plan-gpus --model llama-3.1-70b --rate 10 --trace sample:azure-conv --slo-tpot-ms 80 \\\n' +
        '      --gpus h100,h200,a100-80gb --prices my-prices.yaml --json out/plan.json',
    )
    // Not requiredOption: a typo of a required flag must read as the typo (requireOptions).
    .hook('preAction', (command) => requireOptions(command, ['model', 'rate']))
    .action((flags: PlanGpusFlags) => {
      if (typeof flags.json === 'string') checkOutputFile('json', flags.json);
      const samples = lengthsOf(flags);
      const prices = parseGpuPrices(
        readYamlFile(flags.prices, `price table '${flags.prices}'`, { param: 'prices' }),
        `price table '${flags.prices}'`,
      );
      const gpus = gpuList(flags.gpus);
      const tps = tpDegrees(flags.tp);
      const plan = planGpuMix({
        model: flags.model,
        samples,
        rateRps: flags.rate,
        objectives: {
          ...(flags.sloTtftMs === undefined ? {} : { ttftMs: flags.sloTtftMs }),
          ...(flags.sloTpotMs === undefined ? {} : { tpotMs: flags.sloTpotMs }),
        },
        prices: prices.table,
        ...(gpus === undefined ? {} : { gpus }),
        ...(tps === undefined ? {} : { tpDegrees: tps }),
        ...(flags.engine === undefined ? {} : { profile: { engine: flags.engine } }),
      });
      const json = `${JSON.stringify({ ...plan, prices: prices.source }, null, 2)}\n`;
      if (flags.json === true) {
        process.stdout.write(json);
        return;
      }
      process.stdout.write(formatPlan(plan, prices));
      if (flags.json !== undefined) {
        writeTextFile(flags.json, json);
        process.stdout.write(`wrote ${flags.json}\n`);
      }
    });
}
