/**
 * `switchyard serve --autoscaler NAME`: local engines sized by a control loop, one pool per model
 * (`--model` repeated). The minimum starts before the gateway; then a LocalActuator per model adds
 * and drains engines as its loop decides, and a LiveControlRunner per model ticks the loop on the
 * wall clock from the gateway's own request accounting. With `--min-instances 0` the models start
 * at zero engines: the gateway holds their requests (src/gateway/model-buffer.ts) and wakes the
 * model's runner, which starts an engine at once; past the keep-alive the engines stop again. With
 * `--max-loaded-models N` a LoadedModelCap (src/control/loaded-model-cap.ts) keeps at most N models
 * loaded: a start beyond it evicts an idle model (`--eviction`) or waits for one to turn idle.
 * Llama engines start fast from zero (src/cli/serve-warm.ts): a cold start is handed to a standby
 * engine (`--standby-engines`) and the GGUFs of stopped models stay in the page cache
 * (`--warm-cache-mb`). With `--sleep` (engines started with `--enable-sleep-mode`) an engine
 * past the keep-alive sleeps instead of stopping, within the bounds on sleepers
 * (src/control/serverless/live-sleep.ts), and the model's next request wakes it (docs/serverless.md,
 * "Sleep mode (live)"); with `--boot-sleep` (opt-in, off by default as in the twin) the models
 * also boot straight into sleep at start-up (`SleepBooter`), so a first request is a wake too; with
 * `--retarget` a model whose requests wait for a start takes another model's asleep engine of the
 * same shape, its weights swapped in place (`Retargeter`, src/cli/serve-retarget.ts).
 * Settings come from the config's `autoscaler` block and flags.
 */
import { type LaunchCounts, localEngineLauncher } from '../adapters/engine-launcher.ts';
import { RESTART_POLICY_DEFAULT } from '../adapters/local-engines.ts';
import { checkAutoscaler, createAutoscaler } from '../control/autoscalers/registry.ts';
import { ExportOnlyActuator } from '../control/export-actuator.ts';
import { LiveControlRunner, registerRunnerMetrics } from '../control/live-runner.ts';
import { LoadedModelCap } from '../control/loaded-model-cap.ts';
import {
  type EngineLauncher,
  type LaunchedEngine,
  LocalActuator,
  slotId,
} from '../control/local-actuator.ts';
import {
  EVICTION_POLICIES,
  EVICTION_POLICY_DEFAULT,
  type EvictionPolicy,
} from '../control/serverless/live-eviction.ts';
import { type LiveSleepConfig, resolveLiveSleep, SleeperCount } from '../control/serverless/live-sleep.ts';
import type { ControlLoop, ServiceObjectives, Variant } from '../control/types.ts';
import { SwitchyardError } from '../core/errors.ts';
import { type GatewayConfig, perfModelIdOf } from '../gateway/config.ts';
import type { Gateway, GatewayOptions, RequestTap } from '../gateway/gateway.ts';
import { KEEP_ALIVE_MS_DEFAULT } from '../gateway/model-buffer.ts';
import { Retargeter, type RetargetPool } from './serve-retarget.ts';
import {
  type BootCap,
  ENABLE_SLEEP_MODE_FLAG,
  registerSleepMetrics,
  SleepBooter,
  sleepingLauncher,
} from './serve-sleep.ts';
import {
  autoStandbyReserve,
  autoStandbyReserveLine,
  type WarmStart,
  warmSettingsOf,
  warmStart,
} from './serve-warm.ts';

/** The loop's default tick, as in the twin: Knative's 2 s. */
export const AUTOSCALER_INTERVAL_MS_DEFAULT = 2000;

/** What the autoscaled pool runs with, after config and flags. */
export interface AutoscaleSettings {
  readonly name: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly intervalMs: number;
  /** With minInstances 0: how long a model's engines stay up after its last request. */
  readonly keepAliveMs: number;
  /** With minInstances 0: most models loaded at once on this node (undefined: no cap). */
  readonly maxLoadedModels: number | undefined;
  /** Which idle model the cap stops. */
  readonly eviction: EvictionPolicy;
  /** Llama: standby engines kept waiting for the next cold start (0: none). */
  readonly standbyEngines: number;
  /** Llama: bytes of stopped models' GGUFs kept in the page cache (0: none). */
  readonly warmCacheBytes: number;
  /**
   * Llama: MiB each standby engine touches while it waits (`--standby-reserve-mib`; 0: none), or
   * `auto`: sized from the models' GGUFs when the pool starts (`autoStandbyReserve`).
   */
  readonly standbyReserveMib: number | 'auto';
  /** With minInstances 0: start a model ahead of a forecast request (src/control/prewarm.ts). */
  readonly prewarm: boolean;
  /** With minInstances 0: idle engines sleep instead of stopping, within these bounds (undefined: off). */
  readonly sleep: LiveSleepConfig | undefined;
}

/** The flags that touch autoscaling. */
export interface AutoscaleFlags {
  readonly autoscaler?: string;
  readonly minInstances?: number;
  readonly maxInstances?: number;
  readonly autoscalerIntervalMs?: number;
  readonly keepAliveMs?: number;
  readonly maxLoadedModels?: number;
  readonly eviction?: string;
  readonly engines?: number;
  readonly engine?: 'sim' | 'llama';
  readonly standbyEngines?: number;
  readonly warmCacheMb?: number;
  readonly standbyReserveMib?: number | 'auto';
  readonly prewarm?: boolean;
  /** Sleep mode: idle engines sleep instead of stopping (src/control/serverless/live-sleep.ts). */
  readonly sleep?: boolean;
  readonly maxSleepers?: number;
  readonly maxSleepersPerModel?: number;
  readonly sleepMaxMs?: number;
  /** True with `--boot-sleep`: boot into sleep at start-up, off by default (src/cli/serve-sleep.ts). */
  readonly bootSleep?: boolean;
  /** True with `--retarget`: re-target asleep engines of another model of the same shape (src/cli/serve-retarget.ts). */
  readonly retarget?: boolean;
}

function usage(message: string, param: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', message, { param });
}

/**
 * The settings, or undefined when neither the config nor `--autoscaler` asks for a loop. Checks the
 * name, parameters and bounds (before any engine starts).
 */
export function autoscaleSettings(
  flags: AutoscaleFlags,
  config: GatewayConfig,
  defaultMax: number,
): AutoscaleSettings | undefined {
  const block = config.autoscaler;
  const name = flags.autoscaler ?? block?.name;
  if (name === undefined) {
    for (const f of [
      'minInstances',
      'maxInstances',
      'autoscalerIntervalMs',
      'keepAliveMs',
      'maxLoadedModels',
      'eviction',
      'standbyEngines',
      'warmCacheMb',
      'standbyReserveMib',
      'prewarm',
      'sleep',
      'maxSleepers',
      'maxSleepersPerModel',
      'sleepMaxMs',
      'bootSleep',
      'retarget',
    ] as const)
      if (flags[f] !== undefined)
        throw usage(`--${kebab(f)} needs --autoscaler (or an autoscaler block in the config)`, kebab(f));
    return undefined;
  }
  if (flags.engines !== undefined)
    throw usage(
      '--engines sets a fixed pool; with --autoscaler use --min-instances and --max-instances',
      'engines',
    );
  // Parameters from the config belong to the autoscaler it names; another name on the flag starts from none.
  const params = block !== undefined && block.name === name ? block.params : {};
  checkAutoscaler(name, params);
  const minInstances = flags.minInstances ?? block?.minInstances ?? 1;
  if (minInstances === 0 && config.backends.length > 0)
    throw usage(
      '--min-instances 0 needs local engines (Switchyard cannot start a configured backend)',
      'min-instances',
    );
  const prewarm = flags.prewarm ?? block?.prewarm ?? false;
  if (prewarm && minInstances > 0)
    throw usage(
      '--prewarm applies to --min-instances 0 only (a model with a minimum is never cold)',
      'prewarm',
    );
  const keepAliveMs = flags.keepAliveMs ?? block?.keepAliveMs;
  if (keepAliveMs !== undefined && minInstances > 0)
    throw usage('--keep-alive-ms applies to --min-instances 0 only', 'keep-alive-ms');
  const cap = loadedModelCapOf(flags, block, minInstances);
  const maxInstances = flags.maxInstances ?? block?.maxInstances ?? Math.max(minInstances, defaultMax, 1);
  if (maxInstances < minInstances) {
    // Either bound may come from the config's autoscaler block: the line names where each came from.
    const maxFrom =
      flags.maxInstances !== undefined ? '--max-instances' : "the config's autoscaler.maxInstances";
    const minFrom =
      flags.minInstances !== undefined ? '--min-instances' : "the config's autoscaler.minInstances";
    throw usage(`${maxFrom} ${maxInstances} is below ${minFrom} ${minInstances}`, 'max-instances');
  }
  const intervalMs = flags.autoscalerIntervalMs ?? block?.intervalMs ?? AUTOSCALER_INTERVAL_MS_DEFAULT;
  return {
    name,
    params,
    minInstances,
    maxInstances,
    intervalMs,
    keepAliveMs: keepAliveMs ?? KEEP_ALIVE_MS_DEFAULT,
    ...cap,
    ...warmSettingsOf(
      {
        ...(flags.engine === undefined ? {} : { engine: flags.engine }),
        ...optional('standbyEngines', flags.standbyEngines ?? block?.standbyEngines),
        ...optional('warmCacheMb', flags.warmCacheMb ?? block?.warmCacheMb),
        ...optional('standbyReserveMib', flags.standbyReserveMib ?? block?.standbyReserveMib),
      },
      minInstances,
    ),
    prewarm,
    sleep: sleepSettingsOf(flags, block?.sleep, minInstances),
  };
}

/**
 * One model's `/stats` `sleep.models[m]`: the actuator's sleep counts, engines `asleep` and those
 * still going to sleep (`sleeping`: `POST /sleep` sent) apart (both hold a sleeper place, counted in
 * `sleepers`; only an asleep one can be woken now), starts, sleepers handed to another model by a
 * re-target (`sleepersGivenUp`), and the last wake's time.
 */
export function modelSleepStats(actuator: LocalActuator | undefined): Record<string, number | null> {
  const counts = actuator?.counts();
  return {
    ...(actuator?.sleepCounts ?? {}),
    ...(actuator?.bootCounts ?? {}),
    booting: counts?.booting ?? 0,
    asleep: counts?.asleep ?? 0,
    sleeping: counts?.sleeping ?? 0,
    starts: actuator?.starts ?? 0,
    // Asleep engines handed to another model (`--retarget`): sleeps end in a wake, a stop or this.
    sleepersGivenUp: actuator?.sleepersGivenUp ?? 0,
    lastWakeMs: actuator?.lastWakeMs ?? null,
  };
}

/**
 * `--sleep` and its bounds, or the config block's `sleep` (`true` or its bounds; a flag wins over
 * the same field), checked: models at zero only, and no bound without sleep mode.
 */
function sleepSettingsOf(
  flags: AutoscaleFlags,
  configured: NonNullable<GatewayConfig['autoscaler']>['sleep'],
  minInstances: number,
): LiveSleepConfig | undefined {
  const block = typeof configured === 'object' ? configured : {};
  if (flags.sleep !== true && (configured === undefined || configured === false)) {
    for (const f of ['maxSleepers', 'maxSleepersPerModel', 'sleepMaxMs', 'bootSleep', 'retarget'] as const)
      if (flags[f] !== undefined)
        throw usage(`--${kebab(f)} needs --sleep (or the config's autoscaler.sleep)`, kebab(f));
    return undefined;
  }
  if (minInstances > 0) {
    const asked = flags.sleep === true ? '--sleep' : "the config's autoscaler.sleep";
    throw usage(
      `${asked}: sleep mode applies to --min-instances 0 (autoscaler.minInstances 0) only (engines past their keep-alive sleep)`,
      'sleep',
    );
  }
  return resolveLiveSleep({
    ...optional('sleepersMax', flags.maxSleepers ?? block.maxSleepers),
    ...optional('sleepersPerModelMax', flags.maxSleepersPerModel ?? block.maxSleepersPerModel),
    ...optional('sleepMaxMs', flags.sleepMaxMs ?? block.sleepMaxMs),
    ...optional('boot', flags.bootSleep ?? block.boot),
    ...optional('retarget', flags.retarget ?? block.retarget),
  });
}

/** The cap on loaded models and its eviction policy, checked (the cap needs models at zero). */
function loadedModelCapOf(
  flags: AutoscaleFlags,
  block: GatewayConfig['autoscaler'],
  minInstances: number,
): Pick<AutoscaleSettings, 'maxLoadedModels' | 'eviction'> {
  const maxLoadedModels = flags.maxLoadedModels ?? block?.maxLoadedModels;
  const eviction = flags.eviction ?? block?.eviction;
  if (eviction !== undefined && !(EVICTION_POLICIES as readonly string[]).includes(eviction))
    throw usage(`--eviction ${eviction}: expected one of ${EVICTION_POLICIES.join(', ')}`, 'eviction');
  if (eviction !== undefined && maxLoadedModels === undefined)
    throw usage('--eviction chooses what --max-loaded-models evicts: give both', 'eviction');
  if (maxLoadedModels !== undefined && minInstances > 0)
    throw usage(
      '--max-loaded-models applies to --min-instances 0 only (with a minimum every model stays loaded)',
      'max-loaded-models',
    );
  if (maxLoadedModels !== undefined && !(Number.isInteger(maxLoadedModels) && maxLoadedModels >= 1))
    throw usage(`--max-loaded-models ${maxLoadedModels}: expected an integer >= 1`, 'max-loaded-models');
  return { maxLoadedModels, eviction: (eviction as EvictionPolicy | undefined) ?? EVICTION_POLICY_DEFAULT };
}

/** `{ [key]: value }`, or nothing when the value is undefined (exactOptionalPropertyTypes). */
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** How serve describes one local engine of `model`'s pool as a backend. */
export type BackendOf = (id: string, engine: LaunchedEngine, model: PoolModel) => Record<string, unknown>;

/** One model's pool: what its engines run. */
export interface PoolModel {
  /** The name requests use (its engines serve it under this name). */
  readonly served: string;
  /** Engine flags (model, served name, GPU, time scale). */
  readonly args: readonly string[];
  readonly variant: Variant;
}

/** Options of `startAutoscaledPool`. */
export interface AutoscaledPoolOptions {
  readonly settings: AutoscaleSettings;
  readonly engine: 'sim' | 'llama';
  /** One pool per model, each sized by its own loop between the settings' bounds. */
  readonly models: readonly PoolModel[];
  readonly startTimeoutMs: number;
  readonly objectives: ServiceObjectives;
  readonly backendOf: BackendOf;
  readonly say: (line: string) => void;
  /** Cancels the minimum's start (a signal during serve's start-up): engines still starting stop. */
  readonly signal?: AbortSignal;
}

/** The pools once their minimum runs: backends for the gateway's config, then `attach` to the gateway. */
export interface AutoscaledPool {
  /** The minimum's engines as backends (`engine-0`.. for one model, `<model>.engine-0`.. for several). */
  readonly backends: readonly Record<string, unknown>[];
  /** What `startGateway` needs besides the config: the models it serves at zero instances. */
  readonly gatewayOptions: Pick<GatewayOptions, 'scaleFromZero'>;
  /** Starts the loops in front of `gateway`. */
  attach(gateway: Gateway): void;
  /** Stops the loops and every engine. */
  close(): Promise<void>;
}

/** One model's pool while it runs. */
interface ModelPool {
  readonly model: PoolModel;
  launcher: EngineLauncher;
  /** The minimum, started before the gateway. */
  initial: readonly LaunchedEngine[];
  readonly idOf: (index: number) => string;
  loop: ControlLoop | undefined;
  actuator: LocalActuator | undefined;
  runner: LiveControlRunner | undefined;
}

/** Backend ids: `engine-k` for one model (as before), `<model>.engine-k` for several. */
function slotIds(models: readonly PoolModel[]): ((index: number) => string)[] {
  if (models.length === 1) return [slotId];
  const slugs = models.map((m) => m.served.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 48));
  const unique = new Set(slugs).size === slugs.length;
  return slugs.map((slug, m) => {
    const prefix = unique ? slug : `m${m}`;
    return (k: number) => `${prefix}.${slotId(k)}`;
  });
}

/**
 * Starts each model's minimum (failing as a whole: a failure stops the rest) and builds the loops.
 * With `minInstances` 0 nothing starts here: the gateway holds a model's first requests and the
 * model's runner starts an engine on the wake-up (docs/serverless.md, "Scale to zero (live)").
 */
export async function startAutoscaledPool(o: AutoscaledPoolOptions): Promise<AutoscaledPool> {
  const { settings, say } = o;
  const ids = slotIds(o.models);
  const pools: ModelPool[] = [];
  const byModel = new Map<string, ModelPool>();
  const counts: LaunchCounts = { standby: 0, fresh: 0 };
  const warm: WarmStart | undefined =
    o.engine === 'llama'
      ? warmStart(
          { ...settings, standbyReserveMib: await standbyReserveOf(settings, o.models, say) },
          o.startTimeoutMs,
          say,
        )
      : undefined;
  const sleepers = settings.sleep === undefined ? undefined : new SleeperCount(settings.sleep);
  // Read by the re-targeter's pools once `attach` has the gateway.
  let gatewayOf: Gateway | undefined;
  const retargeter =
    settings.sleep?.retarget === true
      ? new Retargeter(
          o.models.map((model) =>
            retargetPoolOf(
              model,
              engineLogOf(model, o.models.length),
              () => byModel.get(model.served),
              () => gatewayOf,
            ),
          ),
          {
            engine: o.engine,
            timeoutMs: o.startTimeoutMs,
            intervalMs: settings.intervalMs,
            nowMs: () => performance.now(),
            say,
            // The victim's GGUF is no longer loaded: warmed as after its engine's stop.
            gaveUp: (served) => {
              const file = o.models.find((m) => m.served === served)?.variant.model;
              if (file !== undefined) warm?.unloaded(file);
            },
          },
        )
      : undefined;
  for (const [m, model] of o.models.entries()) {
    const pool: ModelPool = {
      model,
      idOf: ids[m] as (index: number) => string,
      initial: [],
      loop: undefined,
      actuator: undefined,
      runner: undefined,
      launcher: localEngineLauncher(
        {
          engine: o.engine,
          args: sleepers === undefined ? model.args : [...model.args, ENABLE_SLEEP_MODE_FLAG],
          startTimeoutMs: o.startTimeoutMs,
          restart: RESTART_POLICY_DEFAULT,
          log: engineLogOf(model, o.models.length),
          onExit: (index, gaveUp) => exitOf(pool, index, gaveUp),
          ...(warm?.standby === undefined
            ? {}
            : { standby: { pool: warm.standby, model: model.variant.model, servedModelName: model.served } }),
        },
        counts,
      ),
    };
    // Innermost: a re-target hands its engine on through the warm and sleep wrappers, as a launch.
    if (retargeter !== undefined) pool.launcher = retargeter.launcher(pool.launcher, model.served);
    if (warm !== undefined) pool.launcher = warm.wrap(pool.launcher, model.variant.model);
    if (sleepers !== undefined) pool.launcher = sleepingLauncher(pool.launcher, o.startTimeoutMs);
    pools.push(pool);
    byModel.set(model.served, pool);
  }
  const zero = settings.minInstances === 0;
  const capped =
    settings.maxLoadedModels === undefined
      ? ''
      : `; at most ${settings.maxLoadedModels} loaded at once, eviction ${settings.eviction}`;
  const prewarming = settings.prewarm ? '; pre-warming from a forecast' : '';
  const sleeping =
    settings.sleep === undefined
      ? ''
      : `; idle engines sleep (at most ${settings.sleep.sleepersPerModelMax} per model, ${settings.sleep.sleepersMax} in all, stopped after ${settings.sleep.sleepMaxMs} ms asleep)${settings.sleep.boot ? '; models boot into sleep at start-up' : ''}${settings.sleep.retarget ? "; a model waiting for a start re-targets another model's asleep engine of the same shape" : ''}`;
  say(
    zero
      ? `${o.models.length} model(s) on demand at zero ${o.engine} engines (autoscaler ${settings.name}, up to ${settings.maxInstances} each, keep-alive ${settings.keepAliveMs} ms${capped}${prewarming}${sleeping})`
      : `starting ${settings.minInstances} local ${o.engine} engine(s)${o.models.length > 1 ? ` for each of ${o.models.length} models` : ''} (autoscaler ${settings.name}, up to ${settings.maxInstances})...`,
  );
  const t0 = performance.now();
  const settled = await Promise.all(
    pools.map((p) =>
      Promise.allSettled(
        Array.from({ length: settings.minInstances }, (_, k) => p.launcher.launch(k, o.signal)),
      ),
    ),
  );
  const started = settled.flat().flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stopStarted = () => Promise.all(started.map((e) => e.stop().catch(() => {})));
  const failed = settled.flat().find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    await stopStarted();
    await warm?.close();
    throw (failed as PromiseRejectedResult).reason;
  }
  // Measured on this machine: how long the minimum took from spawn to a passing health check.
  const startupMs = zero ? undefined : performance.now() - t0;
  try {
    for (const [m, p] of pools.entries()) {
      p.initial = (settled[m] ?? []).map((s) => (s as PromiseFulfilledResult<LaunchedEngine>).value);
      // As a fixed pool's engines are announced (the actuator announces only those it starts later).
      const of = o.models.length > 1 ? `${p.model.served}: ` : '';
      for (const [k, e] of p.initial.entries()) say(`${of}engine ${k} ready at ${e.url} (pid ${e.pid})`);
      p.loop = createAutoscaler(
        settings.name,
        {
          model: p.model.variant.model,
          variants: [p.model.variant],
          minReplicas: settings.minInstances,
          maxReplicas: settings.maxInstances,
          intervalMs: settings.intervalMs,
          objectives: o.objectives,
          ...(startupMs === undefined ? {} : { startupMs }),
        },
        settings.params,
      );
    }
  } catch (error) {
    await stopStarted();
    await warm?.close();
    throw error;
  }
  const backends = pools.flatMap((p) => p.initial.map((e, k) => o.backendOf(p.idOf(k), e, p.model)));
  const gatewayOptions: Pick<GatewayOptions, 'scaleFromZero'> = zero
    ? {
        scaleFromZero: {
          models: o.models.map((m) => m.served),
          keepAliveMs: settings.keepAliveMs,
          wake: (model, waiting) => byModel.get(model)?.runner?.wake(waiting),
          // A drain serves what a model holds while its engine starts (or wakes); else SY_ERR_DRAINING.
          // `sleeping` counts too: a request held for a model asked for a wake, and the actuator wakes
          // an engine whose sleep is still in flight as soon as that sleep completes.
          starting: (model) => {
            const c = byModel.get(model)?.actuator?.counts();
            return c !== undefined && c.pending + c.starting + c.sleeping > 0;
          },
        },
      }
    : {};
  let cap: LoadedModelCap | undefined;
  let booter: SleepBooter | undefined;
  return {
    backends,
    gatewayOptions,
    attach(gateway: Gateway): void {
      const clock = { nowMs: () => performance.now() };
      gatewayOf = gateway;
      if (zero && settings.maxLoadedModels !== undefined)
        cap = new LoadedModelCap({
          maxLoadedModels: settings.maxLoadedModels,
          eviction: settings.eviction,
          log: say,
        });
      if (zero && sleepers?.config.boot === true)
        booter = new SleepBooter(
          pools.map((p) => ({
            model: p.model.served,
            maxInstances: settings.maxInstances,
            // attachPool builds the actuators below; the booter reads them from its first pass on.
            get actuator() {
              return p.actuator as LocalActuator;
            },
            held: () => gateway.modelBuffer?.waiting(p.model.served) ?? 0,
          })),
          sleepers,
          cap === undefined ? undefined : bootCapOf(cap, settings.maxLoadedModels as number),
          clock.nowMs,
        );
      for (const p of pools) attachPool(p, gateway, clock, o, pools.length === 1, cap, sleepers, booter);
      const runners = pools.map((p) => p.runner as LiveControlRunner);
      registerRunnerMetrics(gateway.metrics.registry, runners);
      if (cap !== undefined) {
        const c = cap;
        c.registerMetrics(gateway.metrics.registry);
        gateway.hostStats['loadedModels'] = () => c.stats(clock.nowMs());
        c.start(clock.nowMs);
      }
      if (warm !== undefined) gateway.hostStats['warmStart'] = () => warm.stats(counts);
      if (sleepers !== undefined)
        registerSleepMetrics(
          gateway.metrics.registry,
          pools.map((p) => ({
            model: p.model.served,
            role: p.model.variant.role,
            counts: () => p.actuator?.counts() ?? { sleeping: 0, asleep: 0 },
            boots: () => p.actuator?.bootCounts ?? { boots: 0, bootFailures: 0 },
          })),
        );
      if (sleepers !== undefined)
        gateway.hostStats['sleep'] = () => ({
          sleepers: sleepers.size,
          models: Object.fromEntries(pools.map((p) => [p.model.served, modelSleepStats(p.actuator)])),
        });
      if (retargeter !== undefined) {
        retargeter.registerMetrics(gateway.metrics.registry);
        gateway.hostStats['retarget'] = () => retargeter.stats();
      }
      if (settings.prewarm)
        gateway.hostStats['prewarms'] = () =>
          Object.fromEntries(pools.map((p) => [p.model.served, p.runner?.prewarms ?? 0]));
      gateway.requestTap = tapByModel(byModel, cap, clock, retargeter);
      for (const r of runners) r.start();
      booter?.start(settings.intervalMs);
    },
    async close(): Promise<void> {
      booter?.stop();
      cap?.stop();
      for (const p of pools) p.runner?.stop();
      // Shutdown is no keep-alive stop: nothing is warmed from here on.
      warm?.closing();
      await Promise.all([
        ...pools.map((p) =>
          p.actuator !== undefined
            ? p.actuator.close()
            : Promise.all(p.initial.map((e) => e.stop().catch(() => {}))),
        ),
        warm?.close(),
      ]);
    },
  };
}

/**
 * The MiB each standby engine holds: the settings' number, or with `auto` the largest KV cache of
 * `models` (their GGUFs read now, before any engine starts) plus the margin, said in one line.
 */
async function standbyReserveOf(
  settings: AutoscaleSettings,
  models: readonly PoolModel[],
  say: (line: string) => void,
): Promise<number> {
  if (settings.standbyReserveMib !== 'auto') return settings.standbyReserveMib;
  const auto = await autoStandbyReserve(models.map((m) => m.variant.model));
  say(autoStandbyReserveLine(auto));
  return auto.mib;
}

/** A process of `pool`'s slot `index` exited: its actuator hears it (`gaveUp`: lost for good). */
function exitOf(pool: ModelPool | undefined, index: number, gaveUp: boolean): void {
  if (gaveUp) pool?.actuator?.engineLost(index);
  else pool?.actuator?.engineExited(index);
}

/** Where `model`'s engines' lines go: several pools number their engines alike, so the model tells them apart. */
function engineLogOf(model: PoolModel, models: number): (line: string) => void {
  const prefix = models > 1 ? `[${model.served}] ` : '';
  return (line) => process.stderr.write(`${prefix}${line}\n`);
}

/** `model`'s pool as the re-targeter reads it (the pool and the gateway exist by its first launch). */
function retargetPoolOf(
  model: PoolModel,
  log: (line: string) => void,
  pool: () => ModelPool | undefined,
  gateway: () => Gateway | undefined,
): RetargetPool {
  return {
    served: model.served,
    modelPath: model.variant.model,
    gpu: model.variant.gpu,
    args: [...model.args, ENABLE_SLEEP_MODE_FLAG],
    actuator: () => pool()?.actuator,
    held: () => gateway()?.modelBuffer?.waiting(model.served) ?? 0,
    inSystem: () => pool()?.runner?.inSystem ?? 0,
    lastUsedMs: () => pool()?.runner?.lastUsedMs ?? Number.NEGATIVE_INFINITY,
    log,
    onExit: (index, gaveUp) => exitOf(pool(), index, gaveUp),
  };
}

/** The cap as the booter reads it. */
function bootCapOf(cap: LoadedModelCap, maxLoadedModels: number): BootCap {
  return {
    maxLoadedModels,
    loadedModels: () => cap.loadedModels(),
    get blockedCount() {
      return cap.blockedCount;
    },
  };
}

/** Builds one model's actuator and runner in front of `gateway`. */
function attachPool(
  p: ModelPool,
  gateway: Gateway,
  clock: { nowMs(): number },
  o: AutoscaledPoolOptions,
  only: boolean,
  cap: LoadedModelCap | undefined,
  sleepers: SleeperCount | undefined,
  booter: SleepBooter | undefined,
): void {
  const { settings } = o;
  const served = p.model.served;
  const buffer = gateway.modelBuffer;
  const say = o.models.length === 1 ? o.say : (line: string) => o.say(`${served}: ${line}`);
  p.actuator = new LocalActuator({
    variant: p.model.variant,
    maxInstances: settings.maxInstances,
    launcher: p.launcher,
    clock,
    initial: p.initial,
    slotId: p.idOf,
    log: say,
    // Requests held for a first instance fail with the reason, unless another engine is still coming.
    onStartFailed: (error, active) => {
      if (active === 0) buffer?.fail(served, error.message);
    },
    ...(sleepers === undefined
      ? {}
      : {
          sleep: {
            take: () => sleepers.take(served, settings.maxInstances),
            release: () => sleepers.release(served),
            sleepMaxMs: sleepers.config.sleepMaxMs,
          },
        }),
    backends: {
      add: (id, engine) => gateway.addBackend(o.backendOf(id, engine, p.model) as never),
      setDraining: (id, draining) => void gateway.setDraining(id, draining),
      inFlight: (id) => gateway.view.get(id)?.inFlight ?? 0,
      remove: (id) => void gateway.removeBackend(id),
    },
  });
  p.runner = new LiveControlRunner({
    loop: p.loop as ControlLoop,
    actuator: p.actuator,
    model: served,
    variant: p.model.variant,
    intervalMs: settings.intervalMs,
    objectives: o.objectives,
    clock,
    view: (nowMs) => gateway.view.at(nowMs),
    // The admission queue is the gateway's, not per model: only a lone model's loop counts it.
    queued: () => (buffer?.waiting(served) ?? 0) + (only ? gateway.stats.queued : 0),
    log: say,
    ...(settings.minInstances === 0
      ? {
          scaleToZero: {
            keepAliveMs: () => buffer?.keepAliveMs(served) ?? settings.keepAliveMs,
            ...(settings.prewarm
              ? {
                  prewarm: {
                    startupMs: () => p.actuator?.lastStartupMs,
                    // A forecast alone never evicts: only a free slot under the cap, nobody waiting for one.
                    roomFor: () =>
                      cap === undefined ||
                      (cap.blockedCount === 0 &&
                        cap.loadedModels().length < (settings.maxLoadedModels ?? Number.POSITIVE_INFINITY)),
                  },
                }
              : {}),
            ...(cap === undefined
              ? {}
              : {
                  admit: (nowMs: number) => {
                    const admitted = cap.admit(served, nowMs);
                    // Demand first: boots still launching give way to this start under the cap.
                    if (admitted) booter?.makeRoomFor(served, nowMs);
                    return admitted;
                  },
                  stoppedIdle: (nowMs: number) => cap.unloadedIdle(served, nowMs),
                }),
          },
        }
      : {}),
  });
  if (cap !== undefined) capPool(cap, p, buffer);
}

/** Puts `p`'s model under the cap on loaded models. */
function capPool(cap: LoadedModelCap, p: ModelPool, buffer: Gateway['modelBuffer']): void {
  const served = p.model.served;
  const runner = p.runner as LiveControlRunner;
  const actuator = p.actuator as LocalActuator;
  cap.add({
    model: served,
    loaded: () => runner.loaded,
    inSystem: () => runner.inSystem,
    waiting: () => buffer?.waiting(served) ?? 0,
    lastUsedMs: () => runner.lastUsedMs,
    startupMs: () => actuator.lastStartupMs,
    unload: (reason, nowMs) => runner.unload(reason, nowMs),
    wake: (waiting, nowMs) => runner.wake(waiting, nowMs),
  });
}

/**
 * The gateway's one request tap, handing each request to its model's runner (and its popularity to
 * the cap). An end may turn a model idle: models waiting for the cap are retried just after it (not
 * inside the gateway's own bookkeeping of the request).
 */
function tapByModel(
  pools: ReadonlyMap<string, ModelPool>,
  cap: LoadedModelCap | undefined,
  clock: { nowMs(): number },
  retargeter: Retargeter | undefined,
): RequestTap {
  return {
    arrived: (request, nowMs) => {
      pools.get(request.model)?.runner?.arrived(request, nowMs);
      cap?.arrived(request.model, nowMs);
      retargeter?.arrived(request.model, nowMs);
    },
    firstByte: (request, nowMs) => pools.get(request.model)?.runner?.firstByte(request, nowMs),
    ended: (request, ok, tokens, nowMs) => {
      pools.get(request.model)?.runner?.ended(request, ok, tokens, nowMs);
      if (cap !== undefined && cap.blockedCount > 0) setImmediate(() => cap.retry(clock.nowMs()));
    },
  };
}

/**
 * Configured backends (engines Switchyard does not run): the loop runs on the gateway's traffic and
 * its decisions are only exported as `switchyard_desired_replicas`, for an HPA or KEDA to act on.
 * It sizes the first backend's first model, and of a P/D config that backend's role only (its
 * replicas were every role's instances of the model, labelled with the first one's role).
 */
export function attachExportOnly(
  gateway: Gateway,
  settings: AutoscaleSettings,
  say: (line: string) => void,
): LiveControlRunner {
  const b = gateway.config.backends[0];
  if (b === undefined) throw usage('--autoscaler needs local engines or configured backends', 'autoscaler');
  const served = b.models[0] as string;
  const variant: Variant = { model: perfModelIdOf(b) ?? served, gpu: b.gpu, tp: b.tp, role: b.role };
  const clock = { nowMs: () => performance.now() };
  const actuator = new ExportOnlyActuator(
    variant,
    () => gateway.view.instances.filter((i) => i.models.includes(served) && i.role === variant.role),
    clock.nowMs,
  );
  const loop = createAutoscaler(
    settings.name,
    {
      model: variant.model,
      variants: [variant],
      minReplicas: settings.minInstances,
      maxReplicas: settings.maxInstances,
      intervalMs: settings.intervalMs,
      objectives: gateway.config.slo ?? {},
    },
    settings.params,
  );
  const runner = new LiveControlRunner({
    loop,
    actuator,
    model: served,
    variant,
    intervalMs: settings.intervalMs,
    objectives: gateway.config.slo ?? {},
    clock,
    view: (nowMs) => gateway.view.at(nowMs),
    queued: () => gateway.stats.queued,
    log: say,
  });
  runner.registerMetrics(gateway.metrics.registry);
  gateway.requestTap = runner;
  runner.start();
  say(
    `autoscaler ${settings.name} exports switchyard_desired_replicas for '${served}'${variant.role === 'both' ? '' : ` (its ${variant.role} backends)`} only: the configured backends are not started or stopped by Switchyard (docs/autoscaling.md)`,
  );
  return runner;
}
