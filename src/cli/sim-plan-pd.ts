/**
 * `switchyard sim ... --plan-pd --gpus G`: plans the prefill/decode split (src/control/pd-planner)
 * for the run's model, GPU, lengths, rate and SLOs, prints it beside the colocated baseline and
 * exits without simulating.
 */
import { writeFileSync } from 'node:fs';
import { Option } from 'commander';
import { type PdLength, type PdPlan, planPd } from '../control/pd-planner/plan.ts';
import { invalidArgument } from '../core/errors.ts';
import { type KvLink, kvLink } from '../model/kv-link.ts';
import { modelSpec } from '../model/models.ts';
import { validateTp } from '../model/perf.ts';
import type { PdConditionalRule } from '../policies/disagg/conditional.ts';
import { GOODPUT_DEFAULTS } from '../twin/goodput.ts';
import { servableTokens } from '../workload/common.ts';
import {
  DEFAULT_DECLARED_MAX_TOKENS,
  declaredMaxTokens,
  generatedTokens,
  parseDeclaredMaxTokens,
} from '../workload/declared.ts';
import { readTraceLengths } from '../workload/traces/read.ts';

/** The flags the plan reads, as commander hands them over. */
export interface PlanPdFlags {
  planPd?: boolean;
  config?: string;
  pdLayerwise?: boolean;
  gpus?: number | undefined;
  gpu: string;
  model: string;
  rate?: number;
  trace?: string;
  inputTokens?: number;
  outputTokens?: number;
  /** `--declared-max-tokens`: the run cuts each output at it, so the plan does too (default cap:4096). */
  declaredMaxTokens?: string | undefined;
  sloTtftMs: number;
  sloTpotMs: number;
  goodputTarget?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  blockSize?: number;
  gpuMemoryUtilization?: number;
  json?: string;
  /** The KV link of a disaggregated run, when `sim` has the flag. */
  link?: string;
  /** `--tp`: given on the command line, the plan uses this TP degree on both sides only. */
  tp?: number;
  /** A disaggregated run's flags: refused here, since the plan simulates nothing. */
  prefillInstances?: number | undefined;
  decodeInstances?: number | undefined;
  pdPolicy?: string | undefined;
  pdParams?: string | undefined;
  pdConditional?: PdConditionalRule | undefined;
  kvReleaseTimeoutMs?: number | undefined;
}

/**
 * The flags that run a disaggregated simulation, each refused with `--plan-pd`: the plan simulates
 * nothing, so they would be ignored, and a name that is not a policy would pass unnoticed.
 */
const SIMULATION_ONLY_FLAGS = [
  ['prefillInstances', 'prefill-instances'],
  ['decodeInstances', 'decode-instances'],
  ['pdPolicy', 'pd-policy'],
  ['pdParams', 'pd-params'],
  ['pdConditional', 'pd-conditional'],
  ['kvReleaseTimeoutMs', 'kv-release-timeout-ms'],
] as const;

/**
 * The `sim` options `--plan-pd` reads (attribute names), or that change nothing it could read: any
 * other option given on the command line is refused, since the plan would drop it without a word
 * (`--workload constant`, `--stages`, `--requests` on a trace, `--kv-store`... would read as planned
 * for). `seed` and `progress` are harmless (the plan draws nothing and draws no bar);
 * `prefixCaching` (`--no-prefix-caching`) asks for what the plan already assumes, every prompt
 * priced whole; `workload` is checked on its own (poisson, the arrivals the plan's queues assume,
 * is read).
 */
const PLAN_PD_READS: ReadonlySet<string> = new Set([
  'planPd',
  'gpus',
  'gpu',
  'model',
  'tp',
  'rate',
  'trace',
  'inputTokens',
  'outputTokens',
  'declaredMaxTokens',
  'sloTtftMs',
  'sloTpotMs',
  'goodputTarget',
  'maxNumSeqs',
  'maxNumBatchedTokens',
  'blockSize',
  'gpuMemoryUtilization',
  'link',
  'pdLayerwise',
  'json',
  'seed',
  'progress',
  'prefixCaching',
  'workload',
  'config',
  ...SIMULATION_ONLY_FLAGS.map(([key]) => key),
]);

/** One option of `sim`, as commander describes it: its attribute name and its long flag. */
export interface SimOptionName {
  readonly name: string;
  readonly flag: string;
}

/**
 * Refuses, naming the flag, every option given on the command line that `--plan-pd` does not read
 * (PLAN_PD_READS), and `--workload` other than poisson: the plan's prefill queues are M/G/1, Poisson
 * arrivals at --rate, so a constant or bursty workload would be planned as Poisson without a word.
 */
export function refuseFlagsPlanIgnores(
  options: readonly SimOptionName[],
  fromCli: (name: string) => boolean,
  flags: object,
): void {
  const values = flags as Record<string, unknown>;
  for (const { name, flag } of options) {
    if (!fromCli(name) || PLAN_PD_READS.has(name)) continue;
    throw invalidArgument(
      flag.replace(/^--/, ''),
      String(values[name]),
      `no ${flag} with --plan-pd, which does not read it: the plan reads --model, --gpu, --tp, --gpus, ` +
        'the lengths (--input-tokens/--output-tokens or --trace, --declared-max-tokens), --rate, the SLOs ' +
        '(--slo-ttft-ms, --slo-tpot-ms, --goodput-target), --link, --pd-layerwise and the engine limits ' +
        '(--max-num-seqs, --max-num-batched-tokens, --block-size, --gpu-memory-utilization); ' +
        'run the planned split with --prefill-instances and --decode-instances to simulate the rest',
    );
  }
  const workload = values.workload;
  if (fromCli('workload') && typeof workload === 'string' && workload !== 'poisson')
    throw invalidArgument(
      'workload',
      workload,
      'poisson or no --workload with --plan-pd: the plan assumes Poisson arrivals at --rate ' +
        '(M/G/1 prefill queues); simulate the planned split with --prefill-instances and --decode-instances ' +
        `under --workload ${workload}`,
    );
}

/** The options to register on `sim`. */
export function planPdOptions(): Option[] {
  return [
    new Option(
      '--plan-pd',
      'print the planned prefill/decode split on --gpus G GPUs of --gpu (counts and TP degrees, predicted goodput per GPU, ' +
        'the colocated cluster beside it) for the lengths (--input-tokens/--output-tokens or --trace; outputs cut at --declared-max-tokens as the run cuts them), --rate and SLOs ' +
        '(--slo-ttft-ms, --slo-tpot-ms, --goodput-target), and exit without simulating; with --rate, the fewest GPUs ' +
        'that sustain it, without, the most goodput from all G; TP degrees 1, 2, 4, 8 on each side, or only --tp N ' +
        'when given (the TP a disaggregated run can use); --json FILE writes the plan; a flag it does not read ' +
        '(--workload other than poisson, --stages, --requests, --policy...) is refused',
    ),
    new Option(
      '--pd-layerwise',
      'with --plan-pd or a disaggregated run (--prefill-instances, --decode-instances): the engine sends KV layer by layer ' +
        'as the prefill runs (Mooncake), so only the last layer, or the backlog of a link slower than the prefill, adds to TTFT; ' +
        "a run's hand-off that waits for decode blocks moves its whole KV after the wait; " +
        "default: the whole transfer after the prefill (vLLM's NIXL connector)",
    ),
  ];
}

/**
 * The lengths planned for: each request's prompt, and the output the run's engine generates, the
 * true length cut at the declared max_tokens (cap:4096 unless --declared-max-tokens says otherwise),
 * as trace replay and generated workloads serve them (workload/common.ts buildRequest). Planning
 * the uncut length would size decode for tokens no request of the run produces.
 */
function lengthsOf(flags: PlanPdFlags): PdLength[] {
  const declared = parseDeclaredMaxTokens(flags.declaredMaxTokens ?? DEFAULT_DECLARED_MAX_TOKENS);
  const generated = (trueTokens: number): number => {
    const out = servableTokens(trueTokens);
    return generatedTokens(declaredMaxTokens(declared, out), out);
  };
  if (flags.trace !== undefined) {
    if (flags.inputTokens !== undefined || flags.outputTokens !== undefined)
      throw invalidArgument(
        'trace',
        flags.trace,
        'either --trace or --input-tokens/--output-tokens, not both',
      );
    return readTraceLengths(flags.trace).map((p) => ({
      inputTokens: servableTokens(p.inputTokens),
      generatedTokens: generated(p.outputTokens),
    }));
  }
  return [{ inputTokens: flags.inputTokens ?? 1024, generatedTokens: generated(flags.outputTokens ?? 128) }];
}

/**
 * Plans the split from the flags; throws SY_ERR_INVALID_ARGUMENT naming the flag for bad input.
 * `fromCli` says which flags the command line gave: `--tp` given fixes the TP degree searched.
 */
export function planPdFromFlags(
  flags: PlanPdFlags,
  fromCli: (name: string) => boolean = () => false,
  options: readonly SimOptionName[] = [],
): PdPlan {
  if (flags.gpus === undefined) throw invalidArgument('gpus', 'missing', '--gpus G with --plan-pd');
  // The plan reads flags only; a config file's cluster or SLOs would be silently ignored.
  if (flags.config !== undefined)
    throw invalidArgument('plan-pd', flags.config, 'flags only, not with --config');
  for (const [key, flag] of SIMULATION_ONLY_FLAGS) {
    const value = flags[key];
    if (value !== undefined)
      throw invalidArgument(
        flag,
        value,
        `no --${flag} with --plan-pd, which plans the split and simulates nothing; ` +
          'run the planned split with --prefill-instances and --decode-instances, without --plan-pd',
      );
  }
  refuseFlagsPlanIgnores(options, fromCli, flags);
  const link: KvLink | undefined = flags.link !== undefined ? kvLink(flags.link) : undefined;
  // A TP degree the engines cannot run is refused as a run refuses it (not a capacity error saying
  // no split serves the SLOs, which sends the user to loosen them).
  if (fromCli('tp') && flags.tp !== undefined) validateTp(modelSpec(flags.model), flags.tp);
  // The twin runs one TP on every instance: a plan asked for at --tp N must be one it can run.
  const tpDegrees = fromCli('tp') && flags.tp !== undefined ? [flags.tp] : undefined;
  return planPd({
    model: flags.model,
    gpu: flags.gpu,
    gpus: flags.gpus,
    rateRps: flags.rate ?? Number.POSITIVE_INFINITY,
    lengths: lengthsOf(flags),
    objectives: {
      ttftMs: flags.sloTtftMs,
      tpotMs: flags.sloTpotMs,
      attainment: flags.goodputTarget ?? GOODPUT_DEFAULTS.targetAttainment,
    },
    ...(link !== undefined ? { link } : {}),
    layerwise: flags.pdLayerwise === true,
    ...(tpDegrees !== undefined ? { tpDegrees } : {}),
    engine: {
      ...(flags.maxNumSeqs !== undefined ? { maxNumSeqs: flags.maxNumSeqs } : {}),
      ...(flags.maxNumBatchedTokens !== undefined ? { maxNumBatchedTokens: flags.maxNumBatchedTokens } : {}),
      ...(flags.blockSize !== undefined ? { blockSize: flags.blockSize } : {}),
      ...(flags.gpuMemoryUtilization !== undefined
        ? { gpuMemoryUtilization: flags.gpuMemoryUtilization }
        : {}),
    },
  });
}

function row(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => c.padEnd(widths[i] ?? 0))
    .join('  ')
    .trimEnd();
}

/** The plan as a table: the split, the colocated baseline, and the per-GPU ratio. */
export function formatPdPlan(plan: PdPlan): string {
  const o = plan.objectives;
  const s = plan.split;
  const c = plan.colocated;
  const rate = Number.isFinite(plan.rateRps) ? `${plan.rateRps} req/s` : 'as much as the GPUs serve';
  const widths = [14, 10, 10, 5, 14, 14, 10];
  const lines = [
    `P/D plan: ${plan.model} on up to ${plan.gpusMax} x ${plan.gpu}, rate ${rate}; ` +
      `TTFT ≤ ${o.ttftMs} ms, TPOT ≤ ${o.tpotMs} ms for ${(o.attainment * 100).toFixed(0)}% of requests`,
    `KV link ${plan.link} (${plan.layerwise ? 'layer by layer' : 'whole transfer after the prefill'}): ` +
      `+${s.transferTtftAddedMs.toFixed(2)} ms TTFT on average`,
    row(['', 'prefill', 'decode', 'GPUs', 'goodput req/s', 'per GPU req/s', 'limited by'], widths),
    row(
      [
        'disaggregated',
        `${s.prefill.instances} x tp${s.prefill.tp}`,
        `${s.decode.instances} x tp${s.decode.tp}`,
        String(s.gpus),
        s.goodputRps.toFixed(2),
        s.goodputPerGpuRps.toFixed(2),
        s.limitedBy,
      ],
      widths,
    ),
    c === undefined
      ? 'colocated: no cluster on these GPUs meets the SLOs'
      : row(
          [
            'colocated',
            `${c.instances} x tp${c.tp}`,
            '(both)',
            String(c.gpus),
            c.goodputRps.toFixed(2),
            c.goodputPerGpuRps.toFixed(2),
          ],
          widths,
        ),
  ];
  if (plan.pastContextRequests > 0) {
    const n = plan.pastContextRequests;
    lines.push(
      `left out ${n} ${n === 1 ? 'request' : 'requests'} past ${plan.model}'s ` +
        `${modelSpec(plan.model).contextTokensMax}-token context (prompt plus output): the run refuses ${n === 1 ? 'it' : 'them'}`,
    );
  }
  if (plan.perGpuGainVsColocated !== undefined)
    lines.push(`goodput per GPU vs colocated: ${plan.perGpuGainVsColocated.toFixed(2)}x`);
  if (Number.isFinite(plan.rateRps) && !s.meetsRate)
    lines.push(
      `the rate is not met: ${plan.gpusMax} GPUs sustain at most ${s.arrivalRpsMax.toFixed(2)} req/s`,
    );
  return `${lines.join('\n')}\n`;
}

/** Runs `--plan-pd`: prints the table, writes --json, simulates nothing. */
export function runPlanPd(
  flags: PlanPdFlags,
  fromCli: (name: string) => boolean = () => false,
  options: readonly SimOptionName[] = [],
): void {
  const plan = planPdFromFlags(flags, fromCli, options);
  process.stdout.write(formatPdPlan(plan));
  if (flags.json !== undefined) {
    // JSON has no Infinity: an unbounded rate is written as null.
    const json = { ...plan, rateRps: Number.isFinite(plan.rateRps) ? plan.rateRps : null };
    writeFileSync(flags.json, `${JSON.stringify(json, null, 2)}\n`);
    process.stdout.write(`wrote ${flags.json}\n`);
  }
}
