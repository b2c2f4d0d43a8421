/**
 * The autoscaler flags of `switchyard sim` and the control block they build (src/twin/control-host.ts).
 * Kept out of sim-command.ts so that file only registers the flags and calls in here.
 */
import { Option } from 'commander';
import { autoscalerDescription, autoscalerNames } from '../control/autoscalers/registry.ts';
import { invalidArgument } from '../core/errors.ts';
import { STORAGE_TIERS } from '../model/loading.ts';
import type { StorageTier } from '../model/types.ts';
import type { ClusterSpec } from '../twin/cluster.ts';
import { isPlacementCluster, type SimConfigFile, toPlacementSettings } from '../twin/config.ts';
import { CONTROL_INTERVAL_MS_DEFAULT, type ControlSettings } from '../twin/control-host.ts';
import { type PlacementSettings, placementCluster } from '../twin/placement-host.ts';
import type { SimResult } from '../twin/simulator.ts';
import { intInRange, positiveNumber } from './parse.ts';
import { parseAutoscalerList } from './sim-autoscaler-compare.ts';
import { refusalAsError } from './usage-error.ts';

/**
 * The pool (most instances) of an autoscaled run that gives neither --max-instances nor a cluster
 * size (--instances, the config's cluster). Not the 4 of a fixed cluster: capped at that, an
 * autoscaler on a load that wants more would be held down without anyone asking for it, and its
 * SLO attainment read as its own. Each slot is a modelled instance, idle ones cost little to simulate.
 */
export const AUTOSCALER_POOL_DEFAULT = 16;

/** Most instances of an autoscaled pool: the config schema's bound on `maxInstances`. */
export const POOL_INSTANCES_MAX = 10_000;

/**
 * Shortest control interval a run takes. Each tick costs the twin real work: at 1 ms a 10-minute run
 * took over a minute, at 0.001 ms it never ended; and a loop ticking faster than the scrapes it
 * reads (every 75 ms by default) sees nothing new.
 */
export const CONTROL_INTERVAL_MS_MIN = 100;

/** Where an autoscaled run's pool came from, for the line under its table. */
export type PoolSource = 'max-instances' | 'config' | 'instances' | 'default';

/** The flags read here, as commander hands them over. */
export interface AutoscalerFlags {
  autoscaler?: string | undefined;
  minInstances?: number | undefined;
  maxInstances?: number | undefined;
  controlIntervalMs?: number | undefined;
  weightsTier?: StorageTier;
  instances: number;
  sloTtftMs: number;
  sloTpotMs: number;
}

/** The options to register on `sim`. */
export function autoscalerOptions(): Option[] {
  const names = autoscalerNames();
  return [
    new Option(
      '--autoscaler <name>',
      `run a control loop over the instances: ${names.map((n) => `${n} (${autoscalerDescription(n)})`).join('; ')}. ` +
        'Several, comma-separated (e.g. kpa,slo-planner,static): run each on the same workload and seed and compare them. ' +
        "GPU-hours are billed, and the loop ticks, to the later of the last completion and the workload's declared end " +
        '(--duration, else where its arrivals end: stages, a rate curve, a ServeGen file; a trace or --requests: the last arrival)',
    ).argParser(parseAutoscalerList),
    new Option('--min-instances <n>', 'with --autoscaler: fewest instances (default 1)').argParser(
      intInRange(0, POOL_INSTANCES_MAX),
    ),
    new Option(
      '--max-instances <n>',
      `with --autoscaler: the pool, most instances (default: --instances when given, else ${AUTOSCALER_POOL_DEFAULT}, ` +
        'or --min-instances if that is more); static runs all of them. The line under the table says which applied',
    ).argParser(intInRange(1, POOL_INSTANCES_MAX)),
    new Option(
      '--control-interval-ms <ms>',
      `with --autoscaler: how often the loop runs, at least ${CONTROL_INTERVAL_MS_MIN} (default ${CONTROL_INTERVAL_MS_DEFAULT})`,
    ).argParser(positiveNumber),
    new Option(
      '--weights-tier <tier>',
      'with --autoscaler: where a starting instance reads its weights (default nvme)',
    ).choices(Object.keys(STORAGE_TIERS)),
  ];
}

/** The config file's `autoscaler.name`, read as `--autoscaler` is; a refusal names the field. */
function autoscalerOfConfig(name: string): string {
  try {
    return parseAutoscalerList(name);
  } catch (error) {
    throw refusalAsError(error, 'config autoscaler.name');
  }
}

/**
 * The control block for the run, or undefined without --autoscaler (then its flags are refused).
 * `instances`: the cluster's size when the user gave it (--instances or the config's cluster),
 * undefined when it is the default; it is the pool when no --max-instances says otherwise.
 */
export function controlFromFlags(
  given: AutoscalerFlags,
  file: SimConfigFile['autoscaler'] = undefined,
  instances: number | undefined = undefined,
): ControlSettings | undefined {
  // The config file's block under the flags: a flag wins field by field.
  const flags: AutoscalerFlags = {
    ...given,
    autoscaler: given.autoscaler ?? (file?.name === undefined ? undefined : autoscalerOfConfig(file.name)),
    minInstances: given.minInstances ?? file?.minInstances,
    maxInstances: given.maxInstances ?? file?.maxInstances,
    controlIntervalMs: given.controlIntervalMs ?? file?.intervalMs,
  };
  if (flags.autoscaler === undefined) {
    for (const [key, flag] of [
      ['minInstances', 'min-instances'],
      ['maxInstances', 'max-instances'],
      ['controlIntervalMs', 'control-interval-ms'],
      ['weightsTier', 'weights-tier'],
    ] as const) {
      if (flags[key] !== undefined) throw invalidArgument(flag, flags[key], 'only with --autoscaler');
    }
    return undefined;
  }
  if (flags.controlIntervalMs !== undefined && !(flags.controlIntervalMs >= CONTROL_INTERVAL_MS_MIN))
    throw invalidArgument(
      given.controlIntervalMs !== undefined ? 'control-interval-ms' : 'autoscaler.intervalMs',
      flags.controlIntervalMs,
      `at least ${CONTROL_INTERVAL_MS_MIN} ms`,
    );
  const minInstances = flags.minInstances ?? 1;
  const maxInstances = flags.maxInstances ?? instances ?? Math.max(AUTOSCALER_POOL_DEFAULT, minInstances);
  if (maxInstances < Math.max(1, minInstances)) {
    throw invalidArgument('max-instances', maxInstances, `at least --min-instances (${minInstances}) and 1`);
  }
  return {
    autoscaler: flags.autoscaler,
    params: file?.params?.[flags.autoscaler] ?? {},
    paramsByName: file?.params,
    minInstances,
    maxInstances,
    intervalMs: flags.controlIntervalMs,
    slo: { ttftMs: flags.sloTtftMs, tpotMs: flags.sloTpotMs },
    startupTier: flags.weightsTier,
  };
}

/**
 * The multi-model form of the config's `cluster:` (nodes, budget, models with their autoscalers):
 * the twin's cluster (one group per model) and the placement settings; undefined for the other
 * forms. The per-instance cluster flags and the single-pool autoscaler flags and block do not apply
 * to it and are refused.
 */
export function placementFromConfig(
  file: SimConfigFile,
  fromCli: (name: string) => boolean,
): { cluster: ClusterSpec; placement: PlacementSettings } | undefined {
  if (!isPlacementCluster(file.cluster)) return undefined;
  const flags = ['instances', 'gpu', 'model', 'tp', 'autoscaler', 'minInstances', 'maxInstances'];
  for (const flag of flags) {
    if (fromCli(flag)) {
      const name = flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      throw invalidArgument(
        name,
        'given',
        "not with a multi-model cluster (each model's cluster.models entry says it)",
      );
    }
  }
  if (file.autoscaler !== undefined) {
    throw invalidArgument(
      'autoscaler',
      'config block',
      "not with a multi-model cluster: give each model's autoscaler",
    );
  }
  const placement = toPlacementSettings(file.cluster);
  return { cluster: placementCluster(placement), placement };
}

/** Where the pool of `controlFromFlags` came from, given the same arguments. */
export function poolSource(
  given: AutoscalerFlags,
  file: SimConfigFile['autoscaler'],
  instances: number | undefined,
): PoolSource {
  if (given.maxInstances !== undefined) return 'max-instances';
  if (file?.maxInstances !== undefined) return 'config';
  return instances !== undefined ? 'instances' : 'default';
}

const POOL_SOURCE_WORDS: Record<PoolSource, string> = {
  'max-instances': '--max-instances',
  config: "the config's autoscaler.maxInstances",
  instances: "the cluster size (--instances or the config's cluster), no --max-instances given",
  default: 'the default with an autoscaler, no --max-instances or --instances given',
};

/**
 * The pool line of an autoscaled run: its bounds and where the upper one came from, and a note
 * when the loop asked for the whole pool, since the cap may then have decided the result.
 */
export function formatPoolLine(
  control: Pick<ControlSettings, 'autoscaler' | 'minInstances' | 'maxInstances'>,
  source: PoolSource,
  result: Pick<SimResult, 'instancesOverTime'>,
): string {
  const line = `  pool: ${control.minInstances} to ${control.maxInstances} instances (the most: ${POOL_SOURCE_WORDS[source]})\n`;
  // static runs the whole pool by design; with min = max the loop has no choice to be held in.
  if (control.autoscaler === 'static' || control.minInstances >= control.maxInstances) return line;
  const full = (result.instancesOverTime ?? []).find((p) => p.desired >= control.maxInstances);
  if (full === undefined) return line;
  return (
    line +
    `  ${control.autoscaler} asked for all ${control.maxInstances} at ${full.timeS.toFixed(0)} s: the cap may have held it ` +
    'down; a larger --max-instances shows whether it wants more\n'
  );
}

/** Lines under the summary table of an autoscaled run (one per model under placement); empty otherwise. */
export function formatControlLine(result: SimResult): string {
  if (result.gpuHours === undefined) return '';
  const peak = Math.max(0, ...(result.instancesOverTime ?? []).map((p) => p.ready));
  const total =
    `autoscaler: ${result.gpuHours.toFixed(3)} GPU-hours, ${result.coldStarts ?? 0} cold starts, ` +
    `peak ${peak} ready\n`;
  const models = (result.models ?? []).map((m) => {
    const mPeak = Math.max(0, ...m.instancesOverTime.map((p) => p.ready));
    // A serverless run's models all have priority 0: its `preempted` are idle instances evicted to
    // make room for another model's start (ServerlessModelOutcome.evicted), not preemptions by priority.
    const stopped =
      'evicted' in m
        ? `${m.preempted} idle instances stopped for another model`
        : `${m.preempted} instances preempted for higher priority`;
    return (
      `  ${m.model} (${m.base}, priority ${m.priority}, ${m.autoscaler}): ` +
      `${m.gpuHours.toFixed(3)} GPU-hours, ` +
      `${m.coldStarts} cold starts, peak ${mPeak} ready, ${stopped}, ` +
      `${(m.sloAttainment * 100).toFixed(1)}% of ${m.requests} requests within SLO\n`
    );
  });
  return total + models.join('');
}
