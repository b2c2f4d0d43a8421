/**
 * Live pre-warming: whether a model at zero should be started ahead of its next request, by the
 * same forecast and value the twin's `switchyard` serverless policy uses for a stopped model
 * (src/control/serverless/policies.ts: `keepValue`, PREWARM_VALUE_MIN_DEFAULT,
 * FORECAST_GAPS_MIN_DEFAULT). A start is worth it when the chance of a request before an engine
 * started now could serve it (one start-up plus one decision interval ahead), times the requests a
 * cold start makes wait, is at least `valueMin` (one cold request avoided per start-up).
 *
 * What the twin's plan adds and this leaves out is its idle-GPU account: live, the bound on what a
 * pre-warm costs is the keep-alive (an engine started ahead and not asked for stops after it) and
 * the cap on loaded models (a pre-warm asks the cap like any start from zero). Pure: times come in.
 */
import type { ModelId } from '../core/ids.ts';
import type { ArrivalHistory } from './serverless/forecast.ts';
import {
  FORECAST_GAPS_MIN_DEFAULT,
  keepValue,
  PREWARM_VALUE_MIN_DEFAULT,
  type ServerlessModelView,
} from './serverless/policies.ts';

/** Thresholds of the pre-warm rule (the twin policy's defaults unless given). */
export interface PrewarmParams {
  /** Least value (cold requests avoided per GPU over one start-up) for a start ahead. */
  readonly valueMin?: number;
  /** Arrival gaps the model's history needs before its forecast is trusted. */
  readonly gapsMin?: number;
}

/** What the live runner knows of its model at a tick. */
export interface PrewarmInput {
  readonly model: ModelId;
  readonly arrivals: ArrivalHistory;
  /** Engines starting or ready. */
  readonly active: number;
  /** Requests arrived and not ended (held ones included). */
  readonly inSystem: number;
  /** The model's last arrival or end. */
  readonly lastUsedMs: number;
  /** The last measured start-up (spawn to ready); undefined before any. */
  readonly startupMs: number | undefined;
  /** The runner's decision interval: a start now serves from one start-up and one tick ahead. */
  readonly intervalMs: number;
}

/** The rule's answer: start or not, and the value it weighed (for the log). */
export interface PrewarmVerdict {
  readonly start: boolean;
  readonly value: number;
}

/**
 * Whether to start `m` now (see the file comment). Never for a model with an engine or a request
 * (it is not at rest at zero), nor before one start-up was measured or the history holds `gapsMin`
 * gaps.
 */
export function prewarmVerdict(m: PrewarmInput, nowMs: number, params: PrewarmParams = {}): PrewarmVerdict {
  const gapsMin = params.gapsMin ?? FORECAST_GAPS_MIN_DEFAULT;
  const valueMin = params.valueMin ?? PREWARM_VALUE_MIN_DEFAULT;
  if (m.active > 0 || m.inSystem > 0 || m.startupMs === undefined || m.arrivals.count < gapsMin)
    return { start: false, value: 0 };
  // Asserted, not annotated: the twin's view may grow fields this rule has no live value for.
  const view = {
    id: m.model,
    // A local engine's slot: the live cap counts models, not GPUs.
    gpus: 1,
    active: m.active,
    inSystem: m.inSystem,
    held: 0,
    heldWaitedMs: 0,
    idleMs: Math.max(0, nowMs - m.lastUsedMs),
    lastUsedMs: m.lastUsedMs,
    startupMs: m.startupMs,
    arrivals: m.arrivals,
  } as ServerlessModelView;
  const value = keepValue(view, nowMs, m.intervalMs);
  return { start: value >= valueMin, value };
}
