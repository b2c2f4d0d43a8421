import { type Command, Option } from 'commander';
import { readYamlFile } from '../adapters/yaml-file.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { KV_LINK_NAMES, type KvLinkName } from '../model/kv-link.ts';
import { resolveModelId } from '../model/models.ts';
import { createConfiguredPolicy, routingPolicyNames } from '../policies/routing/registry.ts';
import { fixedBatchJob } from '../twin/batch-jobs.ts';
import { parseWithSchema, SIM_DEFAULTS, type SimConfigFile, simConfigFileSchema } from '../twin/config.ts';
import { type Fault, parseFault, RELIABILITY_DEFAULTS, toFault } from '../twin/faults.ts';
import { GOODPUT_DEFAULTS, type GoodputResult } from '../twin/goodput.ts';
import { gpuBudget, poolFigures, sharedGpus } from '../twin/report/pool.ts';
import { formatComparisonTable, formatSummaryTable } from '../twin/report/table.ts';
import type { SimSummary } from '../twin/report/types.ts';
import {
  assertWorkloadSends,
  type PolicyRun,
  runExperiment,
  runTwin,
  type TwinSettings,
  writeOutputs,
} from '../twin/run.ts';
import type { SimResult } from '../twin/simulator.ts';
import { DEFAULT_DECLARED_MAX_TOKENS, parseDeclaredMaxTokens } from '../workload/declared.ts';
import { MULTI_MODEL_MAX, type RateStage } from '../workload/spec.ts';
import { parseStages } from '../workload/synthetic.ts';
import { gpuFlag, gpuFlagHelp, modelFlag, modelFlagHelp } from './catalogue-flags.ts';
import { DecisionLogWriter } from './decision-log.ts';
import { checkOutputFiles } from './output-file.ts';
import {
  filePath,
  fraction,
  INSTANCES_MAX,
  intInRange,
  nonNegativeInt,
  nonNegativeNumber,
  positiveInt,
  positiveNumber,
  seedInt,
  simDurationSeconds,
  simRequestCount,
  TP_MAX,
} from './parse.ts';
import { warnLine, withProgress, withSteps } from './progress.ts';
import {
  type AutoscalerFlags,
  autoscalerOptions,
  controlFromFlags,
  formatControlLine,
  formatPoolLine,
  placementFromConfig,
  poolSource,
} from './sim-autoscaler.ts';
import { compareAutoscalers, splitNames } from './sim-autoscaler-compare.ts';
import { comparisonHeader, wroteLines } from './sim-header.ts';
import { formatPdLine, type PdFlags, pdFromFlags, pdOptions } from './sim-pd.ts';
import {
  formatPdPoolsLines,
  type PdAutoscaleFlags,
  pdAutoscaleOptions,
  pdPoolsFromFlags,
  pdPoolsLabel,
} from './sim-pd-autoscale.ts';
import { type PlanPdFlags, planPdOptions, runPlanPd } from './sim-plan-pd.ts';
import { type ServerlessFlags, serverlessFromFlags, serverlessOptions } from './sim-serverless.ts';
import {
  TIME_VARYING_WORKLOADS,
  type TimeVaryingFlags,
  timeVaryingOptions,
  timeVaryingWorkload,
} from './sim-time-varying.ts';

/** The flags of `switchyard sim`, as commander hands them over. */
interface SimFlags
  extends TimeVaryingFlags,
    AutoscalerFlags,
    ServerlessFlags,
    PlanPdFlags,
    PdFlags,
    PdAutoscaleFlags {
  config?: string;
  trace?: string;
  workload?: 'poisson' | 'gamma' | 'constant' | 'multi-model' | (typeof TIME_VARYING_WORKLOADS)[number];
  models?: number;
  zipf?: number;
  stages?: RateStage[];
  rate?: number;
  cv?: number;
  requests?: number;
  duration?: number;
  inputTokens?: number;
  outputTokens?: number;
  instances: number;
  gpu: string;
  model: string;
  tp: number;
  policy: string;
  compare?: string;
  goodput?: boolean;
  seed: number;
  sloTtftMs: number;
  sloTpotMs: number;
  rateScale?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  blockSize?: number;
  gpuMemoryUtilization?: number;
  prefixCaching: boolean;
  schedulingPolicy?: 'fcfs' | 'priority';
  disableCascadeAttn?: boolean;
  kvStore?: KvLinkName;
  json?: string;
  html?: string;
  decisionLog?: string;
  progress: boolean;
  admission?: boolean;
  scrapeIntervalMs?: number;
  batchRequests?: number;
  batchWindowS: number;
  batchInputTokens: number;
  batchOutputTokens: number;
  declaredMaxTokens?: string;
  earlyReject?: boolean;
  goodputTarget?: number;
  fault?: Fault[];
  retries?: number;
}

/** Registers `switchyard sim`. */
export function registerSimCommand(program: Command): void {
  const sim = program
    .command('sim')
    .description(
      'Run the twin: replay a trace or a generated workload on a modelled cluster and report latencies,\n' +
        'SLO attainment, throughput and prefix-cache hits. Deterministic: the same seed and input give the same output.',
    )
    .option(
      '--config <file>',
      `YAML file with any of: ${Object.keys(simConfigFileSchema.shape).join(', ')} (a flag given overrides it; examples/sim.yaml)`,
    )
    .addOption(
      new Option(
        '--trace <path>',
        'replay a trace: a file (Azure LLM 2023 or 2024 CSV, Mooncake JSONL(.gz) with timestamp in ms, Vidur CSV with arrived_at in s) or sample:azure-conv, sample:mooncake-conversation',
      )
        .argParser(filePath)
        .conflicts('workload'),
    )
    .addOption(
      new Option(
        '--workload <kind>',
        'generate arrivals instead of a trace: poisson, gamma (see --cv) or constant (evenly paced, as load testers send); ' +
          'or a time-varying rate: sinusoid, rate-curve, bursts or servegen (see their options below); ' +
          'or multi-model: --models fine-tunes m00.. with Zipf popularity (--zipf), each on/off with idle gaps (default run: 3600 s)',
      ).choices(['poisson', 'gamma', 'constant', 'multi-model', ...TIME_VARYING_WORKLOADS]),
    )
    .option(
      '--models <n>',
      `multi-model: number of served models, 1 to ${MULTI_MODEL_MAX} (required with it)`,
      intInRange(1, MULTI_MODEL_MAX),
    )
    .option(
      '--zipf <s>',
      "multi-model: Zipf exponent of the models' popularity, model k's share ∝ 1/(k+1)^s (default 1; 0: all equal)",
      nonNegativeNumber,
    )
    .option('--rate <req/s>', 'arrival rate of the generated workload (default 10)', positiveNumber)
    .addOption(
      new Option(
        '--stages <list>',
        'rate stages in one run instead of --rate: comma-separated rate:seconds, e.g. 8:600,20:600 (rate 0: an idle stretch, not last); the run ends with the last stage',
      )
        .argParser((value: string) => parseStages(value))
        .conflicts(['rate', 'trace']),
    )
    .option(
      '--cv <x>',
      'coefficient of variation of inter-arrival times, implies --workload gamma (default 1: Poisson, as in bench; > 1 burstier)',
      positiveNumber,
    )
    .option(
      '--requests <n>',
      'stop after n requests (default: the whole trace, or 1000 generated; at most 50,000,000, ' +
        'and --rate x --duration may come to no more without it)',
      simRequestCount,
    )
    .option(
      '--duration <s>',
      'stop arrivals after s seconds of simulated time (a trace at --rate-scale k: its first s x k seconds) ' +
        '(default: where the workload ends: a trace, rate curve, ServeGen ' +
        'file or --stages at its end, a sinusoid after one period, bursts after one gap and burst, multi-model after ' +
        '3600 s, poisson, gamma and constant after --requests; at most 31 days)',
      simDurationSeconds,
    )
    .option('--input-tokens <n>', 'prompt length of generated requests (default 1024)', positiveInt)
    .option('--output-tokens <n>', 'output length of generated requests (default 128)', positiveInt)
    .option(
      '--rate-scale <k>',
      "multiply the trace arrival rate by k (k > 1 compresses time; default 1); a file in other units than its format's: 0.001 for a Mooncake file in seconds, 1000 for a Vidur file in ms",
      positiveNumber,
    )
    .option(
      '--instances <n>',
      `number of engine instances, 1 to ${INSTANCES_MAX} (with --autoscaler and no --max-instances: the pool)`,
      intInRange(1, INSTANCES_MAX),
      SIM_DEFAULTS.instances,
    )
    .option('--gpu <id>', gpuFlagHelp('GPU of every instance'), gpuFlag, SIM_DEFAULTS.gpu)
    .option('--model <id>', modelFlagHelp('model every instance serves'), modelFlag, SIM_DEFAULTS.model)
    .option(
      '--tp <n>',
      `tensor-parallel degree per instance, 1 to ${TP_MAX}`,
      intInRange(1, TP_MAX),
      SIM_DEFAULTS.tp,
    )
    .option(
      '--policy <name>',
      `routing policy: a type (${routingPolicyNames().join(', ')}) or a name from the config's policies`,
      SIM_DEFAULTS.policy,
    )
    .addOption(
      new Option(
        '--compare <list>',
        'run several policies (comma-separated) on the same workload and seed',
      ).conflicts('policy'),
    )
    .option(
      '--goodput',
      'sweep the arrival rate for goodput: the highest rate with >= target (--goodput-target) meeting both SLOs',
    )
    .option(
      '--goodput-target <f>',
      `goodput's attainment target, a fraction in (0, 1] (default ${GOODPUT_DEFAULTS.targetAttainment})`,
      goodputTarget,
    )
    .option(
      '--declared-max-tokens <d>',
      `what each request declares as max_tokens: exact, cap:N, factor:K or none (default ${DEFAULT_DECLARED_MAX_TOKENS}); ` +
        'policies see only this, the engine generates the true length',
    )
    .option(
      '--early-reject',
      'put the shared early-rejection step (refuse what no instance can serve within its SLO) in front of every policy; ' +
        "goodput's and mooncake's own rejection is then off unless configured",
    )
    .option(
      '--seed <s>',
      'seed of every random choice in the run (0 to 4294967295)',
      seedInt,
      SIM_DEFAULTS.seed,
    )
    .option('--slo-ttft-ms <x>', 'time-to-first-token target', positiveNumber, SIM_DEFAULTS.sloTtftMs)
    .option('--slo-tpot-ms <y>', 'time-per-output-token target', positiveNumber, SIM_DEFAULTS.sloTpotMs)
    .option(
      '--max-num-seqs <n>',
      "engine: cap on running sequences (default: vllm serve's per GPU, 1024 on H100/H200, else 256)",
      positiveInt,
    )
    .option(
      '--max-num-batched-tokens <n>',
      "engine: token budget per step (default: vllm serve's per GPU, 8192 on H100/H200, else 2048)",
      positiveInt,
    )
    .option('--block-size <n>', 'engine: tokens per KV block (default 16)', positiveInt)
    .option(
      '--gpu-memory-utilization <f>',
      'engine: fraction of GPU memory for weights and KV (default 0.9)',
      fraction,
    )
    .option('--no-prefix-caching', 'engine: disable automatic prefix caching')
    .addOption(
      new Option(
        '--scheduling-policy <policy>',
        'engine: fcfs, or priority (higher-priority requests first, preempting lower ones; default fcfs)',
      ).choices(['fcfs', 'priority']),
    )
    .option(
      '--disable-cascade-attn',
      'engine: turn off cascade attention (on by default, as in vLLM): every sequence of a step reads the KV prefix ' +
        'they all share itself, instead of one kernel reading it once a step',
    )
    .addOption(
      new Option(
        '--kv-store <link>',
        'engine: a peer KV store (Mooncake store, LMCache P2P): an engine loads the longest prefix another instance ' +
          'caches over this link instead of computing it (engine.kvStore; default none)',
      ).choices([...KV_LINK_NAMES]),
    )
    .option(
      '--admission',
      'put the admission queue (priority bands, VTC fairness, shedding) in front of routing',
    )
    .option(
      '--scrape-interval-ms <ms>',
      'policies see engine signals as scraped this often, like a live gateway (default 75, the live default; 0: exact signals, an oracle)',
      nonNegativeNumber,
    )
    .option(
      '--fault <spec>',
      'inject a fault, kind:instance@start+duration with kind crash, stall or slow-scrape (e.g. crash:i2@30s+20s); repeatable',
      (value: string, previous: Fault[] | undefined) => [...(previous ?? []), parseFault(value)],
    )
    .option(
      '--retries <n>',
      `under faults: further instances tried before the first token (default ${RELIABILITY_DEFAULTS.retries}, as the gateway)`,
      nonNegativeInt,
    )
    .option(
      '--batch-requests <n>',
      'add an offline batch job of n requests submitted at t=0 (implies --admission)',
      positiveInt,
    )
    .option('--batch-window-s <s>', 'completion window of the batch job', positiveNumber, 3600)
    .option('--batch-input-tokens <n>', 'prompt length of batch requests', positiveInt, 1024)
    .option('--batch-output-tokens <n>', 'output length of batch requests', positiveInt, 256)
    .option(
      '--decision-log <file>',
      'write every routing decision as JSON lines ({"request","atMs","instance"} or, refused, "reject" with its code); with a multi-model cluster, placement decisions too ({"atMs","placement"}; P/D pool scale lines add "pool")',
    )
    .option(
      '--json <file>',
      'write the summary as JSON (every figure of the table; with --autoscaler also gpuHours, billedUntilS, coldStarts and ' +
        'instancesOverTime; with --serverless-policy also ttftMs.cold/.warm; docs/autoscaling.md)',
    )
    .option('--html <file>', 'write a self-contained HTML report with plots')
    .option('--no-progress', 'do not draw a progress bar')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard sim --trace sample:mooncake-conversation --instances 8 --policy least-request\n' +
        '  switchyard sim --workload poisson --rate 40 --requests 5000 --input-tokens 2048 --output-tokens 256 --json out/run.json\n' +
        '  switchyard sim --workload constant --stages 8:600,20:600 --instances 1 --input-tokens 700 --output-tokens 250\n' +
        '  switchyard sim --workload sinusoid --rate-min 1 --rate-max 24 --period-s 600 --duration 1200 --instances 4\n' +
        '  switchyard sim --rate-curve day.csv --instances 4   (day.csv: time_s,rate lines, e.g. 0,2 then 3600,20)\n' +
        '  switchyard sim --workload servegen --servegen-file sample:servegen-m-small-day2 --scale 0.01 --start-h 18 --duration 3600\n' +
        '  switchyard sim --workload sinusoid --rate-min 1 --rate-max 24 --period-s 600 --duration 1200 --autoscaler kpa --min-instances 1 --max-instances 8 --json out/kpa.json\n' +
        '  switchyard sim --workload sinusoid --rate-min 1 --rate-max 24 --period-s 600 --duration 1200 --autoscaler kpa,slo-planner,static --max-instances 8 --html out/autoscalers.html\n' +
        '  switchyard sim --workload multi-model --models 64 --zipf 1 --rate 20 --duration 86400   (served ids m00..m63: a cluster from the flags serves none of them, so all are refused SY_ERR_NO_INSTANCE; the next line serves them)\n' +
        '  switchyard sim --workload multi-model --models 64 --zipf 1 --duration 3600 --gpus 8 --serverless-policy switchyard --json out/serverless.json\n' +
        '  switchyard sim --plan-pd --gpus 8 --input-tokens 4096 --output-tokens 256 --slo-ttft-ms 2000 --slo-tpot-ms 40\n' +
        '  switchyard sim --workload sinusoid --rate-min 1 --rate-max 16 --period-s 1200 --duration 2400 --input-tokens 4000 --output-tokens 500 --prefill-instances 2 --decode-instances 3 --autoscaler slo-planner   (each pool scaled by its own loop)\n' +
        '  switchyard sim --prefill-instances 2 --decode-instances 2 --pd-policy mooncake --pd-params \'{"decodeAt":"arrival"}\' --slo-tpot-ms 20   (a pair policy\'s parameters, as the gateway\'s pd.params)\n' +
        '  switchyard sim --config examples/sim.yaml --html out/report.html',
    )
    .action(async (flags: SimFlags, command: Command) => {
      const fromCli = (name: string): boolean => command.getOptionValueSource(name) === 'cli';
      // Before any work: a run whose report cannot be written is a run lost.
      checkOutputFiles({ json: flags.json, html: flags.html, 'decision-log': flags.decisionLog });
      // --plan-pd only plans (src/control/pd-planner): nothing below runs.
      if (flags.planPd === true)
        return runPlanPd(
          flags,
          fromCli,
          command.options.map((o) => ({ name: o.attributeName(), flag: o.long ?? o.flags })),
        );
      const file = flags.config !== undefined ? loadConfigFile(flags.config) : {};
      const settings = resolveSettings(flags, file, fromCli);
      // The config file's output paths, where no flag replaces them.
      checkOutputFiles({
        'output.json': flags.json === undefined ? file.output?.json : undefined,
        'output.html': flags.html === undefined ? file.output?.html : undefined,
      });
      const color = process.stdout.isTTY === true;
      const policies = flags.compare !== undefined ? splitList(flags.compare) : [settings.policy];
      if (policies.length === 0)
        throw invalidArgument(
          'compare',
          flags.compare,
          `one or more routing policies, comma-separated (${routingPolicyNames().join(', ')})`,
        );
      // Build every policy once up front, so a bad name fails before any simulation runs.
      for (const name of policies) createConfiguredPolicy(name, settings.policies);
      // An empty workload would report zeros that read as results (and sweep a goodput of 0).
      assertWorkloadSends(settings);
      const autoscalers = splitNames(settings.control?.autoscaler ?? '');
      // A policy comparison's table and JSON have no GPU-hours, cold starts or instances over time:
      // under an autoscaler they would be dropped without a word.
      if (autoscalers.length === 1 && policies.length > 1)
        throw invalidArgument(
          'compare',
          flags.compare,
          'one routing policy with --autoscaler (a policy comparison drops its GPU-hours and cold starts): run each policy alone',
        );
      // The same for the runs under other control loops (serverless, P/D pools, a multi-model
      // cluster): their comparison would lose gpuHours, coldStarts and the rest as silently.
      const controlledBy =
        settings.serverless !== undefined
          ? '--serverless-policy'
          : settings.pdPools !== undefined
            ? '--autoscaler'
            : settings.placement !== undefined
              ? 'a multi-model cluster'
              : undefined;
      if (controlledBy !== undefined && policies.length > 1)
        throw invalidArgument(
          'compare',
          flags.compare,
          `one routing policy with ${controlledBy} (a policy comparison drops its GPU-hours and cold starts): run each policy alone`,
        );
      if (autoscalers.length > 1) {
        const options = { goodput: flags.goodput === true, decisionLog: flags.decisionLog !== undefined };
        const one = { ...settings, policy: policies[0] ?? settings.policy };
        await compareAutoscalers(one, autoscalers, {
          ...options,
          policies: policies.length,
          progress: flags.progress,
          color,
        });
        return;
      }
      let runs: PolicyRun[];
      if (policies.length === 1 && flags.goodput !== true) {
        const log = flags.decisionLog !== undefined ? new DecisionLogWriter(flags.decisionLog) : undefined;
        try {
          const result = await withProgress(flags.progress, settings.expectedRequests, (onProgress) =>
            runTwin(settings, onProgress, log?.write, log?.writePlacement, warnLine),
          );
          runs = [{ result, goodput: undefined }];
        } finally {
          log?.close();
        }
      } else {
        runs = await withSteps(flags.progress, (step) =>
          runExperiment(settings, policies, {
            goodput: flags.goodput === true,
            onRun: step,
            onWarning: warnLine,
          }),
        );
      }
      if (runs.length === 1) {
        const run = runs[0] as PolicyRun;
        const pool = poolFigures(run.result, sharedGpus(settings), gpuBudget(settings));
        process.stdout.write(`${formatSummaryTable(summaryForTable(run.result), { color, pool })}\n`);
        const reliability = run.result.summary.reliability;
        if (reliability !== undefined)
          process.stdout.write(
            `faults ${reliability.faults}: ${reliability.failed} failed, ${reliability.retried} retried, ` +
              `${reliability.connectFailures} connection failures, ${reliability.ejections} ejections, ` +
              `${reliability.readmissions} re-admissions\n`,
          );
        if (run.goodput !== undefined) process.stdout.write(`${formatGoodput(run.goodput)}\n`);
        process.stdout.write(formatControlLine(run.result));
        if (settings.control !== undefined)
          process.stdout.write(
            formatPoolLine(
              settings.control,
              poolSource(flags, file.autoscaler, givenInstances(flags, file, fromCli)),
              run.result,
            ),
          );
        process.stdout.write(formatPdLine(run.result.pd));
        process.stdout.write(formatPdPoolsLines(run.result.pdPools));
      } else {
        const rows = runs.map((run) => ({
          name: run.result.summary.policy,
          summary: run.result.summary,
          ...(run.goodput !== undefined ? { goodputRps: run.goodput.goodputRps } : {}),
        }));
        process.stdout.write(comparisonHeader(settings, runs));
        process.stdout.write(`${formatComparisonTable(rows, { color })}\n`);
      }
      // A multi-model run's replicas chart shows the models' instances summed.
      const label =
        settings.control?.autoscaler ??
        pdPoolsLabel(settings.pdPools) ??
        runs[0]?.result.models?.map((m) => `${m.model}:${m.autoscaler}`).join(', ');
      writeOutputs(runs, settings.output, label, sharedGpus(settings), gpuBudget(settings));
      process.stdout.write(wroteLines(settings.output));
    });
  for (const option of timeVaryingOptions()) sim.addOption(option);
  for (const option of autoscalerOptions()) sim.addOption(option);
  for (const option of serverlessOptions()) sim.addOption(option);
  for (const option of planPdOptions()) sim.addOption(option);
  for (const option of pdOptions()) sim.addOption(option);
  for (const option of pdAutoscaleOptions()) sim.addOption(option);
}

function declared(text: string): string {
  parseDeclaredMaxTokens(text, 'declared-max-tokens');
  return text;
}

function splitList(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** One line per sweep point, then the goodput. */
export function formatGoodput(goodput: GoodputResult): string {
  const lines = goodput.points.map(
    (p) =>
      `  rate ${p.rateRps.toFixed(2)} req/s (x${p.scale.toFixed(3)}): ${(p.attainment * 100).toFixed(1)}% meet both SLOs`,
  );
  return [
    `goodput sweep (target ${(goodput.targetAttainment * 100).toFixed(0)}%):`,
    ...lines,
    `goodput: ${goodput.goodputRps.toFixed(2)} req/s`,
  ].join('\n');
}

/**
 * The summary the table prints: a P/D run's header names both sides' policies, `policy X (prefill)
 * / Y (decode)`, where the summary itself (and its JSON) holds the prefill side's alone.
 */
export function summaryForTable(result: Pick<SimResult, 'summary' | 'pd'>): SimSummary {
  const { summary, pd } = result;
  if (pd === undefined) return summary;
  return { ...summary, policy: `${summary.policy} (prefill) / ${pd.policy} (decode)` };
}

/** Reads and validates a YAML config file. */
export function loadConfigFile(path: string): SimConfigFile {
  const value = readYamlFile(path, `config file '${path}'`);
  return parseWithSchema(simConfigFileSchema, value ?? {}, `config file '${path}'`);
}

/**
 * A serverless run's file that names both `cluster.model` (every served model's base) and other
 * `workload.bases`: refused naming those two fields, since no `--model` was given to blame.
 */
function checkFileBases(model: string | undefined, bases: unknown): void {
  if (model === undefined || !Array.isArray(bases)) return;
  // Compared as catalogue ids (a Hugging Face name is its id); a name neither reads as is refused later.
  const id = (name: unknown): unknown => {
    try {
      return typeof name === 'string' ? resolveModelId(name) : name;
    } catch {
      return name;
    }
  };
  if (bases.length === 1 && id(bases[0]) === id(model)) return;
  throw new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `config: cluster.model '${model}' and workload.bases (${bases.join(', ')}) disagree: with --serverless-policy, cluster.model is every served model's base; drop one of them, or give --model`,
    { param: 'cluster.model' },
  );
}

/**
 * A serverless run reads its GPU type and base model from a config file's uniform `cluster:`, but
 * sizes the cluster by --gpus: a file's `instances` (or `groups`) was silently ignored, as
 * --instances was before it was refused. Refused the same way, naming the key.
 */
function checkServerlessCluster(cluster: SimConfigFile['cluster']): void {
  if (cluster === undefined) return;
  const key = 'groups' in cluster ? 'groups' : 'instances' in cluster ? 'instances' : undefined;
  if (key === undefined) return;
  throw new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `config: cluster.${key}: not with --serverless-policy: --gpus sizes the cluster and the policy starts each model its own instances; drop cluster.${key} (cluster.gpu and cluster.model are read)`,
    { param: `cluster.${key}` },
  );
}

/** Merges flags over the config file: a flag given on the command line wins, then the file, then defaults. */
export function resolveSettings(
  flags: SimFlags,
  file: SimConfigFile,
  fromCli: (name: string) => boolean,
): TwinSettings {
  const pick = <T>(name: string, flagValue: T, fileValue: T | undefined): T =>
    fromCli(name) || fileValue === undefined ? flagValue : fileValue;
  const policy = pick('policy', flags.policy, file.policy);
  // A multi-model cluster (nodes, models with their autoscalers) brings its own groups and loops.
  const placed = placementFromConfig(file, fromCli);
  const fileCluster =
    file.cluster !== undefined && !('groups' in file.cluster) && !('models' in file.cluster)
      ? file.cluster
      : undefined;
  // A cluster flag over a file's groups replaced them with a uniform cluster of the defaults' other
  // fields (`--gpu a100-80gb` over two groups of 2 ran 4 A100s), so it is refused, naming both.
  const overGroups = ['instances', 'gpu', 'model', 'tp'].find(fromCli);
  if (file.cluster !== undefined && 'groups' in file.cluster && overGroups !== undefined)
    throw invalidArgument(
      overGroups,
      flags[overGroups as 'instances' | 'gpu' | 'model' | 'tp'],
      "no --instances, --gpu, --model or --tp over a config file's cluster.groups, which give each group's; edit the groups, or write a uniform cluster: (instances, gpu, model, tp)",
    );
  const cluster =
    placed?.cluster ??
    (file.cluster !== undefined && 'groups' in file.cluster
      ? file.cluster
      : {
          groups: [
            {
              count: pick('instances', flags.instances, fileCluster?.instances),
              gpu: pick('gpu', flags.gpu, fileCluster?.gpu),
              model: pick('model', flags.model, fileCluster?.model),
              tp: pick('tp', flags.tp, fileCluster?.tp),
            },
          ],
        });
  const engine = { ...(file.engine ?? {}) };
  if (flags.maxNumSeqs !== undefined) engine.maxNumSeqs = flags.maxNumSeqs;
  if (flags.maxNumBatchedTokens !== undefined) engine.maxNumBatchedTokens = flags.maxNumBatchedTokens;
  if (flags.blockSize !== undefined) engine.blockSize = flags.blockSize;
  if (flags.gpuMemoryUtilization !== undefined) engine.gpuMemoryUtilization = flags.gpuMemoryUtilization;
  if (fromCli('prefixCaching')) engine.enablePrefixCaching = flags.prefixCaching;
  if (flags.schedulingPolicy !== undefined) engine.schedulingPolicy = flags.schedulingPolicy;
  if (flags.disableCascadeAttn === true) engine.disableCascadeAttn = true;
  // The flag names the link; a file's minTokens stays.
  if (flags.kvStore !== undefined) engine.kvStore = { ...engine.kvStore, kind: 'peer', link: flags.kvStore };
  const workload = workloadFromFlags(flags, file.workload, fromCli);
  // A serverless run's GPU and base model: a flag given, else the file's uniform cluster (as a plain
  // run's), never commander's defaults over the file.
  if (flags.serverlessPolicy !== undefined && !fromCli('model'))
    checkFileBases(fileCluster?.model, workload['bases']);
  const serverless = serverlessFromFlags(
    {
      ...flags,
      gpu: pick('gpu', flags.gpu, fileCluster?.gpu),
      model: pick('model', flags.model, fileCluster?.model),
      // The file's cluster.tp is every served model's TP, as --tp is (it was silently dropped).
      tp: pick('tp', flags.tp, fileCluster?.tp),
    },
    workload,
    (name) =>
      fromCli(name) ||
      (name === 'model' && fileCluster?.model !== undefined) ||
      (name === 'tp' && fileCluster?.tp !== undefined),
  );
  if (serverless !== undefined && (placed !== undefined || flags.autoscaler !== undefined))
    throw invalidArgument(
      'serverless-policy',
      flags.serverlessPolicy,
      'not with --autoscaler or a multi-model cluster',
    );
  // The policy starts each model's instances on --gpus; a count given here was silently ignored.
  if (serverless !== undefined && fromCli('instances'))
    throw invalidArgument(
      'instances',
      flags.instances,
      'no --instances with --serverless-policy: --gpus sizes the cluster and the policy starts each model its own instances',
    );
  if (serverless !== undefined) checkServerlessCluster(file.cluster);
  // A file's autoscaler block reached the twin, which refused it in its own words ("serverless
  // excludes control and placement"), naming no key.
  if (serverless !== undefined && file.autoscaler !== undefined)
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      'config: autoscaler: not with --serverless-policy: the policy scales each model itself (--keep-alive-s); drop the autoscaler block',
      { param: 'autoscaler' },
    );
  const control =
    placed === undefined
      ? controlFromFlags(flags, file.autoscaler, givenInstances(flags, file, fromCli))
      : undefined;
  const pd = pdFromFlags(flags, fromCli, Object.keys(file.policies ?? {}));
  const pdPools = pdPoolsFromFlags(flags, pd, control, file.autoscaler, fromCli);
  return {
    seed: pick('seed', flags.seed, file.seed),
    policy,
    policies: file.policies ?? {},
    cluster,
    engine,
    workload,
    slo: {
      ttftMs: pick('sloTtftMs', flags.sloTtftMs, file.slo?.ttftMs),
      tpotMs: pick('sloTpotMs', flags.sloTpotMs, file.slo?.tpotMs),
    },
    output: {
      ...(file.output ?? {}),
      ...(flags.json !== undefined ? { json: flags.json } : {}),
      ...(flags.html !== undefined ? { html: flags.html } : {}),
    },
    expectedRequests: flags.requests,
    admission: flags.admission === true ? (file.admission ?? {}) : file.admission,
    batchJobs:
      flags.batchRequests !== undefined
        ? [
            fixedBatchJob(
              'batch',
              flags.batchRequests,
              flags.batchInputTokens,
              flags.batchOutputTokens,
              flags.batchWindowS,
            ),
          ]
        : file.batch?.jobs,
    scrapeIntervalMs: flags.scrapeIntervalMs ?? file.scrapeIntervalMs,
    earlyReject: flags.earlyReject === true ? (file.earlyReject ?? {}) : file.earlyReject,
    faults: flags.fault ?? file.faults?.map(toFault),
    reliability: { ...file.reliability, ...(flags.retries !== undefined ? { retries: flags.retries } : {}) },
    goodputTarget: flags.goodputTarget ?? file.goodputTarget,
    // A P/D cluster under --autoscaler scales its two pools apart (src/cli/sim-pd-autoscale.ts).
    control: pdPools === undefined ? control : undefined,
    placement: placed?.placement,
    serverless,
    pd,
    pdPools,
  };
}

/**
 * The cluster's instance count when the user gave one (--instances, or the config file's cluster:
 * `instances` or its groups), undefined when it is the default: an autoscaler's pool is then its own
 * default (src/cli/sim-autoscaler.ts), not the fixed cluster's 4.
 */
export function givenInstances(
  flags: SimFlags,
  file: SimConfigFile,
  fromCli: (name: string) => boolean,
): number | undefined {
  if (fromCli('instances')) return flags.instances;
  const cluster = file.cluster;
  if (cluster === undefined) return undefined;
  if ('instances' in cluster) return cluster.instances;
  if ('groups' in cluster) return cluster.groups.reduce((n, g) => n + g.count, 0);
  return undefined;
}

/** Parses --goodput-target: a fraction in (0, 1]. */
function goodputTarget(value: string): number {
  const x = Number(value);
  if (!(x > 0 && x <= 1))
    throw invalidArgument('goodput-target', value, 'a fraction in (0, 1], e.g. 0.9 or 0.99');
  return x;
}

/**
 * The generated workloads' flags, each of which a trace replay would ignore (--rate is not the
 * replay's rate, --input-tokens not its prompts): refused with --trace, naming the flag and what a
 * trace takes instead. `--plan-pd` reads --rate with a trace and never gets here.
 */
const NOT_WITH_TRACE: readonly (readonly [attribute: string, flag: string, instead: string])[] = [
  ['rate', 'rate', '; --rate-scale K replays it K times as fast'],
  ['cv', 'cv', ''],
  ['inputTokens', 'input-tokens', ': a trace gives each prompt length'],
  ['outputTokens', 'output-tokens', ': a trace gives each output length (--declared-max-tokens caps it)'],
  ['scale', 'scale', ' (servegen); --rate-scale K replays a trace K times as fast'],
  ['startH', 'start-h', ' (servegen)'],
  ['servegenClients', 'servegen-clients', ' (servegen)'],
  ['rateMin', 'rate-min', ' (sinusoid)'],
  ['rateMax', 'rate-max', ' (sinusoid)'],
  ['periodS', 'period-s', ' (sinusoid)'],
  ['burstRate', 'burst-rate', ' (bursts)'],
  ['burstS', 'burst-s', ' (bursts)'],
  ['gapS', 'gap-s', ' (bursts)'],
];

function checkTraceFlags(trace: string, fromCli: (name: string) => boolean): void {
  for (const [attribute, flag, instead] of NOT_WITH_TRACE)
    if (fromCli(attribute))
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `--${flag} does not apply to a trace replay (--trace ${trace}), which would ignore it${instead}`,
        { param: flag },
      );
}

/**
 * A trace workload's durationS for --duration: the flag counts simulated seconds (as bench's does),
 * the spec the trace's own seconds before --rate-scale divides them (trace-source.ts), so S
 * simulated seconds at K x are S x K of the file's. Empty without --duration.
 */
function traceDuration(durationS: number | undefined, rateScale: number | undefined): { durationS?: number } {
  return durationS === undefined ? {} : { durationS: durationS * (rateScale ?? 1) };
}

/** Builds the workload spec from flags, over the config file's workload when no source flag is given. */
function workloadFromFlags(
  flags: SimFlags,
  fileWorkload: Record<string, unknown> | undefined,
  fromCli: (name: string) => boolean,
): Record<string, unknown> {
  const limits = {
    ...(flags.requests !== undefined ? { maxRequests: flags.requests } : {}),
    ...(flags.duration !== undefined ? { durationS: flags.duration } : {}),
    // Validated here, so a bad value fails naming the flag; the workload schema parses it again.
    ...(flags.declaredMaxTokens !== undefined
      ? { declaredMaxTokens: declared(flags.declaredMaxTokens) }
      : {}),
  };
  checkMultiModelFlags(flags, fileWorkload);
  if (flags.trace !== undefined) {
    checkTraceFlags(flags.trace, fromCli);
    return {
      kind: 'trace',
      trace: flags.trace,
      ...(flags.rateScale !== undefined ? { rateScale: flags.rateScale } : {}),
      ...limits,
      ...traceDuration(flags.duration, flags.rateScale),
    };
  }
  const timeVarying = timeVaryingWorkload(flags, limits);
  if (timeVarying !== undefined) return timeVarying;
  if (flags.workload === 'multi-model') return multiModelFromFlags(flags, limits);
  const generated = flags.workload !== undefined || fileWorkload === undefined;
  if (!generated) {
    const merged: Record<string, unknown> = { ...fileWorkload, ...limits };
    if (fromCli('rateScale')) merged['rateScale'] = flags.rateScale;
    if (merged['kind'] === 'trace') {
      const rateScale = merged['rateScale'];
      Object.assign(
        merged,
        traceDuration(flags.duration, typeof rateScale === 'number' ? rateScale : undefined),
      );
    }
    if (fromCli('rate')) {
      merged['rateRps'] = flags.rate;
      delete merged['stages'];
    }
    if (flags.stages !== undefined) {
      merged['stages'] = flags.stages;
      delete merged['rateRps'];
    }
    if (flags.models !== undefined) merged['models'] = flags.models;
    if (flags.zipf !== undefined) merged['zipfExponent'] = flags.zipf;
    return merged;
  }
  const kind = flags.workload ?? (flags.cv !== undefined ? 'gamma' : 'poisson');
  if (kind === 'constant' && flags.cv !== undefined)
    throw invalidArgument('cv', flags.cv, 'no --cv with --workload constant (its gaps do not vary)');
  const unbounded =
    flags.requests === undefined && flags.duration === undefined && flags.stages === undefined;
  return {
    kind,
    ...(flags.stages !== undefined ? { stages: flags.stages } : { rateRps: flags.rate ?? 10 }),
    ...(kind === 'gamma' ? { cv: flags.cv ?? 1 } : {}),
    input: { kind: 'fixed', tokens: flags.inputTokens ?? 1024 },
    output: { kind: 'fixed', tokens: flags.outputTokens ?? 128 },
    ...(unbounded ? { maxRequests: 1000 } : {}),
    ...limits,
  };
}

/** --models and --zipf belong to the multi-model kind (named, or the config file's): elsewhere they would be ignored. */
function checkMultiModelFlags(flags: SimFlags, fileWorkload: Record<string, unknown> | undefined): void {
  const multi =
    flags.workload === 'multi-model' ||
    (flags.workload === undefined && flags.trace === undefined && fileWorkload?.['kind'] === 'multi-model');
  if (multi) return;
  if (flags.models !== undefined)
    throw invalidArgument('models', flags.models, '--models only with --workload multi-model');
  if (flags.zipf !== undefined)
    throw invalidArgument('zipf', flags.zipf, '--zipf only with --workload multi-model');
}

/** The multi-model spec from flags: --models (required), --zipf, --rate (the total), one hour by default. */
function multiModelFromFlags(flags: SimFlags, limits: Record<string, unknown>): Record<string, unknown> {
  if (flags.models === undefined)
    throw invalidArgument('models', 'missing', '--models N with --workload multi-model');
  if (flags.stages !== undefined)
    throw invalidArgument(
      'stages',
      'given',
      'no --stages with --workload multi-model (each model has its own on/off rate)',
    );
  if (flags.cv !== undefined)
    throw invalidArgument(
      'cv',
      flags.cv,
      'no --cv with --workload multi-model (arrivals are Poisson while a model is on)',
    );
  const unbounded = flags.requests === undefined && flags.duration === undefined;
  return {
    kind: 'multi-model',
    models: flags.models,
    ...(flags.zipf !== undefined ? { zipfExponent: flags.zipf } : {}),
    rateRps: flags.rate ?? 10,
    input: { kind: 'fixed', tokens: flags.inputTokens ?? 1024 },
    output: { kind: 'fixed', tokens: flags.outputTokens ?? 128 },
    ...(unbounded ? { durationS: 3600 } : {}),
    ...limits,
  };
}
