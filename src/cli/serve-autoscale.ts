/**
 * `switchyard serve --autoscaler NAME`: local engines sized by a control loop. The minimum starts
 * before the gateway (it needs them to know its models); then a LocalActuator adds and drains
 * engines as the loop decides, and a LiveControlRunner ticks the loop on the wall clock from the
 * gateway's own request accounting. Settings come from the config's `autoscaler` block and flags.
 */
import { localEngineLauncher } from '../adapters/engine-launcher.ts';
import { RESTART_POLICY_DEFAULT } from '../adapters/local-engines.ts';
import { checkAutoscaler, createAutoscaler } from '../control/autoscalers/registry.ts';
import { ExportOnlyActuator } from '../control/export-actuator.ts';
import { LiveControlRunner } from '../control/live-runner.ts';
import {
  type EngineLauncher,
  type LaunchedEngine,
  LocalActuator,
  slotId,
} from '../control/local-actuator.ts';
import type { ServiceObjectives, Variant } from '../control/types.ts';
import { SwitchyardError } from '../core/errors.ts';
import { type GatewayConfig, perfModelIdOf } from '../gateway/config.ts';
import type { Gateway } from '../gateway/gateway.ts';

/** The loop's default tick, as in the twin: Knative's 2 s. */
export const AUTOSCALER_INTERVAL_MS_DEFAULT = 2000;

/** What the autoscaled pool runs with, after config and flags. */
export interface AutoscaleSettings {
  readonly name: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly intervalMs: number;
}

/** The flags that touch autoscaling. */
export interface AutoscaleFlags {
  readonly autoscaler?: string;
  readonly minInstances?: number;
  readonly maxInstances?: number;
  readonly autoscalerIntervalMs?: number;
  readonly engines?: number;
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
    for (const f of ['minInstances', 'maxInstances', 'autoscalerIntervalMs'] as const)
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
  if (minInstances < 1)
    throw usage(
      '--min-instances must be at least 1 (live scale-from-zero is not supported)',
      'min-instances',
    );
  const maxInstances = flags.maxInstances ?? block?.maxInstances ?? Math.max(minInstances, defaultMax);
  if (maxInstances < minInstances)
    throw usage(`--max-instances ${maxInstances} is below --min-instances ${minInstances}`, 'max-instances');
  const intervalMs = flags.autoscalerIntervalMs ?? block?.intervalMs ?? AUTOSCALER_INTERVAL_MS_DEFAULT;
  return { name, params, minInstances, maxInstances, intervalMs };
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** How serve describes one local engine as a backend. */
export type BackendOf = (id: string, engine: LaunchedEngine) => Record<string, unknown>;

/** Options of `startAutoscaledPool`. */
export interface AutoscaledPoolOptions {
  readonly settings: AutoscaleSettings;
  readonly engine: 'sim' | 'llama';
  /** Engine flags (model, GPU, time scale). */
  readonly args: readonly string[];
  readonly variant: Variant;
  readonly startTimeoutMs: number;
  readonly objectives: ServiceObjectives;
  readonly backendOf: BackendOf;
  readonly say: (line: string) => void;
}

/** The pool once its minimum runs: backends for the gateway's config, then `attach` to the gateway. */
export interface AutoscaledPool {
  /** The minimum's engines as backends (`engine-0`..). */
  readonly backends: readonly Record<string, unknown>[];
  /** Starts the loop in front of `gateway`. */
  attach(gateway: Gateway): void;
  /** Stops the loop and every engine. */
  close(): Promise<void>;
}

/** Starts the minimum (failing as a whole: a failure stops the rest) and builds the loop. */
export async function startAutoscaledPool(o: AutoscaledPoolOptions): Promise<AutoscaledPool> {
  const { settings, say } = o;
  let actuator: LocalActuator | undefined;
  const launcher: EngineLauncher = localEngineLauncher({
    engine: o.engine,
    args: o.args,
    startTimeoutMs: o.startTimeoutMs,
    restart: RESTART_POLICY_DEFAULT,
    onExit: (index, gaveUp) => {
      if (gaveUp) actuator?.engineLost(index);
    },
  });
  say(
    `starting ${settings.minInstances} local ${o.engine} engine(s) (autoscaler ${settings.name}, up to ${settings.maxInstances})...`,
  );
  const t0 = performance.now();
  const launches = Array.from({ length: settings.minInstances }, (_, k) => launcher.launch(k));
  const settled = await Promise.allSettled(launches);
  const initial = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  const stopInitial = () => Promise.all(initial.map((e) => e.stop().catch(() => {})));
  if (failed !== undefined) {
    await stopInitial();
    throw (failed as PromiseRejectedResult).reason;
  }
  const startupMs = performance.now() - t0;
  let loop: ReturnType<typeof createAutoscaler>;
  try {
    loop = createAutoscaler(
      settings.name,
      {
        model: o.variant.model,
        variants: [o.variant],
        minReplicas: settings.minInstances,
        maxReplicas: settings.maxInstances,
        intervalMs: settings.intervalMs,
        objectives: o.objectives,
        // Measured on this machine: how long the minimum took from spawn to a passing health check.
        startupMs,
      },
      settings.params,
    );
  } catch (error) {
    await stopInitial();
    throw error;
  }
  const backends = initial.map((e, k) => o.backendOf(slotId(k), e));
  let runner: LiveControlRunner | undefined;
  return {
    backends,
    attach(gateway: Gateway): void {
      const clock = { nowMs: () => performance.now() };
      actuator = new LocalActuator({
        variant: o.variant,
        maxInstances: settings.maxInstances,
        launcher,
        clock,
        initial,
        log: (line) => say(line),
        backends: {
          add: (id, engine) => gateway.addBackend(o.backendOf(id, engine) as never),
          setDraining: (id, draining) => void gateway.setDraining(id, draining),
          inFlight: (id) => gateway.view.get(id)?.inFlight ?? 0,
          remove: (id) => void gateway.removeBackend(id),
        },
      });
      runner = new LiveControlRunner({
        loop,
        actuator,
        model: initial[0]?.model ?? o.variant.model,
        variant: o.variant,
        intervalMs: settings.intervalMs,
        objectives: o.objectives,
        clock,
        view: (nowMs) => gateway.view.at(nowMs),
        queued: () => gateway.stats.queued,
        log: (line) => say(line),
      });
      runner.registerMetrics(gateway.metrics.registry);
      gateway.requestTap = runner;
      runner.start();
    },
    async close(): Promise<void> {
      runner?.stop();
      if (actuator !== undefined) await actuator.close();
      else await stopInitial();
    },
  };
}

/**
 * Configured backends (engines Switchyard does not run): the loop runs on the gateway's traffic and
 * its decisions are only exported as `switchyard_desired_replicas`, for an HPA or KEDA to act on.
 * It sizes the first backend's first model.
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
    () => gateway.view.instances.filter((i) => i.models.includes(served)),
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
    `autoscaler ${settings.name} exports switchyard_desired_replicas for '${served}' only: the configured backends are not started or stopped by Switchyard (docs/autoscaling.md)`,
  );
  return runner;
}
