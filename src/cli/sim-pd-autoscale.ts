/**
 * Autoscaled P/D pools on `switchyard sim` (src/twin/pd-pools.ts): with `--prefill-instances P
 * --decode-instances D --autoscaler NAME`, P and D become the pools' sizes at time 0 and each pool is
 * sized by its own loop (`--prefill-autoscaler`/`--decode-autoscaler` name one pool's), within its own
 * `--min-/--max-prefill-instances` and `--min-/--max-decode-instances`.
 */
import { Option } from 'commander';
import { autoscalerNames, checkAutoscaler } from '../control/autoscalers/registry.ts';
import { invalidArgument } from '../core/errors.ts';
import type { SimConfigFile } from '../twin/config.ts';
import type { ControlSettings } from '../twin/control-host.ts';
import {
  checkPdPool,
  JOINT_AUTOSCALER,
  type PdPoolName,
  type PdPoolSettings,
  type PdPoolsOutcome,
  type PdPoolsSettings,
} from '../twin/pd-pools.ts';
import type { PdRunSettings } from '../twin/run.ts';
import { positiveInt } from './parse.ts';

/** The flags read here, as commander hands them over. */
export interface PdAutoscaleFlags {
  prefillAutoscaler?: string | undefined;
  decodeAutoscaler?: string | undefined;
  minPrefillInstances?: number | undefined;
  maxPrefillInstances?: number | undefined;
  minDecodeInstances?: number | undefined;
  maxDecodeInstances?: number | undefined;
}

const FLAG_NAMES: Readonly<Record<keyof PdAutoscaleFlags, string>> = {
  prefillAutoscaler: 'prefill-autoscaler',
  decodeAutoscaler: 'decode-autoscaler',
  minPrefillInstances: 'min-prefill-instances',
  maxPrefillInstances: 'max-prefill-instances',
  minDecodeInstances: 'min-decode-instances',
  maxDecodeInstances: 'max-decode-instances',
};

/** The options to register on `sim`. */
export function pdAutoscaleOptions(): Option[] {
  const pool = (name: PdPoolName): Option[] => [
    new Option(
      `--${name}-autoscaler <name>`,
      `with a disaggregated run and --autoscaler: the ${name} pool's own loop (default --autoscaler's)`,
    ).choices(autoscalerNames()),
    new Option(
      `--min-${name}-instances <n>`,
      `with a disaggregated run and --autoscaler: fewest ${name} instances (default 1)`,
    ).argParser(positiveInt),
    new Option(
      `--max-${name}-instances <n>`,
      `with a disaggregated run and --autoscaler: most ${name} instances (default --prefill-instances + --decode-instances)`,
    ).argParser(positiveInt),
  ];
  return [...pool('prefill'), ...pool('decode')];
}

/**
 * The pools' settings for a disaggregated run with `--autoscaler` (`control`, as built from the
 * shared autoscaler flags), or undefined for any other run (then the pool flags are refused).
 * The colocated bounds (`--min-instances`, `--max-instances`, the config block's) are refused here:
 * each pool has its own.
 */
export function pdPoolsFromFlags(
  flags: PdAutoscaleFlags,
  pd: PdRunSettings | undefined,
  control: ControlSettings | undefined,
  file: SimConfigFile['autoscaler'],
  fromCli: (name: string) => boolean,
): PdPoolsSettings | undefined {
  if (pd === undefined || control === undefined) {
    const given = (Object.keys(FLAG_NAMES) as (keyof PdAutoscaleFlags)[]).find((k) => flags[k] !== undefined);
    if (given !== undefined)
      throw invalidArgument(
        FLAG_NAMES[given],
        flags[given],
        'only with --prefill-instances, --decode-instances and --autoscaler',
      );
    return undefined;
  }
  for (const name of ['minInstances', 'maxInstances'] as const) {
    if (fromCli(name) || file?.[name] !== undefined) {
      const flag = name === 'minInstances' ? 'min-instances' : 'max-instances';
      throw invalidArgument(
        flag,
        control[name],
        `not with a disaggregated cluster: each pool has its own (--${flag.replace('-instances', '')}-prefill-instances, --${flag.replace('-instances', '')}-decode-instances)`,
      );
    }
  }
  if (control.autoscaler.includes(','))
    throw invalidArgument('autoscaler', control.autoscaler, 'one autoscaler with a disaggregated cluster');
  const total = pd.prefillInstances + pd.decodeInstances;
  const pool = (name: PdPoolName, initial: number, own: PdPoolFlags): PdPoolSettings => {
    const autoscaler = own.autoscaler ?? control.autoscaler;
    const params = file?.params?.[autoscaler] ?? {};
    checkAutoscaler(autoscaler, params);
    const settings = {
      autoscaler,
      params,
      minInstances: own.min ?? 1,
      maxInstances: own.max ?? total,
      initialInstances: initial,
    };
    checkPdPool(name, settings);
    return settings;
  };
  return {
    prefill: pool('prefill', pd.prefillInstances, {
      autoscaler: flags.prefillAutoscaler,
      min: flags.minPrefillInstances,
      max: flags.maxPrefillInstances,
    }),
    decode: pool('decode', pd.decodeInstances, {
      autoscaler: flags.decodeAutoscaler,
      min: flags.minDecodeInstances,
      max: flags.maxDecodeInstances,
    }),
    intervalMs: control.intervalMs,
    startupTier: control.startupTier,
  };
}

/** One pool's flags. */
interface PdPoolFlags {
  readonly autoscaler: string | undefined;
  readonly min: number | undefined;
  readonly max: number | undefined;
}

/** One line per pool under an autoscaled P/D run's table; '' otherwise. */
export function formatPdPoolsLines(outcome: PdPoolsOutcome | undefined): string {
  if (outcome === undefined) return '';
  const joint = outcome.joint ? ` (one ${JOINT_AUTOSCALER} loop drives both pools)` : '';
  const line = (name: PdPoolName): string => {
    const p = outcome[name];
    return (
      `  ${name} pool (${p.autoscaler}, ${p.minInstances}-${p.maxInstances}, ${p.initialInstances} at start): ` +
      `${p.gpuHours.toFixed(3)} GPU-hours, ${p.coldStarts} cold starts, peak ${p.peakReady} ready\n`
    );
  };
  return `P/D pools${joint}:\n${line('prefill')}${line('decode')}`;
}

/** The autoscaler label of an autoscaled P/D run (reports' replicas chart). */
export function pdPoolsLabel(settings: PdPoolsSettings | undefined): string | undefined {
  if (settings === undefined) return undefined;
  const { prefill, decode } = settings;
  if (prefill.autoscaler === decode.autoscaler) return prefill.autoscaler;
  return `prefill ${prefill.autoscaler}, decode ${decode.autoscaler}`;
}
