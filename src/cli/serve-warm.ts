/**
 * Fast starts from zero for `switchyard serve --engine llama` (docs/serverless.md, "Warm starts in
 * serve"): a pool of standby engines a cold start is handed to (src/adapters/standby-engines.ts),
 * and a warmer keeping the GGUFs of models whose engines stopped (keep-alive, eviction) in the page
 * cache within a byte budget (src/adapters/model-warmer.ts), re-read every WARM_REFRESH_EVERY_MS
 * so pages the kernel evicted come back.
 */
import { handedOn, type LaunchCounts } from '../adapters/engine-launcher.ts';
import { ModelWarmer, warmCacheBytesDefault } from '../adapters/model-warmer.ts';
import { STANDBY_ENGINES_MAX, StandbyEngines } from '../adapters/standby-engines.ts';
import type { EngineLauncher, LaunchedEngine } from '../control/local-actuator.ts';
import { SwitchyardError } from '../core/errors.ts';
import {
  defaultContextCells,
  kvCacheBytes,
  MEMORY_RESERVE_MIB_MAX,
  STANDBY_RESERVE_MARGIN_MIB,
  standbyReserveMibFor,
} from '../core/standby-reserve.ts';
import { ENABLE_SLEEP_MODE_FLAG } from './serve-sleep.ts';

/** How often the warm cache re-reads the files it keeps (a re-read from the page cache is a memory copy). */
export const WARM_REFRESH_EVERY_MS = 60_000;
/** Standby engines kept by default when models may be at zero. */
export const STANDBY_ENGINES_DEFAULT = 1;

/** The flags this part reads. */
export interface WarmFlags {
  readonly engine?: 'sim' | 'llama';
  readonly standbyEngines?: number;
  readonly warmCacheMb?: number;
  /**
   * MiB each standby engine touches while it waits (`engine llama --standby-reserve-mib`), or `auto`:
   * sized from the models served when serve starts (`autoStandbyReserve`).
   */
  readonly standbyReserveMib?: number | 'auto';
}

function usage(message: string, param: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', message, { param });
}

/**
 * `--standby-engines`, `--warm-cache-mb` and `--standby-reserve-mib`, checked, with their defaults:
 * with llama engines and models at zero, STANDBY_ENGINES_DEFAULT standby engine and
 * `warmCacheBytesDefault()`; otherwise none (sim engines start in a fraction of a second and have no
 * weights to warm). No reserve by default: it stays resident while an engine stands by, and its
 * right size depends on the model that arrives (docs/serverless.md, "Warm starts in serve"); `auto`
 * is kept as is, for `autoStandbyReserve` to size once the models' files can be read.
 */
export function warmSettingsOf(
  flags: WarmFlags,
  minInstances: number,
): { standbyEngines: number; warmCacheBytes: number; standbyReserveMib: number | 'auto' } {
  const llama = flags.engine === 'llama';
  for (const [f, flag] of [
    ['standbyEngines', 'standby-engines'],
    ['warmCacheMb', 'warm-cache-mb'],
    ['standbyReserveMib', 'standby-reserve-mib'],
  ] as const) {
    const value = flags[f];
    if (value !== undefined && (value === 'auto' || value > 0) && !llama)
      throw usage(`--${flag} applies to --engine llama only`, flag);
  }
  const standbyEngines = flags.standbyEngines ?? (llama && minInstances === 0 ? STANDBY_ENGINES_DEFAULT : 0);
  if (!Number.isInteger(standbyEngines) || standbyEngines < 0 || standbyEngines > STANDBY_ENGINES_MAX)
    throw usage(
      `--standby-engines ${standbyEngines}: expected an integer in [0, ${STANDBY_ENGINES_MAX}]`,
      'standby-engines',
    );
  const mb = flags.warmCacheMb;
  if (mb !== undefined && !(Number.isInteger(mb) && mb >= 0))
    throw usage(`--warm-cache-mb ${mb}: expected an integer >= 0`, 'warm-cache-mb');
  const warmCacheBytes =
    mb !== undefined ? mb * 2 ** 20 : llama && minInstances === 0 ? warmCacheBytesDefault() : 0;
  const standbyReserveMib = flags.standbyReserveMib ?? 0;
  if (
    standbyReserveMib !== 'auto' &&
    (!Number.isInteger(standbyReserveMib) ||
      standbyReserveMib < 0 ||
      standbyReserveMib > MEMORY_RESERVE_MIB_MAX)
  )
    throw usage(
      `--standby-reserve-mib ${standbyReserveMib}: expected auto or an integer in [0, ${MEMORY_RESERVE_MIB_MAX}]`,
      'standby-reserve-mib',
    );
  if ((standbyReserveMib === 'auto' || standbyReserveMib > 0) && standbyEngines === 0)
    throw usage(
      '--standby-reserve-mib is held by standby engines: with --standby-engines 0 (or models with a minimum) there are none',
      'standby-reserve-mib',
    );
  return { standbyEngines, warmCacheBytes, standbyReserveMib };
}

/** `--standby-reserve-mib auto`, sized: the reserve and the model whose KV cache set it. */
export interface AutoStandbyReserve {
  /** MiB each standby engine holds: the largest KV cache plus STANDBY_RESERVE_MARGIN_MIB, capped. */
  readonly mib: number;
  /** The GGUF with the largest KV cache. */
  readonly largest: string;
  /** Its KV cache, bytes. */
  readonly kvBytes: number;
}

/**
 * Sizes `--standby-reserve-mib auto` for standby engines that may be handed any of `files` (GGUFs):
 * each model's KV cache at the context serve's llama engines create (SEQUENCES_DEFAULT sequences of
 * min(its training context, CONTEXT_SIZE_MAX_DEFAULT) tokens, F16 keys and values), read from its
 * GGUF's shape as bench/cold-start.ts does; the largest sets the reserve (src/core/standby-reserve.ts).
 * Throws SY_ERR_INVALID_ARGUMENT (`standby-reserve-mib`) for a file whose KV cache cannot be sized.
 */
export async function autoStandbyReserve(files: readonly string[]): Promise<AutoStandbyReserve> {
  // Loaded on first use: serve without `auto` never reads a GGUF's metadata here.
  const [{ readGgufShape }, { CONTEXT_SIZE_MAX_DEFAULT }, { SEQUENCES_DEFAULT }] = await Promise.all([
    import('../engine-servers/llama/gguf-shape.ts'),
    import('../engine-servers/llama/llama-backend.ts'),
    import('../engine-servers/llama/defaults.ts'),
  ]);
  let largest: { file: string; bytes: number } | undefined;
  for (const file of files) {
    const { shape, trainedContext, headWidths } = await readGgufShape(file);
    const cells = defaultContextCells(trainedContext, SEQUENCES_DEFAULT, CONTEXT_SIZE_MAX_DEFAULT);
    const bytes = kvCacheBytes({ ...shape, ...headWidths }, cells);
    if (bytes === undefined)
      throw usage(
        `--standby-reserve-mib auto: the KV cache of ${file} cannot be sized from its GGUF metadata (block_count, embedding_length, head counts, key and value lengths); give the MiB instead`,
        'standby-reserve-mib',
      );
    if (largest === undefined || bytes > largest.bytes) largest = { file, bytes };
  }
  if (largest === undefined)
    throw usage('--standby-reserve-mib auto: no model to size it for', 'standby-reserve-mib');
  return { mib: standbyReserveMibFor([largest.bytes]), largest: largest.file, kvBytes: largest.bytes };
}

/** The line serve writes for an `auto` reserve: what sized it. */
export function autoStandbyReserveLine(auto: AutoStandbyReserve): string {
  const capped = auto.mib === MEMORY_RESERVE_MIB_MAX ? `, capped at ${MEMORY_RESERVE_MIB_MAX} MiB` : '';
  return `standby reserve auto: ${auto.mib} MiB (the largest KV cache, ${auto.largest}'s ${Math.ceil(auto.kvBytes / 2 ** 20)} MiB, + ${STANDBY_RESERVE_MARGIN_MIB} MiB${capped})`;
}

/** A node's standby pool and warm cache while serve runs. */
export interface WarmStart {
  /** The standby pool, when `standbyEngines` > 0. */
  readonly standby: StandbyEngines | undefined;
  /** `inner`, warming `file` when an engine it launched stops (until `closing`). */
  wrap(inner: EngineLauncher, file: string): EngineLauncher;
  /** An engine stopped serving `file` without stopping (a re-target took it): warmed as after a stop. */
  unloaded(file: string): void;
  /** /stats `warmStart`. */
  stats(counts: LaunchCounts): Record<string, unknown>;
  /** Serve is shutting down: engines that stop from now on are not warmed. */
  closing(): void;
  /** Stops the standby processes and the refresh timer. */
  close(): Promise<void>;
}

/**
 * Starts the standby pool (its processes come up in the background) and the warm cache, or returns
 * undefined when both are off.
 */
export function warmStart(
  settings: {
    readonly standbyEngines: number;
    readonly warmCacheBytes: number;
    /** MiB each standby engine touches while it waits (0: none). */
    readonly standbyReserveMib?: number;
    /** Sleep mode on (`serve --sleep`): standby engines start with its flag, so a handed engine can sleep. */
    readonly sleep?: unknown;
  },
  startTimeoutMs: number,
  say: (line: string) => void,
): WarmStart | undefined {
  if (settings.standbyEngines === 0 && settings.warmCacheBytes === 0) return undefined;
  const reserve = settings.standbyReserveMib ?? 0;
  const standby =
    settings.standbyEngines > 0
      ? new StandbyEngines({
          size: settings.standbyEngines,
          args: standbyArgs(settings),
          standbyTimeoutMs: startTimeoutMs,
          log: (line) => process.stderr.write(`${line}\n`),
        })
      : undefined;
  standby?.start();
  const warmer =
    settings.warmCacheBytes > 0 ? new ModelWarmer({ budgetBytes: settings.warmCacheBytes }) : undefined;
  let shuttingDown = false;
  let refreshing: Promise<void> | undefined;
  const timer =
    warmer === undefined
      ? undefined
      : setInterval(() => {
          refreshing ??= warmer.refresh().finally(() => {
            refreshing = undefined;
          });
        }, WARM_REFRESH_EVERY_MS);
  timer?.unref();
  const warmOnStop = (file: string): void => {
    if (warmer === undefined || shuttingDown) return;
    warmer.warm(file).then(
      (outcome) => {
        if (!outcome.warmed)
          say(
            `warm cache: ${file} (${mib(outcome.bytes)} MiB) is over --warm-cache-mb ${mib(warmer.budgetBytes)}`,
          );
      },
      (error: Error) => say(`warm cache: ${file}: ${error.message}`),
    );
  };
  say(
    `warm starts: ${settings.standbyEngines} standby llama engine(s)${reserve > 0 ? ` holding ${reserve} MiB each while they wait` : ''}, warm cache ${mib(settings.warmCacheBytes)} MiB`,
  );
  return {
    standby,
    wrap: (inner, file) => ({
      async launch(index: number, signal?: AbortSignal): Promise<LaunchedEngine> {
        // Loaded now: its pages are the engine's to keep, the budget goes to stopped models.
        warmer?.forget(file);
        const engine = await inner.launch(index, signal);
        return handedOn(engine, {
          stop: async () => {
            await engine.stop();
            warmOnStop(file);
          },
        });
      },
    }),
    unloaded: warmOnStop,
    stats: (counts) => ({
      standby: standby?.stats() ?? null,
      standbyReserveMib: reserve,
      coldStarts: { standby: counts.standby, fresh: counts.fresh },
      warmCache:
        warmer === undefined
          ? null
          : {
              budgetBytes: warmer.budgetBytes,
              keptBytes: warmer.bytes,
              kept: warmer.kept,
              warms: warmer.warms,
            },
    }),
    closing: () => {
      shuttingDown = true;
    },
    close: async () => {
      shuttingDown = true;
      clearInterval(timer);
      await Promise.all([standby?.close(), refreshing]);
    },
  };
}

/** The flags every standby engine gets: sleep mode's with `--sleep`, the reserve's when asked for. */
export function standbyArgs(settings: {
  readonly standbyReserveMib?: number;
  readonly sleep?: unknown;
}): string[] {
  const reserve = settings.standbyReserveMib ?? 0;
  return [
    ...(settings.sleep === undefined ? [] : [ENABLE_SLEEP_MODE_FLAG]),
    ...(reserve > 0 ? ['--standby-reserve-mib', String(reserve)] : []),
  ];
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}
