import { SwitchyardError } from '../core/errors.ts';
import { chainHash } from '../core/hash.ts';
import type { Request, Slo } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import type { ClusterView } from '../core/view.ts';
import { EngineCore } from '../engine/engine-core.ts';
import { engineBlockHashes } from '../engine/prefix.ts';
import type { EngineConfig, EngineListener, EngineRequest, FinishedRequest } from '../engine/types.ts';
import { kvBlocksThatFit } from '../model/kv.ts';
import { perfModelFor } from '../model/perf.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { type ClusterSpec, SimInstance } from './cluster.ts';
import { EventQueue } from './event-queue.ts';
import { GrowableFloat64 } from './growable.ts';
import {
  downsampleSorted,
  LatencyHistogram,
  latencyStats,
  latencyStatsSorted,
} from './report/percentiles.ts';
import type { InstanceSummary, SimReportData, SimSummary } from './report/types.ts';
import type { RequestSource } from './workload/types.ts';

/** Everything one twin run needs besides the workload. */
export interface SimOptions {
  readonly seed: number;
  readonly cluster: ClusterSpec;
  readonly engine: EngineConfig;
  readonly policy: RoutingPolicy;
  readonly slo: Slo;
  /** A label for reports (the trace or generator). */
  readonly workload: string;
  /** Called every so often with the number of requests that have arrived; for progress bars. */
  readonly onProgress?: (arrived: number, simulatedMs: number) => void;
  /** How many per-request samples the report keeps for CDF plots. */
  readonly cdfPointsMax?: number;
  /** How many time-series points per instance the report keeps at most (older points decimate). */
  readonly seriesPointsMax?: number;
}

/** The outcome of one run. */
export interface SimResult {
  readonly summary: SimSummary;
  readonly report: SimReportData;
  /** A digest of every routing decision (request id and instance), to check determinism cheaply. */
  readonly decisionDigest: string;
}

/** The engine request plus what the twin needs to map it back. */
interface TwinEngineRequest extends EngineRequest {
  readonly source: Request;
  readonly instance: SimInstance;
}

const ARRIVAL = -1;
const SAMPLE = -2;
const PROGRESS_EVERY = 4096;
/** The engine block hashes of a request with no prefix chain: shared, never written. */
const NO_BLOCK_HASHES: readonly number[] = Object.freeze([]);

/**
 * Runs one simulation: requests arrive from `source`, the policy routes each one, engine cores run
 * steps in virtual time. Deterministic for a given seed, source and options.
 */
export function runSimulation(source: RequestSource, options: SimOptions): SimResult {
  const wallStart = process.hrtime.bigint();
  const rng = new Rng(options.seed).fork('routing');
  const policy = options.policy;
  const queue = new EventQueue(4096);
  const metrics = new RunMetrics();
  const instances = buildInstances(options, metrics, policy);
  const view: { nowMs: number; instances: readonly SimInstance[] } = { nowMs: 0, instances };
  const clusterView: ClusterView = view;
  const series = new SeriesRecorder(instances, options.seriesPointsMax ?? 400);

  const iterator = source[Symbol.iterator]();
  let pending: Request | undefined;
  let arrived = 0;
  let nowMs = 0;
  let digest = 0x12345678;

  const pullNext = (): void => {
    const next = iterator.next();
    if (next.done === true) {
      pending = undefined;
      return;
    }
    const request = next.value;
    if (request.arrivalMs < nowMs) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `workload is not sorted by arrival: request '${request.id}' arrives at ${request.arrivalMs} ms, before ${nowMs} ms`,
      );
    }
    pending = request;
    queue.push(request.arrivalMs, ARRIVAL);
  };

  const startStep = (instance: SimInstance): void => {
    const durationMs = instance.engine.startStep(nowMs);
    if (durationMs === undefined) {
      instance.stepEndMs = Number.NaN;
      return;
    }
    instance.stepEndMs = nowMs + durationMs;
    queue.push(instance.stepEndMs, instance.index);
  };

  const arrive = (request: Request): void => {
    arrived++;
    metrics.requests++;
    metrics.inputTokens += request.inputTokens;
    view.nowMs = nowMs;
    const decision = policy.decide(clusterView, request, rng);
    if (decision.kind === 'reject') {
      metrics.rejected++;
      digest = chainHash(digest, 0xffffffff);
      return;
    }
    const instance = findInstance(instances, decision.instanceId);
    digest = chainHash(digest, instance.index);
    const engineRequest: TwinEngineRequest = {
      id: request.id,
      inputTokens: request.inputTokens,
      outputTokens: request.outputTokens,
      arrivalMs: request.arrivalMs,
      blockHashes:
        request.prefix.hashes.length === 0
          ? NO_BLOCK_HASHES
          : engineBlockHashes(request.prefix, request.inputTokens, instance.blockSize),
      source: request,
      instance,
    };
    instance.inFlight++;
    instance.routed++;
    policy.onRouted?.(request, instance.id, nowMs);
    instance.engine.add(engineRequest, nowMs);
    if (Number.isNaN(instance.stepEndMs)) startStep(instance);
  };

  pullNext();
  queue.push(0, SAMPLE);
  while (queue.length > 0) {
    nowMs = queue.peekTime();
    const payload = queue.pop();
    if (payload >= 0) {
      const instance = instances[payload] as SimInstance;
      metrics.nowMs = nowMs;
      instance.engine.finishStep(nowMs);
      startStep(instance);
    } else if (payload === ARRIVAL) {
      const request = pending as Request;
      pullNext();
      arrive(request);
      if (options.onProgress !== undefined && arrived % PROGRESS_EVERY === 0)
        options.onProgress(arrived, nowMs);
    } else {
      series.sample(nowMs);
      // Keep sampling only while something else is still to happen.
      if (queue.length > 0) queue.push(nowMs + series.intervalMs, SAMPLE);
    }
  }
  options.onProgress?.(arrived, nowMs);

  const wallSeconds = Number(process.hrtime.bigint() - wallStart) / 1e9;
  const summary = metrics.summarize(options, instances, queue.popped, wallSeconds);
  const cdfMax = options.cdfPointsMax ?? 2000;
  return {
    summary,
    report: {
      summary,
      samples: {
        ttftMs: downsampleSorted(metrics.sortedTtft(), cdfMax),
        tpotMs: downsampleSorted(metrics.sortedTpot(), cdfMax),
        e2eMs: downsampleSorted(metrics.sortedE2e(), cdfMax),
      },
      series: series.result(),
    },
    decisionDigest: digest.toString(16).padStart(8, '0'),
  };
}

function findInstance(instances: readonly SimInstance[], id: string): SimInstance {
  // Instance ids are `i<index>`, so the common case is a direct lookup.
  const index = Number(id.slice(1));
  const direct = instances[index];
  if (direct !== undefined && direct.id === id) return direct;
  const found = instances.find((x) => x.id === id);
  if (found === undefined)
    throw new SwitchyardError('SY_ERR_NOT_FOUND', `policy picked unknown instance '${id}'`);
  return found;
}

function buildInstances(options: SimOptions, metrics: RunMetrics, policy: RoutingPolicy): SimInstance[] {
  const listener: EngineListener = {
    onFirstToken(request) {
      const twin = request as TwinEngineRequest;
      policy.onFirstToken?.(twin.source, twin.instance.id, metrics.nowMs);
    },
    onFinish(result) {
      const twin = result.request as TwinEngineRequest;
      twin.instance.inFlight--;
      metrics.finish(result, options.slo);
      policy.onCompleted?.(twin.source, twin.instance.id, result.finishMs);
    },
    onReject(request, _reason, nowMs) {
      // The engine can never fit this request's KV: it ends as an explicit rejection.
      const twin = request as TwinEngineRequest;
      twin.instance.inFlight--;
      metrics.rejected++;
      policy.onFailed?.(twin.source, twin.instance.id, nowMs);
    },
    onInterTokenLatency(gapMs, count) {
      metrics.itl.record(gapMs, count);
    },
  };
  const instances: SimInstance[] = [];
  for (const group of options.cluster.groups) {
    const perf = perfModelFor(group.gpu, group.model, group.tp);
    const blocks =
      options.engine.numGpuBlocksOverride ??
      kvBlocksThatFit(
        perf.gpu,
        perf.model,
        group.tp,
        options.engine.gpuMemoryUtilization,
        options.engine.blockSize,
      );
    for (let k = 0; k < group.count; k++) {
      const index = instances.length;
      const engine = new EngineCore(options.engine, perf, blocks, listener);
      instances.push(
        new SimInstance(
          index,
          `i${index}`,
          group.gpu,
          group.model,
          group.tp,
          engine,
          options.engine.blockSize,
        ),
      );
    }
  }
  return instances;
}

/** Per-request and aggregate counters of one run. */
class RunMetrics {
  requests = 0;
  rejected = 0;
  completed = 0;
  inputTokens = 0;
  outputTokens = 0;
  preemptions = 0;
  nowMs = 0;
  lastFinishMs = 0;
  ttftOk = 0;
  tpotOk = 0;
  bothOk = 0;
  readonly ttft = new GrowableFloat64(4096);
  readonly tpot = new GrowableFloat64(4096);
  readonly e2e = new GrowableFloat64(4096);
  readonly queueing = new GrowableFloat64(4096);
  readonly itl = new LatencyHistogram();
  private sorted: { ttft?: Float64Array; tpot?: Float64Array; e2e?: Float64Array } = {};

  finish(result: FinishedRequest, slo: Slo): void {
    const output = result.request.outputTokens;
    const ttftMs = result.firstTokenMs - result.arrivalMs;
    const tpotMs = output > 1 ? (result.finishMs - result.firstTokenMs) / (output - 1) : 0;
    this.completed++;
    this.outputTokens += output;
    this.preemptions += result.preemptions;
    this.ttft.push(ttftMs);
    this.tpot.push(tpotMs);
    this.e2e.push(result.finishMs - result.arrivalMs);
    this.queueing.push(result.firstScheduledMs - result.arrivalMs);
    const ttftMet = ttftMs <= slo.ttftMs;
    const tpotMet = tpotMs <= slo.tpotMs;
    if (ttftMet) this.ttftOk++;
    if (tpotMet) this.tpotOk++;
    if (ttftMet && tpotMet) this.bothOk++;
    if (result.finishMs > this.lastFinishMs) this.lastFinishMs = result.finishMs;
  }

  sortedTtft(): Float64Array {
    this.sorted.ttft ??= Float64Array.from(this.ttft.view()).sort();
    return this.sorted.ttft;
  }
  sortedTpot(): Float64Array {
    this.sorted.tpot ??= Float64Array.from(this.tpot.view()).sort();
    return this.sorted.tpot;
  }
  sortedE2e(): Float64Array {
    this.sorted.e2e ??= Float64Array.from(this.e2e.view()).sort();
    return this.sorted.e2e;
  }

  summarize(
    options: SimOptions,
    instances: readonly SimInstance[],
    events: number,
    wallSeconds: number,
  ): SimSummary {
    const simulatedMs = this.lastFinishMs;
    const simulatedSeconds = simulatedMs / 1000;
    const judged = this.completed + this.rejected;
    let hitTokens = 0;
    let queryTokens = 0;
    let gpuSeconds = 0;
    const perInstance: InstanceSummary[] = instances.map((instance) => {
      const engine = instance.engine;
      hitTokens += engine.prefixHitTokens;
      queryTokens += engine.prefixQueryTokens;
      gpuSeconds += instance.tp * simulatedSeconds;
      return {
        id: instance.id,
        gpu: instance.gpu,
        model: instance.model,
        tp: instance.tp,
        requests: instance.routed,
        utilization: simulatedMs > 0 ? Math.min(1, engine.busyMs / simulatedMs) : 0,
        kvUsageMean: instance.kvUsageSamples > 0 ? instance.kvUsageSum / instance.kvUsageSamples : 0,
        kvUsageMax: instance.kvUsageMax,
        prefixHitRate: engine.prefixHitRate,
        preemptions: engine.preemptions,
      };
    });
    const itl = this.itl;
    return {
      policy: options.policy.name,
      seed: options.seed,
      workload: options.workload,
      instances: instances.length,
      requests: this.requests,
      completed: this.completed,
      rejected: this.rejected,
      ttftMs: latencyStatsSorted(this.sortedTtft()),
      tpotMs: latencyStatsSorted(this.sortedTpot()),
      itlMs: {
        mean: itl.mean(),
        p50: itl.percentile(0.5),
        p90: itl.percentile(0.9),
        p99: itl.percentile(0.99),
      },
      e2eMs: latencyStatsSorted(this.sortedE2e()),
      queueMs: latencyStats(this.queueing.view()),
      slo: { ttftMs: options.slo.ttftMs, tpotMs: options.slo.tpotMs },
      sloAttainment: {
        ttft: judged > 0 ? this.ttftOk / judged : 0,
        tpot: judged > 0 ? this.tpotOk / judged : 0,
        both: judged > 0 ? this.bothOk / judged : 0,
      },
      throughputTokPerS: simulatedSeconds > 0 ? this.outputTokens / simulatedSeconds : 0,
      throughputReqPerS: simulatedSeconds > 0 ? this.completed / simulatedSeconds : 0,
      inputTokens: this.inputTokens,
      outputTokens: this.outputTokens,
      prefixHitRate: queryTokens > 0 ? hitTokens / queryTokens : 0,
      preemptions: this.preemptions,
      gpuSeconds,
      simulatedSeconds,
      events,
      wallSeconds,
      eventsPerWallS: wallSeconds > 0 ? events / wallSeconds : 0,
      perInstance,
    };
  }
}

/**
 * Samples per-instance running, waiting and KV usage over time. When the series grows past its
 * bound it keeps every other point and doubles the interval, so memory stays bounded however long
 * the run.
 */
class SeriesRecorder {
  intervalMs = 1000;
  private readonly tS: number[] = [];
  private readonly running: number[][];
  private readonly waiting: number[][];
  private readonly kv: number[][];

  constructor(
    private readonly instances: readonly SimInstance[],
    private readonly pointsMax: number,
  ) {
    this.running = instances.map(() => []);
    this.waiting = instances.map(() => []);
    this.kv = instances.map(() => []);
  }

  sample(nowMs: number): void {
    this.tS.push(nowMs / 1000);
    for (let i = 0; i < this.instances.length; i++) {
      const instance = this.instances[i] as SimInstance;
      const kvUsage = instance.kvUsage;
      (this.running[i] as number[]).push(instance.running);
      (this.waiting[i] as number[]).push(instance.waiting);
      (this.kv[i] as number[]).push(kvUsage);
      instance.kvUsageSum += kvUsage;
      instance.kvUsageSamples++;
      if (kvUsage > instance.kvUsageMax) instance.kvUsageMax = kvUsage;
    }
    if (this.tS.length >= this.pointsMax) this.decimate();
  }

  private decimate(): void {
    const keepEven = (xs: number[]): void => {
      let w = 0;
      for (let r = 0; r < xs.length; r += 2) xs[w++] = xs[r] as number;
      xs.length = w;
    };
    keepEven(this.tS);
    for (const xs of this.running) keepEven(xs);
    for (const xs of this.waiting) keepEven(xs);
    for (const xs of this.kv) keepEven(xs);
    this.intervalMs *= 2;
  }

  result(): SimReportData['series'] {
    const byId = (rows: number[][]): Record<string, number[]> =>
      Object.fromEntries(this.instances.map((instance, i) => [instance.id, rows[i] as number[]]));
    return { tS: this.tS, running: byId(this.running), waiting: byId(this.waiting), kvUsage: byId(this.kv) };
  }
}
