/**
 * A multi-model workload: many served models (fine-tunes) on a few catalogue bases, the case
 * scale-to-zero serving is about. Model k (served id `m<k>`, zero-padded) gets a share of the
 * traffic ∝ 1 / (k + 1)^s (Zipf), or its own rate. Its arrivals come from its own random stream,
 * one of two ways:
 *
 * - `on-off`: an interrupted Poisson process. The model alternates on and off periods
 *   (exponential, means onMeanS and off_k); while on, requests arrive as a Poisson process at
 *   rate_k / duty_k, so the long-run rate is rate_k. A model's off periods grow as its popularity
 *   falls, off_k = offMeanS × rate_0 / rate_k (with Zipf shares, offMeanS × (k + 1)^s): m00 pauses
 *   for offMeanS (default 30 s) at a time, m63 of 64 at Zipf 1 for 32 min, m999 of 1000 for 8 h.
 * - `servegen`: model k follows the per-window rates and CVs of the k-th busiest ServeGen client
 *   (wrapping when there are more models than clients), scaled so its mean over the replay is
 *   rate_k. ServeGen gives the shape over time (diurnal swings, bursts, idle windows), Zipf or
 *   modelRatesRps the share.
 *
 * A model's arrivals depend only on the seed, its index, its rate and m00's rate (through its off
 * mean), so appending a model to `modelRatesRps` leaves the others' arrivals unchanged; with Zipf
 * shares of a fixed total, a new model takes a share from every other, by design. Lengths are drawn in arrival order from one
 * stream, as every other kind draws them (one sampler, not one per model: an empirical one holds a
 * copy of its trace's column).
 */

import { invalidArgument } from '../core/errors.ts';
import { MinHeap } from '../core/heap.ts';
import type { ModelId } from '../core/ids.ts';
import { NO_PREFIX } from '../core/request.ts';
import type { Rng } from '../core/rng.ts';
import { buildRequest, defaultsOf, type RequestDefaults } from './common.ts';
import { type LengthsLoader, pairSampler } from './lengths.ts';
import {
  checkReplay,
  pickClients,
  SERVEGEN_WINDOW_S,
  type ServegenClient,
  type ServegenData,
  servegenArrivalTimesMs,
} from './servegen.ts';
import type { WorkloadSpecOf } from './spec.ts';
import { limitsOf } from './synthetic.ts';
import type { TwinRequest } from './types.ts';

/** A validated multi-model spec. */
export type MultiModelSpec = WorkloadSpecOf<'multi-model'>;

/**
 * The default bases, assigned by model index modulo 16: 11 of 16 on 7-8B bases (most fine-tunes
 * are of small models, the cheapest to tune and to serve), 4 on a 13B base, 1 on a 34B base. The
 * pattern depends on the index only, so a model keeps its base when models are added. m00, the
 * most popular, is on llama-3.1-8b.
 */
export const DEFAULT_BASE_MIX: readonly ModelId[] = [
  'llama-3.1-8b',
  'qwen2.5-7b',
  'llama-3.1-8b',
  'opt-13b',
  'qwen2.5-7b',
  'llama-2-7b',
  'llama-3.1-8b',
  'opt-13b',
  'qwen2.5-7b',
  'llama-3.1-8b',
  'codellama-34b',
  'llama-2-7b',
  'opt-13b',
  'qwen2.5-7b',
  'llama-3.1-8b',
  'opt-13b',
];

/** One served model of the workload. */
export interface RosterEntry {
  /** The served id requests carry (`request.model`). */
  readonly id: ModelId;
  /** The catalogue model whose size and performance it has. */
  readonly base: ModelId;
}

/** The served id of model k of n: `m` and k zero-padded to the width of n - 1 (m00..m63 for 64). */
export function multiModelId(k: number, n: number): ModelId {
  return `m${String(k).padStart(String(n - 1).length, '0')}`;
}

/** The workload's models in id order, each with its base (hosts build one pool per model from it). */
export function multiModelRoster(
  spec: Pick<MultiModelSpec, 'models'> & { readonly bases?: readonly ModelId[] | undefined },
): readonly RosterEntry[] {
  const bases = spec.bases ?? DEFAULT_BASE_MIX;
  return Array.from({ length: spec.models }, (_, k) => ({
    id: multiModelId(k, spec.models),
    base: bases[k % bases.length] as ModelId,
  }));
}

/** Each model's mean rate (req/s) in id order: modelRatesRps, or rateRps split by Zipf shares. */
export function multiModelRatesRps(
  spec: Pick<MultiModelSpec, 'models' | 'zipfExponent' | 'rateRps' | 'modelRatesRps'>,
): number[] {
  if (spec.modelRatesRps !== undefined) return [...spec.modelRatesRps];
  const weights = Array.from({ length: spec.models }, (_, k) => 1 / (k + 1) ** spec.zipfExponent);
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => ((spec.rateRps as number) * w) / total);
}

/**
 * Mean off period of each model: offMeanS for m00, longer in proportion to how much rarer a model
 * is than m00. Anchored on m00 rather than on the least popular model, so a model appended to the
 * roster does not change the others' off periods.
 */
export function offMeansS(ratesRps: readonly number[], offMeanS: number): number[] {
  const top = ratesRps[0] as number;
  return ratesRps.map((r) => (offMeanS * top) / r);
}

/**
 * Arrival times (ms) of one interrupted Poisson process: periods alternate on/off (exponential,
 * means onMeanS / offMeanS), the first state drawn from the stationary odds, so the process is
 * stationary from t = 0; arrivals at `onRateRps` while on. Stops at endMs.
 */
export function* onOffTimesMs(
  onRateRps: number,
  onMeanS: number,
  offMeanS: number,
  endMs: number,
  rng: Rng,
): Generator<number> {
  let on = rng.next() < onMeanS / (onMeanS + offMeanS);
  for (let startMs = 0; startMs < endMs; on = !on) {
    const periodEndMs = Math.min(endMs, startMs + rng.exponential(1 / (on ? onMeanS : offMeanS)) * 1000);
    if (on) {
      // Poisson arrivals are memoryless, so the process restarts at each on period's start.
      let t = startMs + rng.exponential(onRateRps) * 1000;
      for (; t < periodEndMs; t += rng.exponential(onRateRps) * 1000) yield t;
    }
    startMs = periodEndMs;
  }
}

/** Where a model's arrivals come from, one iterator per model (times in ms, non-decreasing). */
type StreamFactory = (k: number, rateRps: number, rng: Rng) => Iterator<number>;

function onOffStreams(spec: MultiModelSpec, rates: readonly number[]): StreamFactory {
  const offs = offMeansS(rates, spec.offMeanS);
  const endMs = limitsOf(spec).durationMs;
  return (k, rateRps, rng) => {
    const offS = offs[k] as number;
    const onRateRps = (rateRps * (spec.onMeanS + offS)) / spec.onMeanS;
    return onOffTimesMs(onRateRps, spec.onMeanS, offS, endMs, rng);
  };
}

/** A client's mean rate over [fromS, toS), each window counted for the part of it in range. */
function meanRateRps(c: ServegenClient, fromS: number, toS: number): number {
  let requests = 0;
  for (const [i, w] of c.windows.entries()) {
    const next = c.windows[i + 1]?.startS ?? Number.POSITIVE_INFINITY;
    const lo = Math.max(w.startS, fromS);
    const hi = Math.min(w.startS + SERVEGEN_WINDOW_S, next, toS);
    if (hi > lo) requests += w.rateRps * (hi - lo);
  }
  return requests / (toS - fromS);
}

/** The replay's span in the file's seconds. */
function replaySpanS(spec: MultiModelSpec, data: ServegenData): { fromS: number; toS: number } {
  const fromS = data.firstS + spec.startH * 3600;
  const toS = Math.min(data.endS, spec.durationS === undefined ? data.endS : fromS + spec.durationS);
  return { fromS, toS };
}

/**
 * The clients with arrivals in the replay's span, busiest first (ties in file order), each with its
 * mean rate there. Fails when the span holds no arrivals at all.
 */
export function rankedClients(
  spec: MultiModelSpec,
  data: ServegenData,
): { client: ServegenClient; meanRps: number }[] {
  checkReplay(data, { rateScale: 1, startH: spec.startH });
  const { fromS, toS } = replaySpanS(spec, data);
  const ranked = pickClients(data, undefined)
    .map((client) => ({ client, meanRps: meanRateRps(client, fromS, toS) }))
    .filter((c) => c.meanRps > 0)
    .sort((a, b) => b.meanRps - a.meanRps);
  if (ranked.length === 0)
    throw invalidArgument(
      'startH',
      spec.startH,
      `a span of ${data.source} in which some client has requests`,
    );
  return ranked;
}

function servegenStreams(spec: MultiModelSpec, data: ServegenData): StreamFactory {
  const ranked = rankedClients(spec, data);
  const replay = { rateScale: 1, startH: spec.startH, durationS: spec.durationS };
  return (k, rateRps, rng) => {
    const { client, meanRps } = ranked[k % ranked.length] as (typeof ranked)[number];
    const scale = rateRps / meanRps;
    const windows = client.windows.map((w) => ({ ...w, rateRps: w.rateRps * scale }));
    const one: ServegenData = { ...data, clients: [{ id: client.id, windows }] };
    return servegenArrivalTimesMs(one, replay, rng);
  };
}

/** A stream's next arrival in the merge heap. */
interface Next {
  t: number;
  k: number;
}

/**
 * Orders by time, ties to the lower model index: a strict total order (one entry per model), so the
 * merged order is deterministic whatever the heap's layout.
 */
function before(a: Next, b: Next): boolean {
  return a.t < b.t || (a.t === b.t && a.k < b.k);
}

/**
 * The workload's requests in arrival order, ids r0, r1, …; `data` is the ServeGen file, read
 * beforehand (readServegen), when the source is servegen.
 */
export function* multiModelRequests(
  spec: MultiModelSpec,
  rng: Rng,
  load: LengthsLoader,
  data?: ServegenData,
): Generator<TwinRequest> {
  const rates = multiModelRatesRps(spec);
  const streamOf =
    spec.source === 'servegen' ? servegenStreams(spec, data ?? missingData()) : onOffStreams(spec, rates);
  const arrivals = rng.fork('arrivals');
  const lengths = pairSampler(spec.input, spec.output, rng.fork('lengths'), load);
  const base = defaultsOf({ ...spec, model: 'default' });
  const defaults: RequestDefaults[] = multiModelRoster(spec).map((m) => ({ ...base, model: m.id }));
  // Forked by index, not id: the id's padding changes with the number of models.
  const streams = rates.map((r, k) => streamOf(k, r, arrivals.fork(`model ${k}`)));
  const heap = new MinHeap<Next>(before);
  for (const [k, s] of streams.entries()) {
    const r = s.next();
    if (r.done !== true) heap.push({ t: r.value, k });
  }
  const { maxRequests, durationMs } = limitsOf(spec);
  for (let i = 0; i < maxRequests && heap.size > 0; i++) {
    const { t, k } = heap.pop() as Next;
    if (t >= durationMs) return;
    lengths.sample();
    yield buildRequest(
      defaults[k] as RequestDefaults,
      i,
      lengths.inputTokens,
      lengths.outputTokens,
      t,
      NO_PREFIX,
      undefined,
    );
    const r = (streams[k] as Iterator<number>).next();
    if (r.done !== true) heap.push({ t: r.value, k });
  }
}

function missingData(): never {
  throw new Error('multi-model with source servegen needs its ServeGen data read first');
}

/** The same workload with every model's rate multiplied by `k` (goodput sweeps). */
export function scaleMultiModel(spec: MultiModelSpec, k: number): MultiModelSpec {
  return {
    ...spec,
    ...(spec.rateRps !== undefined ? { rateRps: spec.rateRps * k } : {}),
    ...(spec.modelRatesRps !== undefined ? { modelRatesRps: spec.modelRatesRps.map((r) => r * k) } : {}),
  };
}

/** A label for reports: `multi-model 64 models zipf 1 at 20 req/s, on-off 300/1800 s`. */
export function describeMultiModel(spec: MultiModelSpec): string {
  const rate =
    spec.rateRps !== undefined
      ? `zipf ${spec.zipfExponent} at ${spec.rateRps} req/s`
      : `at ${multiModelRatesRps(spec).reduce((a, b) => a + b, 0)} req/s (per-model rates)`;
  const source =
    spec.source === 'servegen'
      ? `servegen ${spec.servegenFile} from ${spec.startH} h`
      : `on-off ${spec.onMeanS}/${spec.offMeanS} s`;
  return `multi-model ${spec.models} models ${rate}, ${source}`;
}
