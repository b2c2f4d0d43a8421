/**
 * The autoscaler flags of `switchyard sim` and the control block they build (src/twin/control-host.ts).
 * Kept out of sim-command.ts so that file only registers the flags and calls in here.
 */
import { Option } from 'commander';
import { autoscalerDescription, autoscalerNames } from '../control/autoscalers/registry.ts';
import { invalidArgument } from '../core/errors.ts';
import { STORAGE_TIERS } from '../model/loading.ts';
import type { StorageTier } from '../model/types.ts';
import type { SimConfigFile } from '../twin/config.ts';
import { CONTROL_INTERVAL_MS_DEFAULT, type ControlSettings } from '../twin/control-host.ts';
import type { SimResult } from '../twin/simulator.ts';
import { nonNegativeInt, positiveInt, positiveNumber } from './parse.ts';
import { parseAutoscalerList } from './sim-autoscaler-compare.ts';

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
        'Several, comma-separated (e.g. kpa,slo-planner,static): run each on the same workload and seed and compare them',
    ).argParser(parseAutoscalerList),
    new Option('--min-instances <n>', 'with --autoscaler: fewest instances (default 1)').argParser(
      nonNegativeInt,
    ),
    new Option(
      '--max-instances <n>',
      'with --autoscaler: the pool, most instances (default --instances); static runs all of them',
    ).argParser(positiveInt),
    new Option(
      '--control-interval-ms <ms>',
      `with --autoscaler: how often the loop runs (default ${CONTROL_INTERVAL_MS_DEFAULT})`,
    ).argParser(positiveNumber),
    new Option(
      '--weights-tier <tier>',
      'with --autoscaler: where a starting instance reads its weights (default nvme)',
    ).choices(Object.keys(STORAGE_TIERS)),
  ];
}

/** The control block for the run, or undefined without --autoscaler (then its flags are refused). */
export function controlFromFlags(
  given: AutoscalerFlags,
  file: SimConfigFile['autoscaler'] = undefined,
): ControlSettings | undefined {
  // The config file's block under the flags: a flag wins field by field.
  const flags: AutoscalerFlags = {
    ...given,
    autoscaler: given.autoscaler ?? (file?.name === undefined ? undefined : parseAutoscalerList(file.name)),
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
  const minInstances = flags.minInstances ?? 1;
  const maxInstances = flags.maxInstances ?? flags.instances;
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

/** One line under the summary table of an autoscaled run; empty otherwise. */
export function formatControlLine(result: SimResult): string {
  if (result.gpuHours === undefined) return '';
  const peak = Math.max(0, ...(result.instancesOverTime ?? []).map((p) => p.ready));
  return (
    `autoscaler: ${result.gpuHours.toFixed(3)} GPU-hours, ${result.coldStarts ?? 0} cold starts, ` +
    `peak ${peak} ready\n`
  );
}
