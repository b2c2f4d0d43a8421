import { assert } from '../core/assert.ts';
import type { ErrorCode } from '../core/errors.ts';
import { SwitchyardError } from '../core/errors.ts';
import { chainHash } from '../core/hash.ts';
import type { KvEvent } from '../core/kv-events.ts';
import type { Request, Slo } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import {
  type ClusterView,
  DEFAULT_SCRAPE_INTERVAL_MS,
  type InstanceRole,
  SIGNAL_STALE_AFTER_SCRAPES,
} from '../core/view.ts';
import { EngineCore } from '../engine-core/engine-core.ts';
import { engineBlockHashesU32 } from '../engine-core/prefix.ts';
import { PrefixForest } from '../engine-core/prefix-forest.ts';
import type { EngineConfig, EngineListener, EngineRequest } from '../engine-core/types.ts';
import { fitsContext } from '../model/context.ts';
import { kvBlocksThatFit } from '../model/kv.ts';
import { perfModelFor } from '../model/perf.ts';
import type { PerfModel } from '../model/types.ts';
import { type BatchJob, BatchTracker } from '../policies/admission/batch.ts';
import type { AdmissionConfigInput } from '../policies/admission/config.ts';
import { createAdmissionController } from '../policies/admission/controller.ts';
import { AdmissionDriver, type AdmissionHost } from '../policies/admission/driver.ts';
import type { AdmissionQueue } from '../policies/admission/types.ts';
import { backoffMs } from '../policies/reliability.ts';
import { isEligible } from '../policies/routing/eligible.ts';
import { PrefixCacheIndex } from '../policies/routing/prefix-cache-index.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { downsampleSorted, LatencyHistogram } from '../stats/percentiles.ts';
import type { RequestSource, TwinRequest } from '../workload/types.ts';
import { type ClusterSpec, SimInstance } from './cluster.ts';
import {
  ControlHost,
  type ControlHostDeps,
  type ControlSettings,
  type InstanceCountPoint,
  type ModelOutcome,
  type PlacementLogEntry,
  type TwinControl,
} from './control-host.ts';
import { EventQueue } from './event-queue.ts';
import {
  type Fault,
  FaultRuntime,
  faultEdges,
  type ReliabilityInput,
  reliabilityWithDefaults,
} from './faults.ts';
import {
  fetchMs,
  type KvStoreOutcome,
  PeerFetches,
  type PeerStore,
  peerStore,
  type TwinEngineOptions,
  tokensToFetch,
} from './kv-store.ts';
import { RunMetrics, SeriesRecorder } from './metrics.ts';
import {
  type Handoff,
  PD_KV_RELEASE_TIMEOUT_MS_DEFAULT,
  PdHandoffs,
  type PdOutcome,
  type PdSettings,
} from './pd-host.ts';
import { PdPoolsHost, type PdPoolsOutcome, type PdPoolsSettings } from './pd-pools.ts';
import { PlacementHost, type PlacementSettings } from './placement-host.ts';
import { ClusterSeriesRecorder } from './report/cluster-series.ts';
import type { BatchJobSummary, SimReportData, SimSummary } from './report/types.ts';
import { ServerlessHost, type ServerlessOutcome, type ServerlessSettings } from './serverless-host.ts';
import { billedEndMs, declaredEndMs, type WorkloadEnd } from './workload-end.ts';

/** Everything one twin run needs besides the workload. */
export interface SimOptions {
  readonly seed: number;
  readonly cluster: ClusterSpec;
  /** Engine options; with `kvStore` the engines fetch prefixes other instances hold (src/twin/kv-store.ts). */
  readonly engine: EngineConfig & TwinEngineOptions;
  /**
   * Engine options per cluster group, in order, in place of `engine` for that group's instances: a
   * group's GPU picks its batch defaults (src/twin/config.ts `engineConfigsFor`). `blockSize` must
   * equal `engine.blockSize` (the shared prefix forest is built at that size).
   */
  readonly engineByGroup?: readonly (EngineConfig & TwinEngineOptions)[] | undefined;
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
  /**
   * Runs an admission queue (priority bands, VTC fairness, limits, shedding) in front of routing,
   * as the live gateway does. Undefined: every request goes straight to routing.
   */
  readonly admission?: AdmissionConfigInput | undefined;
  /** Offline batch jobs, submitted at their `submittedMs`; they need `admission` (defaults apply). */
  readonly batchJobs?: readonly BatchJob[] | undefined;
  /**
   * Receives every routing decision in order: the decision log. It holds no wall-clock field, so the
   * same seed and input give a byte-identical log.
   */
  readonly onDecision?: ((entry: DecisionLogEntry) => void) | undefined;
  /**
   * Engine signals (running, waiting, KV usage, prefix hit rate) reach policies through a scrape
   * every this many ms, as Prometheus scrapes do live; a snapshot older than three intervals falls
   * back to host accounting, as the live view does. Undefined: the live default,
   * DEFAULT_SCRAPE_INTERVAL_MS (75). 0: exact engine signals (an oracle no live gateway has).
   * Host accounting (inFlight, pendingPrefillTokens) is always fresh either way.
   */
  readonly scrapeIntervalMs?: number | undefined;
  /**
   * Takes every scrape tick, also those no decision reads (the twin skips those by default). Only
   * for checking that skipping changes nothing; slower.
   */
  readonly scrapeEveryTick?: boolean | undefined;
  /** Faults to inject (crash, stall, slow scrape; src/twin/faults.ts). None: no fault machinery runs. */
  readonly faults?: readonly Fault[] | undefined;
  /** Retries and health rules under faults; unset fields take the gateway's defaults. */
  readonly reliability?: ReliabilityInput | undefined;
  /**
   * How engine cores keep their prefix caches (undefined: 'runs').
   * - 'runs': runs of blocks over prefix paths shared by all instances (engine-core/run-cache.ts);
   *   a few dozen operations per long prompt instead of a few thousand; decode step times are
   *   remembered per perf model (engine-core/step-memo.ts).
   * - 'blocks': the per-block pool, fed block ids that name each block exactly (node and place),
   *   every step time from the model; the reference 'runs' is tested against (the same results,
   *   byte for byte). It keeps every prefix node of the run (its paths are never handed back).
   * - 'blocks-32bit': the per-block pool keyed by 32-bit chained block hashes, as the twin ran
   *   before 'runs'. Two different prefixes whose hashes collide are one block there (a full trace
   *   has thousands of colliding pairs, a few of which meet in one cache), so its results differ
   *   slightly. A policy that reads KV events always runs this way: only it emits them.
   */
  readonly prefixCache?: PrefixCacheMode | undefined;
  /**
   * Runs a control loop (an autoscaler) over the cluster's instances (src/twin/control-host.ts):
   * the cluster is the pool of `maxInstances`, started, made ready after their start-up time and
   * drained as the loop asks. Undefined: every instance serves from the start, as before.
   */
  readonly control?: ControlSettings | undefined;
  /**
   * Several models on a cluster of nodes, each with its own autoscaler, placed together under a GPU
   * budget (src/twin/placement-host.ts); the cluster must be `placementCluster(placement)`. Not with
   * `control`.
   */
  readonly placement?: PlacementSettings | undefined;
  /** Receives every placement decision-log line (with `placement`), in time order with `onDecision`. */
  readonly onPlacement?: ((entry: PlacementLogEntry) => void) | undefined;
  /**
   * Many models scaled to zero and back by a serverless policy on a few nodes
   * (src/twin/serverless-host.ts); the cluster must be `serverlessCluster(serverless)`. Not with
   * `control` or `placement`.
   */
  readonly serverless?: ServerlessSettings | undefined;
  /**
   * A disaggregated (P/D) cluster (src/twin/pd-host.ts): the cluster's first `prefillInstances`
   * instances prefill, the other `decodeInstances` decode; `policy` routes over the prefill ones.
   * Not with `control`, `placement`, `serverless`, `faults` or batch jobs. Undefined: colocated.
   */
  readonly pd?: PdSettings | undefined;
  /**
   * With `pd`: the prefill and the decode pool each sized by its own control loop
   * (src/twin/pd-pools.ts). The cluster is then every slot of both pools (`pdPoolSlots`), prefill
   * slots first; `pd`'s counts are the pools' sizes at time 0. Undefined: fixed pools.
   */
  readonly pdPools?: PdPoolsSettings | undefined;
  /**
   * Where the workload declares it ends (src/twin/workload-end.ts): a run under a control loop keeps
   * its loops ticking and bills GPU-hours until the later of that and its last completion.
   * Undefined: to the last completion.
   */
  readonly workloadEnd?: WorkloadEnd | undefined;
}

/** How the twin's engine cores keep their prefix caches (SimOptions.prefixCache). */
export type PrefixCacheMode = 'runs' | 'blocks' | 'blocks-32bit';

/** One routing decision: the request, when, and the instance chosen or the rejection code. */
export interface DecisionLogEntry {
  readonly requestId: string;
  readonly atMs: number;
  readonly instance: string | undefined;
  readonly code: ErrorCode | undefined;
}

/** The outcome of one run. */
export interface SimResult {
  readonly summary: SimSummary;
  readonly report: SimReportData;
  /** A digest of every routing decision (request and instance), to check determinism cheaply. */
  readonly decisionDigest: string;
  /**
   * With `control`: GPU-hours billed, each instance from its start to its release or `billedUntilS`,
   * whichever is first.
   */
  readonly gpuHours?: number;
  /**
   * With `control`: where the bills (and `instancesOverTime`) end, s: the later of the last
   * completion and the workload's declared end (SimOptions.workloadEnd).
   */
  readonly billedUntilS?: number;
  /** With `control`: instance counts by phase and the loop's wish, sampled at its ticks. */
  readonly instancesOverTime?: readonly InstanceCountPoint[];
  /** With `control`: instances started after time 0. */
  readonly coldStarts?: number;
  /** With `placement`: each model's figures. */
  readonly models?: readonly ModelOutcome[];
  /** With `placement`: the first placement decision-log lines (bounded). */
  readonly placementLog?: readonly PlacementLogEntry[];
  /** With `serverless`: cold and warm TTFT, evictions, pre-warms, loads per tier. */
  readonly serverless?: ServerlessOutcome;
  /** With `pd`: the transfers' figures. */
  readonly pd?: PdOutcome;
  /** With `pdPools`: each pool's GPU-hours, counts over time and scale lines. */
  readonly pdPools?: PdPoolsOutcome;
  /** With an engine `kvStore`: its fetches (also in `summary.kvStore`, so in the run's JSON). */
  readonly kvStore?: KvStoreOutcome;
}

/** The engine request plus what the twin needs to map it back. */
interface TwinEngineRequest extends EngineRequest {
  readonly source: Request;
  readonly instance: SimInstance;
  readonly offline: boolean;
  /** No first token seen yet: its input still counts in the instance's pendingPrefillTokens. */
  prefillPending: boolean;
  /**
   * Prompt tokens the host counts in the instance's pendingPrefillTokens for this attempt: the prompt,
   * or 0 for a P/D decode attempt whose KV is transferred (it prefills nothing there), as the live
   * gateway counts it (src/gateway/pd/pd-exchange.ts attemptPrefillTokens).
   */
  readonly hostPrefillTokens: number;
  /** Attempts made before this one (0: the first), and the instances they went to. */
  readonly attempt: number;
  readonly tried: readonly string[];
  /** In a P/D run: which half of the request this is; undefined when colocated. */
  readonly pdPhase: 'prefill' | 'decode' | undefined;
}

/** What a P/D hand-off carries besides the request. */
interface PdPayload {
  readonly offline: boolean;
  readonly attempt: number;
  /** The prefill instance (index), which holds the request's KV blocks until the transfer ends. */
  readonly prefill: number;
}

const ARRIVAL = -1;
const SAMPLE = -2;
const SCRAPE = -3;
const WAKE = -4;
const BATCH_SUBMIT = -5;
const FAULT_EDGE = -6;
const HEALTH_CHECK = -7;
const RETRY = -8;
const CONTROL = -9;
const PD_TRANSFER = -10;
const KV_FETCH = -11;
const PD_KV_RELEASE = -12;
const NONE_TRIED: readonly string[] = Object.freeze([]);
const PROGRESS_EVERY = 4096;
/** The host times one decide call in this many. */
const DECISION_TIMING_EVERY = 8;
/** The engine block hashes of a request with no prefix chain: shared, never written. */
const NO_BLOCK_HASHES: readonly number[] = Object.freeze([]);

/**
 * Runs one simulation: requests arrive from `source`, optionally wait in the admission queue, the
 * policy routes each one, engine cores run steps in virtual time. Deterministic for a given seed,
 * source and options.
 */
export function runSimulation(source: RequestSource, options: SimOptions): SimResult {
  return new Twin(source, options).run();
}

/** One run's state. Private to this module: `runSimulation` is the interface. */
class Twin {
  private readonly wallStart = process.hrtime.bigint();
  private readonly rng: Rng;
  private readonly policy: RoutingPolicy;
  private readonly queue = new EventQueue(4096);
  private readonly metrics = new RunMetrics();
  private readonly instances: SimInstance[];
  /** The view policies read; its `nowMs` is also the clock instances judge signal age by. */
  private readonly view: { nowMs: number; instances: readonly SimInstance[] } = { nowMs: 0, instances: [] };
  private readonly series: SeriesRecorder;
  private readonly clusterSeries: ClusterSeriesRecorder;
  private readonly iterator: Iterator<TwinRequest>;
  private readonly admission: AdmissionQueue | undefined;
  /** The shared admission drive loop (the gateway runs the same one); undefined without admission. */
  private readonly driver: AdmissionDriver | undefined;
  private readonly batches: BatchTracker | undefined;
  private readonly jobs: readonly BatchJob[];
  private readonly scrapeIntervalMs: number;
  private pending: Request | undefined;
  private nextJob = 0;
  private arrived = 0;
  /** The latest arrival of the workload's source, ms. */
  private lastArrivalMs = 0;
  private nowMs = 0;
  private digest = 0x12345678;
  private nextSampleMs = 0;
  private nextScrapeMs = Number.POSITIVE_INFINITY;
  private lastScrapeMs = 0;
  private readonly rejectedByCode = new Map<ErrorCode, number>();
  /** Accepted requests that failed (held too long, upstream), by the gateway's reason (failAccepted). */
  private readonly failedByReason = new Map<string, number>();
  /** Of failedByReason's upstream_4xx: those whose whole KV needed more blocks than the engine holds. */
  private refusedPastKvCache = 0;
  /** Wall time of every DECISION_TIMING_EVERY-th decide call, in microseconds (host-side timing). */
  private readonly decideUs = new LatencyHistogram();
  private decisions = 0;
  /** Fault state; undefined when the run injects none (then nothing below costs anything). */
  private readonly faults: FaultRuntime<TwinEngineRequest> | undefined;
  private readonly faultCount: number;
  private readonly jitterRng: Rng;
  /** The prefix paths requests' blocks are named by; undefined with 32-bit hashes. */
  private readonly forest: PrefixForest | undefined;
  private readonly prefixMode: PrefixCacheMode;
  /** The control loops' host; undefined without `control` or `placement` (then nothing below costs anything). */
  private readonly control: TwinControl | undefined;
  /** P/D hand-offs; undefined when colocated (then nothing below costs anything). */
  private readonly pd: PdHandoffs<PdPayload> | undefined;
  /** The decode-role instances the P/D decode pick sees (their own view, as each role's pool has). */
  private readonly decodeView: { nowMs: number; instances: readonly SimInstance[] } = {
    nowMs: 0,
    instances: [],
  };
  private readonly pdRng: Rng;
  /**
   * With a conditional rule (`pd.conditional`) or a pair policy deciding at arrival
   * (`pd.decodeAtArrival`): the decode instance (index) each remotely prefilled request was given at
   * its arrival, until its prefill ends; undefined otherwise.
   */
  private readonly pdDecodeAt: Map<string, number> | undefined;
  /**
   * Prefill KV no decode leg will read (its decode refused or rejected), freed at `atMs`: the prefill
   * engine's release timeout after the refusal. In time order (one timeout, pushed as time goes on);
   * bounded, since each entry holds at least one of the prefill pool's blocks.
   */
  private readonly pdAbandoned: { atMs: number; prefill: number; requestId: string }[] = [];
  private pdAbandonedHead = 0;
  /** With a rule: the router's learned index of what each decode instance caches (its estimate). */
  private readonly decodePrefixes: PrefixCacheIndex | undefined;
  /** With a rule: the perf model and per-step token budget the rule estimates the decode side with. */
  private pdPerf: PerfModel | undefined;
  /** Each instance's KV store connector (undefined: none); undefined when no engine has one. */
  private readonly stores: readonly (PeerStore | undefined)[] | undefined;
  /** Prefix fetches in flight and their counts; undefined when no engine has a store. */
  private readonly fetches: PeerFetches<TwinEngineRequest> | undefined;
  /**
   * Each prefix fetch in flight and the instance it reads from: a fetch whose holder crashes fails
   * (the request recomputes); one that ends or whose own engine crashes leaves.
   */
  private readonly fetchHolders = new Map<TwinEngineRequest, SimInstance>();

  constructor(
    source: RequestSource,
    private readonly options: SimOptions,
  ) {
    this.rng = new Rng(options.seed).fork('routing');
    this.policy = options.policy;
    this.scrapeIntervalMs = options.scrapeIntervalMs ?? DEFAULT_SCRAPE_INTERVAL_MS;
    this.prefixMode =
      options.policy.onKvEvent !== undefined ? 'blocks-32bit' : (options.prefixCache ?? 'runs');
    this.forest = this.prefixMode === 'blocks-32bit' ? undefined : new PrefixForest(options.engine.blockSize);
    this.pd = this.buildPd();
    this.pdRng = new Rng(options.seed).fork('pd-routing');
    this.instances = this.buildInstances();
    this.view.instances = this.instances;
    if (this.pd !== undefined) {
      // The run's policy routes over the prefill role's pool; the decode pick has its own.
      this.view.instances = this.instances.filter((i) => i.role === 'prefill');
      this.decodeView.instances = this.instances.filter((i) => i.role === 'decode');
    }
    const conditional = this.pd?.settings.conditional !== undefined;
    this.pdDecodeAt = conditional || this.pd?.settings.decodeAtArrival === true ? new Map() : undefined;
    this.decodePrefixes = conditional ? new PrefixCacheIndex() : undefined;
    this.decodePrefixes?.observe(this.decodeView as ClusterView);
    this.stores = this.buildStores();
    this.fetches =
      this.stores === undefined
        ? undefined
        : new PeerFetches(
            this.instances.map((i) => i.id),
            this.stores.find((x) => x !== undefined)?.link.name ?? '',
          );
    this.control = this.buildControl();
    this.series = new SeriesRecorder(this.instances, options.seriesPointsMax ?? 400);
    this.clusterSeries = new ClusterSeriesRecorder(options.seriesPointsMax ?? 400);
    this.iterator = source[Symbol.iterator]();
    this.jobs = [...(options.batchJobs ?? [])].sort((a, b) => a.submittedMs - b.submittedMs);
    const needsAdmission = options.admission !== undefined || this.jobs.length > 0;
    // The gate bounds instances with stale signals by host accounting, as the gateway's does.
    this.admission = needsAdmission
      ? createAdmissionController(options.admission ?? {}, {
          signalStaleAfterMs: SIGNAL_STALE_AFTER_SCRAPES * this.scrapeIntervalMs,
        })
      : undefined;
    this.batches = this.jobs.length > 0 ? new BatchTracker() : undefined;
    this.jitterRng = new Rng(options.seed).fork('retry-jitter');
    const faults = options.faults ?? [];
    this.faultCount = faults.length;
    const ids = this.instances.map((i) => i.id);
    const reliability = reliabilityWithDefaults(options.reliability);
    this.faults =
      faults.length === 0
        ? undefined
        : new FaultRuntime(faultEdges(faults, ids), reliability, this.instances.length);
    this.driver =
      this.admission === undefined
        ? undefined
        : new AdmissionDriver(this.admission, this.admissionHost(), this.batches);
  }

  run(): SimResult {
    const queue = this.queue;
    this.pullNext();
    queue.push(0, SAMPLE);
    if (this.control !== undefined) {
      this.control.begin();
      this.armControl();
    }
    if (this.faults !== undefined) {
      queue.push(this.faults.nextEdgeMs, FAULT_EDGE);
      this.faults.nextHealthMs = 0;
      queue.push(0, HEALTH_CHECK);
    }
    if (this.jobs.length > 0) queue.push((this.jobs[0] as BatchJob).submittedMs, BATCH_SUBMIT);
    if (this.scrapeIntervalMs > 0) {
      for (const instance of this.instances) instance.scrape(0);
      this.armScrape();
    }
    // The time of the last event other than an abandoned KV's release: a release after every answer
    // changes nothing but the freed blocks, so the run ends at the event before it, as live.
    let lastMs = 0;
    while (queue.length > 0) {
      this.nowMs = queue.peekTime();
      const payload = queue.pop();
      if (payload !== PD_KV_RELEASE) lastMs = this.nowMs;
      if (payload >= 0) this.stepEnded(this.instances[payload] as SimInstance);
      else if (payload === PD_KV_RELEASE) this.abandonedKvDue();
      else if (payload === SAMPLE) this.sample();
      else if (payload === SCRAPE) this.scrape();
      else if (payload === HEALTH_CHECK) this.healthCheck();
      else if (payload === PD_TRANSFER) this.transfersArrived();
      else if (payload === KV_FETCH) this.fetchesEnded();
      else {
        // The events after which a routing decision may come sooner than the next armed scrape.
        if (payload === ARRIVAL) this.arrival();
        else if (payload === WAKE) (this.driver as AdmissionDriver).wake();
        else if (payload === FAULT_EDGE) this.faultEdge();
        else if (payload === RETRY) this.retry();
        else if (payload === CONTROL) this.controlEvent();
        else this.submitBatch();
        this.armScrape();
      }
    }
    this.nowMs = lastMs;
    this.options.onProgress?.(this.arrived, this.nowMs);
    return this.result();
  }

  /**
   * The earliest time something outside one instance can happen: an arrival, a sample, a scrape,
   * an admission wake-up or a batch submission. Until then instances are independent, so one may
   * run several steps in a row without going through the event queue.
   */
  private barrierMs(): number {
    let t = this.pending !== undefined ? this.pending.arrivalMs : Number.POSITIVE_INFINITY;
    if (this.nextSampleMs < t) t = this.nextSampleMs;
    if (this.nextScrapeMs < t) t = this.nextScrapeMs;
    const wakeMs = this.driver?.wakeAtMs ?? Number.POSITIVE_INFINITY;
    if (wakeMs < t) t = wakeMs;
    if (this.nextJob < this.jobs.length) t = Math.min(t, (this.jobs[this.nextJob] as BatchJob).submittedMs);
    const faults = this.faults;
    if (faults !== undefined) t = Math.min(t, faults.nextEdgeMs, faults.nextHealthMs, faults.nextRetryMs);
    if (this.control !== undefined) t = Math.min(t, this.control.nextEventMs);
    if (this.pd !== undefined) t = Math.min(t, this.pd.nextEndMs, this.prefillStepEndMs());
    // An abandoned KV's release may let a prefill instance held up for blocks start again.
    const abandoned = this.pdAbandoned[this.pdAbandonedHead];
    if (abandoned !== undefined && abandoned.atMs < t) t = abandoned.atMs;
    // A fetched prefix's request joins its engine then.
    if (this.fetches !== undefined) t = Math.min(t, this.fetches.nextEndMs);
    return t;
  }

  /**
   * The earliest step end of a prefill instance: a prefill may end there and its transfer reach a
   * decode instance soon after, so no decode instance fuses steps past it.
   */
  private prefillStepEndMs(): number {
    let t = Number.POSITIVE_INFINITY;
    for (const instance of this.view.instances) if (instance.stepEndMs < t) t = instance.stepEndMs;
    return t;
  }

  private stepEnded(instance: SimInstance): void {
    const engine = instance.engine;
    if (this.faults !== undefined && this.nowMs < (this.faults.stalledUntilMs[instance.index] as number)) {
      // A stalled engine makes no progress: its step ends when the stall does.
      instance.stepEndMs = this.faults.stalledUntilMs[instance.index] as number;
      this.queue.push(instance.stepEndMs, instance.index);
      return;
    }
    let t = this.nowMs;
    engine.finishStep(t);
    // With work queued for admission, a finish may release it to any instance: stay in event order.
    // A decode instance with hand-offs waiting for blocks is looked at after every step.
    const barrier =
      (this.admission !== undefined && this.admission.queued > 0) ||
      (this.pd !== undefined && this.pd.waitingAt(instance.index) > 0)
        ? t
        : this.barrierMs();
    for (;;) {
      // Up to the barrier the core may fuse decode-only steps (no one can add, abort or look).
      const durationMs = engine.startStep(t, barrier);
      if (durationMs === undefined) {
        instance.stepEndMs = Number.NaN;
        break;
      }
      // The core's own end: a fused step's sub-steps summed one by one, not t + durationMs.
      const end = engine.stepEndMs;
      instance.stepEndMs = end;
      if (end >= barrier) {
        this.queue.push(end, instance.index);
        break;
      }
      // Nothing else can happen before this step ends: finish it here (the same work, one less event).
      this.queue.popped++;
      t = end;
      engine.finishStep(t);
    }
    if (this.admission !== undefined && this.admission.queued > 0) this.admit();
    if (this.pd !== undefined && instance.role === 'decode') this.startTransfers(instance);
  }

  private pullNext(): void {
    const next = this.iterator.next();
    if (next.done === true) {
      this.pending = undefined;
      return;
    }
    const request = next.value;
    if (request.arrivalMs < this.nowMs) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `workload is not sorted by arrival: request '${request.id}' arrives at ${request.arrivalMs} ms, before ${this.nowMs} ms`,
      );
    }
    this.pending = request;
    this.queue.push(request.arrivalMs, ARRIVAL);
  }

  private arrival(): void {
    const request = this.pending as Request;
    this.pullNext();
    this.arrived++;
    this.lastArrivalMs = request.arrivalMs;
    this.metrics.requests++;
    this.metrics.inputTokens += request.inputTokens;
    if (this.control !== undefined && !this.isOffline(request)) this.control.onArrival(request, this.nowMs);
    const driver = this.driver;
    if (driver === undefined) {
      this.route(request, this.isOffline(request));
    } else {
      const verdict = driver.offer(request, () => this.route(request, this.isOffline(request)));
      if (verdict.kind === 'reject') this.reject(request, verdict.code, this.isOffline(request));
      this.admit();
    }
    const onProgress = this.options.onProgress;
    if (onProgress !== undefined && this.arrived % PROGRESS_EVERY === 0) onProgress(this.arrived, this.nowMs);
  }

  /** What the shared admission driver asks of the twin: its clock, view, routing and event queue. */
  private admissionHost(): AdmissionHost {
    return {
      nowMs: () => this.nowMs,
      view: (nowMs) => {
        this.view.nowMs = nowMs;
        return this.view as ClusterView;
      },
      send: (request) => this.route(request, this.isOffline(request)),
      reject: (rejection) =>
        this.reject(rejection.request, rejection.code, this.isOffline(rejection.request)),
      armWake: (atMs, nowMs) => {
        // Never in the past, and never twice at one time.
        const wakeMs = Math.max(atMs, nowMs + 1e-6);
        this.queue.push(wakeMs, WAKE);
        return wakeMs;
      },
    };
  }

  private admit(): void {
    (this.driver as AdmissionDriver).drain();
  }

  /** Batch-job requests carry a negative priority (the offline band); their metrics stay apart. */
  private isOffline(request: Request): boolean {
    return request.priority < 0;
  }

  private submitBatch(): void {
    const job = this.jobs[this.nextJob++] as BatchJob;
    const tracker = this.batches as BatchTracker;
    const result = tracker.submit(job);
    if (result.kind === 'reject')
      throw new SwitchyardError(result.code, `batch job '${job.id}': ${result.reason}`);
    if (this.nextJob < this.jobs.length) {
      this.queue.push(Math.max(this.nowMs, (this.jobs[this.nextJob] as BatchJob).submittedMs), BATCH_SUBMIT);
    }
    this.admit();
  }

  /**
   * Routes a request (attempt `attempt`, after failing on `tried`); false when the policy rejected
   * it or the engine picked refused it (already counted). Under faults the instance picked may be
   * down: the attempt fails to connect and is retried or failed, and the request still counts as sent.
   */
  private route(request: Request, offline: boolean, attempt = 0, tried = NONE_TRIED): boolean {
    this.view.nowMs = this.nowMs;
    // A controlled model with no ready instance holds the request until one is (scale from zero).
    if (attempt === 0 && this.control?.hold(request, offline, this.nowMs) === true) return true;
    // Conditional P/D, or a pair deciding at arrival: the decode side gets the request first.
    const decodeAt = this.pdDecodeAt;
    if (decodeAt !== undefined && !decodeAt.has(request.id)) return this.routeConditional(request, offline);
    // The host times the policy (every few decisions, so timing costs nothing noticeable).
    const timed = this.decisions++ % DECISION_TIMING_EVERY === 0;
    const t0 = timed ? performance.now() : 0;
    const view = tried.length === 0 ? (this.view as ClusterView) : this.retryView(request, tried);
    const decision = this.policy.decide(view, request, this.rng);
    if (timed) this.decideUs.record((performance.now() - t0) * 1000);
    const onDecision = this.options.onDecision;
    if (decision.kind === 'reject') {
      this.digest = chainHash(this.digest, 0xffffffff);
      onDecision?.({ requestId: request.id, atMs: this.nowMs, instance: undefined, code: decision.code });
      this.reject(request, decision.code, offline);
      return false;
    }
    const instance = findInstance(this.instances, decision.instanceId);
    this.digest = chainHash(this.digest, instance.index);
    onDecision?.({ requestId: request.id, atMs: this.nowMs, instance: instance.id, code: undefined });
    const faults = this.faults;
    if (faults !== undefined && (faults.down[instance.index] as number) > 0) {
      this.connectFailed(request, offline, instance, attempt, tried);
      return true;
    }
    // Admission hands back the object the workload made: a TwinRequest, whose true length only the engine reads.
    // A P/D prefill runs as a request of one output token (vLLM's proxy sends max_tokens 1).
    const outputTokens = this.pd === undefined ? (request as TwinRequest).trueOutputTokens : 1;
    // The engine checks the request before any work: past its model's context it answers 400. The
    // live client (bench --workload, a trace replay) sends the output length as max_tokens.
    if (!fitsContext(instance.contextTokensMax, request.inputTokens, outputTokens)) {
      instance.routed++;
      this.policy.onRouted?.(request, instance.id, this.nowMs);
      engineRefusalHooks(this.policy, request, instance.id, this.nowMs, this.pd !== undefined);
      this.refusedByEngine(request, offline);
      return false;
    }
    const prefix = this.prefixOf(request, instance);
    // With a KV store the engine may load a longer prefix another instance holds (src/twin/kv-store.ts).
    const fetch = this.fetches === undefined ? undefined : this.planFetch(request, instance, prefix);
    const engineRequest: TwinEngineRequest = {
      id: request.id,
      inputTokens: request.inputTokens,
      outputTokens,
      arrivalMs: request.arrivalMs,
      priority: request.priority,
      ...prefix,
      ...(fetch !== undefined ? { importedTokens: fetch.importedTokens } : {}),
      source: request,
      instance,
      offline,
      prefillPending: true,
      hostPrefillTokens: request.inputTokens,
      attempt,
      tried,
      pdPhase: this.pd === undefined ? undefined : 'prefill',
      // vLLM's prefill keeps the KV blocks until the decode side has read them (released in transfersArrived).
      holdKvAfterFinish: this.pd !== undefined,
    };
    instance.sent(request.inputTokens);
    instance.routed++;
    this.policy.onRouted?.(request, instance.id, this.nowMs);
    faults?.live[instance.index]?.add(engineRequest);
    if (fetch !== undefined) {
      // Held, its blocks reserved, while the KV loads (vLLM's WAITING_FOR_REMOTE_KVS); it joins the engine after.
      const endMs = this.nowMs + fetch.ms;
      (this.fetches as PeerFetches<TwinEngineRequest>).start(
        { endMs, request: engineRequest, instance: instance.index },
        fetch.tokens,
        fetch.ms,
      );
      instance.fetching++;
      this.fetchHolders.set(engineRequest, fetch.holder);
      this.queue.push(endMs, KV_FETCH);
      return true;
    }
    instance.engine.add(engineRequest, this.nowMs);
    if (Number.isNaN(instance.stepEndMs)) this.stepEndedIdle(instance);
    return true;
  }

  // ---- prefix fetches from a KV store (src/twin/kv-store.ts) ----

  /** Each instance's store connector from its group's engine options; undefined when none has one. */
  private buildStores(): (PeerStore | undefined)[] | undefined {
    const options = this.options;
    const stores: (PeerStore | undefined)[] = [];
    let any = false;
    for (const [g, group] of options.cluster.groups.entries()) {
      const kvStore = (options.engineByGroup?.[g] ?? options.engine).kvStore;
      const perf =
        kvStore === undefined ? undefined : perfModelFor(group.gpu, group.base ?? group.model, group.tp);
      for (let k = 0; k < group.count; k++) {
        stores.push(
          kvStore === undefined || perf === undefined
            ? undefined
            : peerStore(kvStore, perf.model, group.tp, options.engine.blockSize),
        );
      }
      any ||= kvStore !== undefined;
    }
    if (!any) return undefined;
    // A control loop or P/D pools start and stop slots of the groups above, so each slot's connector
    // is built here once. Placement and serverless move models across nodes and GPUs mid-run.
    if (options.placement !== undefined || options.serverless !== undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        'an engine kvStore runs on a fixed or autoscaled cluster (colocated `control` or P/D `pdPools`), ' +
          'not with placement or serverless: their instances come and go per model and node, ' +
          'and a store following them is not modelled',
      );
    // P/D (Mooncake's design): prefill instances fetch from each other; a decode instance receives
    // every prompt token but the last by transfer, so a store there would have nothing to load.
    return stores.map((store, i) => (this.instances[i]?.role === 'decode' ? undefined : store));
  }

  /**
   * What the engine of `instance` would load for `request` from its store: the longest prefix any
   * other instance of the model caches now, past the local hit by at least the store's `minTokens`,
   * its blocks reserved (vLLM allocates them before the load). Undefined when nothing is fetched
   * (too short a gain, or too few free blocks: counted as `noRoom`, the engine computes it).
   */
  private planFetch(
    request: Request,
    instance: SimInstance,
    prefix: Pick<EngineRequest, 'blockHashes' | 'prefixPath'>,
  ): { importedTokens: number; tokens: number; ms: number; holder: SimInstance } | undefined {
    const store = (this.stores as readonly (PeerStore | undefined)[])[instance.index];
    if (store === undefined || request.prefix.hashes.length === 0 || cannotFit(request, instance))
      return undefined;
    let remote = 0;
    let holder: SimInstance | undefined;
    const down = this.faults?.down;
    // The store's members are the instances serving now: the policies' view (every instance of a
    // fixed cluster, a pool's ready and draining ones under autoscaling). A stopped instance has left
    // it, as a Mooncake node's objects leave the store's metadata when it unmounts its segment; a
    // starting one has an empty cache.
    for (const other of this.view.instances) {
      if (other === instance || other.model !== instance.model || other.base !== instance.base) continue;
      // P/D: only the prefill pool's caches are the store's (all 'both' when colocated).
      if (other.role !== instance.role) continue;
      if (down !== undefined && (down[other.index] as number) > 0) continue;
      const held = other.engine.cachedPrefixTokens(prefix);
      if (held > remote) {
        remote = held;
        holder = other;
      }
    }
    if (holder === undefined) return undefined;
    const local = instance.engine.cachedPrefixTokens(prefix);
    const tokens = tokensToFetch(store, request.inputTokens, local, remote);
    if (tokens === 0) return undefined;
    const importedTokens = Math.min(remote, request.inputTokens - 1);
    const bs = instance.blockSize;
    const blocks = Math.ceil(importedTokens / bs) - Math.floor((importedTokens - tokens) / bs);
    if (!instance.engine.reserveImport(request.id, blocks)) {
      (this.fetches as PeerFetches<TwinEngineRequest>).noRoom++;
      return undefined;
    }
    return { importedTokens, tokens, ms: fetchMs(store, tokens, holder.tp), holder };
  }

  /** Fetches that ended: each request joins its engine with the fetched prefix's KV in place. */
  private fetchesEnded(): void {
    const fetches = this.fetches as PeerFetches<TwinEngineRequest>;
    for (const { request } of fetches.takeEnded(this.nowMs)) {
      const instance = request.instance;
      // Its engine crashed meanwhile (the crash gave the reservation back: it was retried or failed),
      // or its holder did (it joined its engine to recompute).
      if (!this.fetchHolders.delete(request)) continue;
      instance.fetching--;
      instance.engine.add(request, this.nowMs);
      if (Number.isNaN(instance.stepEndMs)) this.stepEndedIdle(instance);
    }
  }

  /** The engine's view of a request's prefix: a forest path for run-length caches, else block hashes. */
  private prefixOf(
    request: Request,
    instance: SimInstance,
  ): Pick<EngineRequest, 'blockHashes' | 'prefixPath'> {
    if (request.prefix.hashes.length === 0) return { blockHashes: NO_BLOCK_HASHES };
    const forest = this.forest;
    if (forest === undefined) {
      return { blockHashes: engineBlockHashesU32(request.prefix, request.inputTokens, instance.blockSize) };
    }
    const prefixPath = forest.path(request.prefix, request.inputTokens);
    // The per-block reference never hands paths back: their nodes, and so the ids, stay unique.
    if (this.prefixMode === 'blocks') return { blockHashes: forest.blockIds(prefixPath) };
    return { blockHashes: NO_BLOCK_HASHES, prefixPath };
  }

  // ---- faults and the reliability rules (the gateway's: retry before the first token, ejection) ----

  /** A retry goes elsewhere while anywhere else can take it; else anywhere (as the gateway's pick). */
  private retryView(request: Request, tried: readonly string[]): ClusterView {
    const rest = this.instances.filter((i) => !tried.includes(i.id) && isEligible(i, request.model));
    return rest.length > 0 ? { nowMs: this.nowMs, instances: rest } : (this.view as ClusterView);
  }

  /** An attempt found its instance down: the connection is refused, a health strike, then retry or fail. */
  private connectFailed(
    request: Request,
    offline: boolean,
    instance: SimInstance,
    attempt: number,
    tried: readonly string[],
  ): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    this.policy.onRouted?.(request, instance.id, this.nowMs);
    this.policy.onFailed?.(request, instance.id, this.nowMs);
    faults.connectFailures++;
    this.healthVerdict(instance, false);
    this.retryOrFail(request, offline, attempt, [...tried, instance.id]);
  }

  /** Schedules another attempt after the gateway's backoff, or fails the request when none is left. */
  private retryOrFail(request: Request, offline: boolean, attempt: number, tried: readonly string[]): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    if (attempt >= faults.config.retries) {
      this.failRequest(request, offline);
      return;
    }
    const atMs = this.nowMs + backoffMs(attempt, faults.config, this.jitterRng);
    faults.scheduleRetry(request, offline, atMs, attempt + 1, tried);
    this.queue.push(atMs, RETRY);
  }

  /** A retry's backoff is over: route it again, away from the instances it failed on. */
  private retry(): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    const pending = faults.retries.pop();
    if (pending === undefined) return;
    const { request: source, offline } = pending;
    if (!this.route(source, offline, pending.attempt, pending.tried)) {
      // The policy refused it (counted as a rejection); admission had released it, so it failed.
      this.admission?.onFailed(source, this.nowMs);
      this.batches?.onFailed(source, this.nowMs);
    }
  }

  /**
   * A request ends failed (killed mid-stream, or out of retries): the gateway answers it with
   * SY_ERR_UPSTREAM after accepting it, so it counts `failed{upstream}`, not a rejection; not served,
   * it misses its SLO.
   */
  private failRequest(request: Request, offline: boolean): void {
    (this.faults as FaultRuntime<TwinEngineRequest>).failed++;
    this.failAccepted(request, 'SY_ERR_UPSTREAM', offline);
    this.admission?.onFailed(request, this.nowMs);
    this.batches?.onFailed(request, this.nowMs);
  }

  /** A health verdict (check or connection error) that may eject or re-admit the instance. */
  private healthVerdict(instance: SimInstance, ok: boolean): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    const change = faults.verdict(instance.index, ok);
    if (change === undefined) return;
    instance.healthy = change === 'readmitted';
    // As the live gateway: an ejected instance's signals are forgotten, a re-admitted one is scraped
    // at once (not at the next tick) unless its scrapes are being lost (src/core/view.ts).
    if (!instance.healthy) instance.forgetSignals();
    else if (this.scrapeIntervalMs > 0 && (faults.unscraped[instance.index] as number) === 0)
      instance.scrape(this.nowMs);
    if (instance.healthy && this.admission !== undefined && this.admission.queued > 0) this.admit();
  }

  /** The periodic health check of every instance: a down one fails it, any other passes. */
  private healthCheck(): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    for (const instance of this.instances) this.healthVerdict(instance, faults.down[instance.index] === 0);
    if (this.hasWork()) {
      faults.nextHealthMs = this.nowMs + faults.config.healthCheckIntervalMs;
      this.queue.push(faults.nextHealthMs, HEALTH_CHECK);
    } else {
      faults.nextHealthMs = Number.POSITIVE_INFINITY;
    }
  }

  /** A fault starts or ends. */
  private faultEdge(): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    while (faults.nextEdgeMs <= this.nowMs) {
      const { fault, start } = faults.takeEdge();
      const instance = findInstance(this.instances, fault.instance);
      const i = instance.index;
      const delta = start ? 1 : -1;
      switch (fault.kind) {
        case 'crash':
          faults.down[i] = (faults.down[i] as number) + delta;
          if (start) this.crash(instance);
          break;
        case 'stall':
          faults.stalled[i] = (faults.stalled[i] as number) + delta;
          if (start) {
            const until = this.nowMs + fault.durationMs;
            faults.stalledUntilMs[i] = Math.max(faults.stalledUntilMs[i] as number, until);
          } else if (faults.stalled[i] === 0 && Number.isNaN(instance.stepEndMs)) {
            // Work that arrived during the stall starts now.
            this.stepEndedIdle(instance);
          }
          break;
        case 'slow-scrape':
          faults.unscraped[i] = (faults.unscraped[i] as number) + delta;
          break;
        default: {
          const never: never = fault.kind;
          throw new Error(`unknown fault kind ${String(never)}`);
        }
      }
    }
    if (faults.nextEdgeMs !== Number.POSITIVE_INFINITY) this.queue.push(faults.nextEdgeMs, FAULT_EDGE);
    if (this.admission !== undefined && this.admission.queued > 0) this.admit();
  }

  /**
   * The engine dies: every request on it ends. One with no first token yet broke before the response
   * (a connection error: a health strike, then a retry elsewhere); one already streaming fails. The
   * engine core itself keeps its prefix cache (a simplification: a real restart starts cold).
   */
  private crash(instance: SimInstance): void {
    const faults = this.faults as FaultRuntime<TwinEngineRequest>;
    this.holderGone(instance);
    const live = faults.live[instance.index] as Set<TwinEngineRequest>;
    const killed = [...live];
    live.clear();
    for (const r of killed) {
      instance.engine.abort(r.id, this.nowMs);
      // A request still fetching its prefix is not in the engine yet: only its blocks' hold goes (an
      // admitted one's went with the abort), and it stops counting as waiting.
      if (this.stores?.[instance.index] !== undefined && instance.engine.releaseImport(r.id)) {
        instance.fetching--;
        this.fetchHolders.delete(r);
      }
      instance.ended(r.hostPrefillTokens, r.prefillPending);
      this.policy.onFailed?.(r.source, instance.id, this.nowMs);
      if (r.prefillPending) {
        faults.connectFailures++;
        this.healthVerdict(instance, false);
        this.retryOrFail(r.source, r.offline, r.attempt, [...r.tried, instance.id]);
      } else {
        this.failRequest(r.source, r.offline);
      }
    }
  }

  /**
   * Fetches reading from `holder`, which just crashed or stopped (scaled down: its GPUs, and the
   * cache a fetch reads, are released), fail: as a connector whose peer vanished falls back (vLLM
   * recomputes blocks it failed to load), each request gives its reserved blocks back and joins its
   * engine to compute its prompt (no imported tokens), counted in `failedFetches`. Their pending ends
   * are skipped (`fetchesEnded`).
   */
  private holderGone(holder: SimInstance): void {
    const live = this.faults?.live;
    for (const [request, from] of [...this.fetchHolders]) {
      if (from !== holder) continue;
      this.fetchHolders.delete(request);
      const instance = request.instance;
      (this.fetches as PeerFetches<TwinEngineRequest>).failed(instance.index);
      instance.engine.releaseImport(request.id);
      instance.fetching--;
      const recompute: TwinEngineRequest = { ...request, importedTokens: undefined };
      const onInstance = live?.[instance.index];
      if (onInstance !== undefined) {
        onInstance.delete(request);
        onInstance.add(recompute);
      }
      instance.engine.add(recompute, this.nowMs);
      if (Number.isNaN(instance.stepEndMs)) this.stepEndedIdle(instance);
    }
  }

  /** Starts a step on an idle instance that just received work. */
  private stepEndedIdle(instance: SimInstance): void {
    // A stalled engine starts nothing until the stall ends (the stall's end starts it).
    if (this.faults !== undefined && (this.faults.stalled[instance.index] as number) > 0) return;
    // Routing from inside `admit` may be followed by more routing and a new wake-up, which
    // barrierMs() cannot see yet: with an admission queue, no fusing from here.
    const horizonMs = this.admission === undefined ? this.barrierMs() : this.nowMs;
    const durationMs = instance.engine.startStep(this.nowMs, horizonMs);
    if (durationMs === undefined) return;
    instance.stepEndMs = instance.engine.stepEndMs;
    this.queue.push(instance.stepEndMs, instance.index);
  }

  private reject(request: Request, code: ErrorCode, offline: boolean): void {
    this.notServed(request, offline);
    this.rejectedByCode.set(code, (this.rejectedByCode.get(code) ?? 0) + 1);
  }

  /**
   * An accepted request ends without an answer: held in the scale-from-zero buffer past its bound
   * (the gateway counted it accepted when held), or failed upstream under faults (crash, retries
   * spent). The live gateway counts it `failed{reason}` (reason: the code's name in lower case, as
   * its reasonOf), not `rejected{code}`. It is still not served: `rejected` counts it.
   */
  private failAccepted(request: Request, code: ErrorCode, offline: boolean): void {
    this.failWithReason(request, code.slice('SY_ERR_'.length).toLowerCase(), offline);
  }

  /**
   * The engine a request reached refused it on arrival: its prompt plus output pass the model's
   * context (src/model/context.ts), a 400 as vLLM and the sim engine answer, or (`pastKvCache`) its
   * whole KV needs more blocks than the engine's cache holds, a 400 naming max_tokens from the sim
   * engine. The live gateway relays an engine's 4xx and counts the request accepted, then
   * `failed{upstream_4xx}`; so does the twin (not served, so `rejected` counts it too), never a
   * SY_ERR_CAPACITY the live gateway would not answer. The caller tells the policy and admission.
   */
  private refusedByEngine(request: Request, offline: boolean, pastKvCache = false): void {
    this.failWithReason(request, 'upstream_4xx', offline);
    if (pastKvCache) this.refusedPastKvCache++;
  }

  private failWithReason(request: Request, reason: string, offline: boolean): void {
    this.notServed(request, offline);
    this.failedByReason.set(reason, (this.failedByReason.get(reason) ?? 0) + 1);
  }

  /** An online or offline request ends without an answer (refused or failed). */
  private notServed(request: Request, offline: boolean): void {
    if (offline) this.metrics.batchRejected++;
    else this.metrics.rejected++;
    if (!offline) this.control?.onFailed(request, this.nowMs);
  }

  /** Whether anything besides the periodic sample and scrape ticks is still to happen. */
  private hasWork(): boolean {
    if (this.pending !== undefined || this.nextJob < this.jobs.length) return true;
    if (this.driver !== undefined && this.driver.wakeAtMs !== Number.POSITIVE_INFINITY) return true;
    if (this.faults !== undefined && this.faults.retries.size > 0) return true;
    if (this.control !== undefined && this.control.held > 0) return true;
    if (this.pd?.busy === true) return true;
    if (this.fetches !== undefined && this.fetches.inFlight > 0) return true;
    for (const instance of this.instances) if (!Number.isNaN(instance.stepEndMs)) return true;
    return false;
  }

  private sample(): void {
    this.series.sample(this.nowMs);
    const m = this.metrics;
    this.clusterSeries.sample(this.nowMs, {
      completed: m.completed,
      rejected: m.rejected,
      outputTokens: m.outputTokens,
      sloMet: m.bothOk,
    });
    // Keep sampling only while something else is still to happen (the ticks must not keep each other alive).
    if (this.hasWork()) {
      this.nextSampleMs = this.nowMs + this.series.intervalMs;
      this.queue.push(this.nextSampleMs, SAMPLE);
    } else {
      this.nextSampleMs = Number.POSITIVE_INFINITY;
    }
  }

  private scrape(): void {
    // An earlier tick was armed after this one: this event is superseded.
    if (this.nowMs !== this.nextScrapeMs) return;
    const faults = this.faults;
    for (const instance of this.instances) {
      // A down engine's /metrics does not answer; a slow-scrape fault loses its scrapes.
      const i = instance.index;
      if (faults !== undefined && ((faults.down[i] as number) > 0 || (faults.unscraped[i] as number) > 0))
        continue;
      instance.scrape(this.nowMs);
    }
    this.lastScrapeMs = this.nowMs;
    this.nextScrapeMs = Number.POSITIVE_INFINITY;
    if (this.admission !== undefined && this.admission.queued > 0) this.admit();
    this.armScrape();
  }

  /**
   * Arms the next scrape that anyone will read. Scrapes fall on the grid k * scrapeIntervalMs, as a
   * periodic scraper's do, and policies read the one at or before each decision. While admission
   * holds requests, any step end may dispatch, so every tick is taken. Otherwise decisions come only
   * at arrivals, wake-ups, retries and batch submissions, which are known in advance (only such an
   * event schedules another): the ticks before the last one preceding the next of them are never
   * read, so they are skipped. A skipped tick is not a barrier, so engines run ahead past it; the
   * results are those of scraping every tick (`scrapeEveryTick`; src/twin/scrape.test.ts checks).
   */
  private armScrape(): void {
    const intervalMs = this.scrapeIntervalMs;
    if (intervalMs === 0) return;
    let tickMs: number;
    const holding = this.admission !== undefined && this.admission.queued > 0;
    // A P/D run also decides when a prefill ends (the decode pick), which no one knows in advance.
    if (holding || this.options.scrapeEveryTick === true || this.pd !== undefined) {
      if (!holding && !this.hasWork()) return;
      tickMs = this.lastScrapeMs + intervalMs;
    } else {
      tickMs = Math.floor(this.nextDecisionMs() / intervalMs) * intervalMs;
      // That tick was already taken (or is no longer reachable): the decision reads the last one.
      if (tickMs <= this.lastScrapeMs || tickMs < this.nowMs) return;
    }
    if (tickMs >= this.nextScrapeMs || !Number.isFinite(tickMs)) return;
    this.nextScrapeMs = tickMs;
    this.queue.push(tickMs, SCRAPE);
  }

  /** The earliest known event that may make a routing decision (Infinity: none left). */
  private nextDecisionMs(): number {
    let t = this.pending !== undefined ? this.pending.arrivalMs : Number.POSITIVE_INFINITY;
    const wakeMs = this.driver?.wakeAtMs ?? Number.POSITIVE_INFINITY;
    if (wakeMs < t) t = wakeMs;
    if (this.faults !== undefined && this.faults.nextRetryMs < t) t = this.faults.nextRetryMs;
    if (this.nextJob < this.jobs.length) t = Math.min(t, (this.jobs[this.nextJob] as BatchJob).submittedMs);
    // A control tick reads engine signals too: the scrape before it is taken.
    if (this.control !== undefined) t = Math.min(t, this.control.nextEventMs);
    return t;
  }

  /** A control event: starts that are due become ready, and the loop runs when its tick is due. */
  private controlEvent(): void {
    const control = this.control as TwinControl;
    control.onEvent(this.nowMs);
    // Like the sample tick, the control tick must not keep the run alive on its own, except up to
    // the workload's declared end: that idle tail is billed, so the loops may scale down in it.
    if (this.hasWork() || control.nextEventMs <= this.declaredEndMs()) this.armControl();
    if (this.admission !== undefined && this.admission.queued > 0) this.admit();
  }

  /**
   * The workload's declared end (SimOptions.workloadEnd) once the source ran dry; before that the
   * source keeps the run going anyway (Infinity).
   */
  private declaredEndMs(): number {
    if (this.pending !== undefined) return Number.POSITIVE_INFINITY;
    return declaredEndMs(this.options.workloadEnd, this.arrived, this.lastArrivalMs);
  }

  private armControl(): void {
    const atMs = this.control?.arm();
    if (atMs !== undefined) this.queue.push(atMs, CONTROL);
  }

  /** The control host, if the run has one: one loop, or one per model under placement. */
  private buildControl(): TwinControl | undefined {
    const { control, placement, serverless, pdPools } = this.options;
    if (control === undefined && placement === undefined && serverless === undefined && pdPools === undefined)
      return undefined;
    const deps: ControlHostDeps = {
      view: this.view,
      slo: this.options.slo,
      queued: () => this.admission?.queued ?? 0,
      release: (request, offline) => {
        if (!this.route(request, offline)) {
          this.admission?.onFailed(request, this.nowMs);
          this.batches?.onFailed(request, this.nowMs);
        }
      },
      refuse: (request, offline, code) => {
        this.options.onDecision?.({ requestId: request.id, atMs: this.nowMs, instance: undefined, code });
        this.reject(request, code, offline);
        this.admission?.onFailed(request, this.nowMs);
        this.batches?.onFailed(request, this.nowMs);
      },
      fail: (request, offline, code) => {
        this.options.onDecision?.({ requestId: request.id, atMs: this.nowMs, instance: undefined, code });
        this.failAccepted(request, code, offline);
        this.admission?.onFailed(request, this.nowMs);
        this.batches?.onFailed(request, this.nowMs);
      },
      onPlacement: this.options.onPlacement,
      // With a KV store, fetches reading from an instance that stops fail (holderGone).
      onStopped: this.fetches === undefined ? undefined : (instance) => this.holderGone(instance),
    };
    if (pdPools !== undefined) {
      if (this.pd === undefined)
        throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'P/D pools need a P/D cluster (pd)');
      // Each pool reads its own view: the run's policy's (prefill) and the decode pick's.
      return new PdPoolsHost(pdPools, this.instances, deps, {
        view: this.decodeView,
        handoffsWaiting: () => this.handoffsWaiting(),
      });
    }
    if (serverless !== undefined) {
      if (control !== undefined || placement !== undefined)
        throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'serverless excludes control and placement');
      return new ServerlessHost(serverless, this.instances, deps);
    }
    if (placement === undefined) return new ControlHost(control as ControlSettings, this.instances, deps);
    if (control !== undefined)
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'control and placement are exclusive');
    return new PlacementHost(this.placementWithEngines(placement), this.instances, deps);
  }

  /**
   * Placement's fit check sized as the engines are: each model's batch limits from its group's
   * engine config, and the engines' memory share unless the settings give one.
   */
  private placementWithEngines(placement: PlacementSettings): PlacementSettings {
    const { cluster, engine, engineByGroup } = this.options;
    return {
      ...placement,
      gpuMemoryUtilization: placement.gpuMemoryUtilization ?? engine.gpuMemoryUtilization,
      models: placement.models.map((m) => {
        const g = cluster.groups.findIndex((group) => group.model === m.id);
        const config = engineByGroup?.[g] ?? engine;
        return {
          ...m,
          engine: m.engine ?? {
            maxNumSeqs: config.maxNumSeqs,
            maxNumBatchedTokens: config.maxNumBatchedTokens,
          },
        };
      }),
    };
  }

  private buildInstances(): SimInstance[] {
    const options = this.options;
    const policy = this.policy;
    const metrics = this.metrics;
    const slo = options.slo;
    // The decode half of a P/D request reports to the decode pick's policy.
    const decodePolicy = options.pd?.decodePolicy ?? policy;
    const onFirstToken = (request: EngineRequest, nowMs: number): void => {
      const twin = request as TwinEngineRequest;
      twin.prefillPending = false;
      twin.instance.firstToken(twin.hostPrefillTokens);
      (twin.pdPhase === 'decode' ? decodePolicy : policy).onFirstToken?.(
        twin.source,
        twin.instance.id,
        nowMs,
      );
    };
    const onFinish: EngineListener['onFinish'] = (result) => {
      const twin = result.request as TwinEngineRequest;
      twin.instance.ended(twin.hostPrefillTokens, twin.prefillPending);
      if (twin.pdPhase === 'prefill') {
        policy.onCompleted?.(twin.source, twin.instance.id, result.finishMs, 1);
        // With a store: what the prompt cost the prefill instance (its leg is where a P/D prompt is computed).
        if (this.fetches !== undefined) this.fetches.finished(twin, result);
        // The prefill pool's leg ended (an autoscaled pool counts it; a draining instance may stop).
        this.control?.onFinish(result, twin.instance, twin.offline);
        this.prefilled(twin, result.finishMs, result.firstScheduledMs);
        return;
      }
      this.faults?.live[twin.instance.index]?.delete(twin);
      if (this.pd !== undefined && twin.importedTokens !== undefined && result.preemptions > 0)
        this.pd.importRecomputes++;
      // With a store: what its prompt cost here (hits and a fetched prefix not computed); a P/D decode
      // leg that received its KV by hand-off was counted on its prefill instance.
      if (this.fetches !== undefined && (twin.pdPhase !== 'decode' || twin.importedTokens === undefined))
        this.fetches.finished(twin, result);
      if (twin.offline) metrics.batchFinished(result);
      else metrics.finish(result, slo);
      this.control?.onFinish(result, twin.instance, twin.offline);
      (twin.pdPhase === 'decode' ? decodePolicy : policy).onCompleted?.(
        twin.source,
        twin.instance.id,
        result.finishMs,
        twin.outputTokens,
      );
      if (this.admission !== undefined) {
        const usage = { inputTokens: twin.inputTokens, completionTokens: twin.outputTokens };
        this.admission.onCompleted(twin.source, usage, result.finishMs);
        this.batches?.onCompleted(twin.source, result.finishMs);
      }
    };
    const onReject: NonNullable<EngineListener['onReject']> = (request, _reason, nowMs) => {
      // The engine can never fit this request's KV: it answers 400, as the live sim engine does.
      const twin = request as TwinEngineRequest;
      twin.instance.ended(twin.hostPrefillTokens, twin.prefillPending);
      this.faults?.live[twin.instance.index]?.delete(twin);
      this.refusedByEngine(twin.source, twin.offline, true);
      const prefillLeg = twin.pdPhase === 'prefill';
      const hooked = twin.pdPhase === 'decode' ? decodePolicy : policy;
      engineRefusalHooks(hooked, twin.source, twin.instance.id, nowMs, prefillLeg);
      // A refused prefill leg ends the request (the gateway relays the 400): a decode instance
      // picked at arrival lets go of its hold, as the live exchange's end releases it.
      if (prefillLeg) this.releaseDecodeHold(twin.source);
      this.admission?.onFailed(twin.source, nowMs);
      this.batches?.onFailed(twin.source, nowMs);
    };
    const onInterTokenLatency = (gapMs: number, count: number): void => {
      metrics.itl.record(gapMs, count);
    };
    const onInterTokenGaps = (endsMs: Float64Array, from: number, to: number, count: number): void => {
      metrics.itl.recordGaps(endsMs, from, to, count);
    };
    const instances: SimInstance[] = [];
    // Each instance is created with its role and keeps it: nothing reads the index to tell it again.
    const roles = this.pd === undefined ? [] : pdRoles(this.prefillSlots(), this.instanceCount());
    for (const [g, group] of options.cluster.groups.entries()) {
      const config = options.engineByGroup?.[g] ?? options.engine;
      assert(config.blockSize === options.engine.blockSize, `group ${g}: blockSize differs from the run's`);
      // The engine's limits set the CUDA-graph capture sizes and the KV left after the profiling run.
      const { maxNumSeqs, maxNumBatchedTokens } = config;
      const modelPerf = perfModelFor(group.gpu, group.base ?? group.model, group.tp, undefined, {
        maxNumSeqs,
      });
      const blocks =
        config.numGpuBlocksOverride ??
        kvBlocksThatFit(
          modelPerf.gpu,
          modelPerf.model,
          group.tp,
          config.gpuMemoryUtilization,
          config.blockSize,
          {
            maxNumSeqs,
            maxNumBatchedTokens,
          },
        );
      for (let k = 0; k < group.count; k++) {
        const index = instances.length;
        const id = `i${index}`;
        const role = roles[index] ?? 'both';
        const perf = role === 'decode' ? this.watchedPerf(modelPerf) : modelPerf;
        const listener: EngineListener = {
          onFirstToken,
          onFinish,
          onReject,
          onInterTokenLatency,
          onInterTokenGaps,
        };
        const onKvEvent = policy.onKvEvent;
        if (onKvEvent !== undefined) {
          // Only a policy that reads KV events pays for them; each instance's listener names its instance.
          listener.onKvEvent = (event: KvEvent) => onKvEvent.call(policy, id, event, this.nowMs);
        }
        // The fast mode also remembers decode step times; the references ask the model every time.
        const fast = this.prefixMode === 'runs';
        const newEngine = (): EngineCore =>
          new EngineCore(config, perf, blocks, listener, {
            prefixForest: fast ? this.forest : undefined,
            memoizeDecodeSteps: fast,
          });
        // A restart (under control) empties the cache; a KV-event reader hears it as vLLM says it.
        const restart = (): EngineCore => {
          listener.onKvEvent?.({ type: 'AllBlocksCleared' });
          return newEngine();
        };
        instances.push(
          new SimInstance(
            index,
            id,
            group.gpu,
            group.model,
            group.tp,
            newEngine(),
            options.engine.blockSize,
            this.view,
            this.scrapeIntervalMs,
            {
              base: group.base,
              newEngine: restart,
              role,
              contextTokensMax: modelPerf.model.contextTokensMax,
            },
          ),
        );
      }
    }
    return instances;
  }

  // ---- disaggregated prefill/decode (src/twin/pd-host.ts) ----

  /** The P/D hand-offs, when the run is disaggregated; checks what it cannot be combined with. */
  private buildPd(): PdHandoffs<PdPayload> | undefined {
    const options = this.options;
    const pd = options.pd;
    if (pd === undefined) return undefined;
    // Named, so the refusal says which one to drop. Its pools do autoscale (`pdPools`, each its own
    // loop); what it lacks is one loop over a single pool, which a P/D run never gets from the CLI.
    const others: [unknown, string][] = [
      [options.control, 'a control loop over one pool (its pools scale with their own loops)'],
      [options.placement, 'placement (a multi-model cluster)'],
      [options.serverless, 'serverless (--serverless-policy)'],
      [options.faults, 'faults (--fault)'],
      [options.batchJobs, 'batch jobs (--batch-requests)'],
    ];
    const given = others.filter(([x]) => x !== undefined && (!Array.isArray(x) || x.length > 0));
    if (given.length > 0)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `a P/D cluster (--prefill-instances, --decode-instances) runs without ${given.map(([, what]) => what).join(', ')}`,
        { param: 'pd' },
      );
    const groups = options.cluster.groups;
    const group = groups[0];
    const count = groups.reduce((n, g) => n + g.count, 0);
    // Autoscaled pools: every slot of both pools is an instance from the start (stopped until asked for).
    const pools = options.pdPools;
    const [p, d] =
      pools === undefined
        ? [pd.prefillInstances, pd.decodeInstances]
        : [pools.prefill.maxInstances, pools.decode.maxInstances];
    if (group === undefined || groups.length !== 1 || count !== p + d)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `a P/D cluster is one group of ${p} + ${d} instances`,
      );
    if (pd.conditional !== undefined && pools !== undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        'conditional disaggregation runs on fixed pools, not autoscaled ones',
      );
    // Autoscaled pools keep the prefill-end pick: an instance given a request at its arrival could
    // be drained before that request's KV comes.
    const settings =
      pools !== undefined && pd.decodeAtArrival === true ? { ...pd, decodeAtArrival: false } : pd;
    const perf = perfModelFor(group.gpu, group.base ?? group.model, group.tp);
    if (pd.conditional !== undefined) this.pdPerf = perf;
    return new PdHandoffs(settings, perf.model, group.tp, options.engine.blockSize);
  }

  private instanceCount(): number {
    return this.options.cluster.groups.reduce((n, g) => n + g.count, 0);
  }

  /** The prefill-role instances: the prefill pool's slots when autoscaled, else its fixed count. */
  private prefillSlots(): number {
    const pools = this.options.pdPools;
    return pools?.prefill.maxInstances ?? (this.pd as PdHandoffs<PdPayload>).settings.prefillInstances;
  }

  /** Hand-offs waiting for blocks at any decode instance (the decode pool's queue). */
  private handoffsWaiting(): number {
    const pd = this.pd as PdHandoffs<PdPayload>;
    let n = 0;
    for (const instance of this.instances) if (instance.role === 'decode') n += pd.waitingAt(instance.index);
    return n;
  }

  /** A decode instance's perf model, noting the largest prefill chunk (of one sequence) its steps run. */
  private watchedPerf(perf: PerfModel): PerfModel {
    const handoffs = this.pd as PdHandoffs<PdPayload>;
    const watched: PerfModel = Object.create(perf);
    watched.stepTimeMs = (shape) => {
      // Every chunk is at least 1 token, so the largest is at most this (exact when one exceeds 1).
      const chunkMax = shape.prefillSeqs > 0 ? shape.prefillTokens - shape.prefillSeqs + 1 : 0;
      if (chunkMax > handoffs.decodePrefillTokensMax) handoffs.decodePrefillTokensMax = chunkMax;
      return perf.stepTimeMs(shape);
    };
    return watched;
  }

  /**
   * A prefill ended: the decode pick (its own policy over the decode pool, as the gateway's second
   * pick; or the instance picked at arrival), then the decode attempt: its policy hears onRouted
   * now, as the gateway's attemptStarted, and the hand-off waits there for its blocks. An attempt
   * the decode engine refuses (past the context, or a KV that can never fit) ends as its 400 does.
   */
  private prefilled(twin: TwinEngineRequest, nowMs: number, prefillStartMs: number): void {
    const pd = this.pd as PdHandoffs<PdPayload>;
    const request = twin.source;
    const decodePolicy = pd.settings.decodePolicy;
    const chosen = this.pdDecodeAt?.get(request.id);
    let decode: SimInstance;
    if (chosen !== undefined) {
      // Picked at arrival: the decode instance counts the request since then (its hold).
      (this.pdDecodeAt as Map<string, number>).delete(request.id);
      decode = this.instances[chosen] as SimInstance;
    } else {
      this.decodeView.nowMs = nowMs;
      this.view.nowMs = nowMs;
      const decision = decodePolicy.decide(this.decodeView as ClusterView, request, this.pdRng);
      if (decision.kind === 'reject') {
        this.digest = chainHash(this.digest, 0xfffffffe);
        this.reject(request, decision.code, twin.offline);
        this.admission?.onFailed(request, nowMs);
        this.abandonPrefillKv(twin.instance, request.id, nowMs);
        return;
      }
      decode = findInstance(this.instances, decision.instanceId);
      this.digest = chainHash(this.digest, decode.index);
      decode.sent(0); // its KV arrives: the decode instance prefills nothing of it
    }
    decode.routed++;
    decodePolicy.onRouted?.(request, decode.id, nowMs);
    const pastContext = !this.fitsDecode(request, decode);
    if (pastContext || cannotFit(request, decode)) {
      decode.ended(0, true);
      engineRefusalHooks(decodePolicy, request, decode.id, nowMs, false);
      this.decodeRefused(twin, nowMs, !pastContext);
      return;
    }
    pd.enqueue(pd.handoff(request, this.pdPayload(twin), decode.index, nowMs, prefillStartMs));
    this.startTransfers(decode);
  }

  /**
   * Whether the decode leg fits its engine's context: the client's request (prompt and output) goes
   * there as sent, after the prefill leg's one token passed (route).
   */
  private fitsDecode(request: Request, decode: SimInstance): boolean {
    return fitsContext(
      decode.contextTokensMax,
      request.inputTokens,
      (request as TwinRequest).trueOutputTokens,
    );
  }

  /**
   * The decode leg of a prefilled request was refused (past the context, or `pastKvCache`): the
   * request fails as the gateway counts a decode attempt's 400, and the prefill instance holds the
   * KV it kept for it until its release timeout (abandonPrefillKv).
   */
  private decodeRefused(twin: TwinEngineRequest, nowMs: number, pastKvCache: boolean): void {
    this.refusedByEngine(twin.source, twin.offline, pastKvCache);
    this.admission?.onFailed(twin.source, nowMs);
    this.abandonPrefillKv(twin.instance, twin.source.id, nowMs);
  }

  /**
   * No decode leg will read the KV the prefill instance kept for a request: as the live prefill
   * engine (vLLM's NIXL connector; the sim P/D engine), it holds the blocks until its release timeout
   * (PdSettings.kvReleaseTimeoutMs) and frees them then.
   */
  private abandonPrefillKv(prefill: SimInstance, requestId: string, nowMs: number): void {
    const settings = (this.pd as PdHandoffs<PdPayload>).settings;
    const atMs = nowMs + (settings.kvReleaseTimeoutMs ?? PD_KV_RELEASE_TIMEOUT_MS_DEFAULT);
    this.pdAbandoned.push({ atMs, prefill: prefill.index, requestId });
    this.queue.push(atMs, PD_KV_RELEASE);
  }

  /** Frees the abandoned prefill KV whose release timeout has come. */
  private abandonedKvDue(): void {
    const due = this.pdAbandoned;
    while (this.pdAbandonedHead < due.length) {
      const entry = due[this.pdAbandonedHead] as (typeof due)[number];
      if (entry.atMs > this.nowMs) break;
      this.pdAbandonedHead++;
      this.releasePrefillKv(this.instances[entry.prefill] as SimInstance, entry.requestId);
    }
    // Drop the freed entries once they are half the array, so it stays as long as the held ones.
    if (this.pdAbandonedHead * 2 >= due.length) {
      due.splice(0, this.pdAbandonedHead);
      this.pdAbandonedHead = 0;
    }
  }

  /**
   * Conditional P/D (or a pair deciding at arrival), at arrival: the decode pick (its own policy over
   * the decode pool; a refusal rejects the request before any prefill), then the rule on the
   * gateway's views: local runs the request whole on that instance, remote (always, without a rule)
   * prefills it on the prefill pool (the run's policy) and its KV comes here when the prefill ends.
   * False when refused.
   */
  private routeConditional(request: Request, offline: boolean): boolean {
    const pd = this.pd as PdHandoffs<PdPayload>;
    const decodePolicy = pd.settings.decodePolicy;
    this.decodeView.nowMs = this.nowMs;
    const decision = decodePolicy.decide(this.decodeView as ClusterView, request, this.pdRng);
    if (decision.kind === 'reject') {
      this.digest = chainHash(this.digest, 0xfffffffe);
      this.options.onDecision?.({
        requestId: request.id,
        atMs: this.nowMs,
        instance: undefined,
        code: decision.code,
      });
      this.reject(request, decision.code, offline);
      return false;
    }
    const decode = findInstance(this.instances, decision.instanceId);
    this.digest = chainHash(this.digest, decode.index);
    // Without a rule (a pair deciding at arrival) every request prefills remotely.
    const remote = pd.settings.conditional === undefined || this.prefillsRemotely(request, decode);
    // A remote request's KV arrives: the decode instance prefills nothing of it (as the gateway counts).
    decode.sent(remote ? 0 : request.inputTokens);
    if (!remote) {
      // Kept local: the decode attempt goes out now (the gateway's attemptStarted).
      decode.routed++;
      decodePolicy.onRouted?.(request, decode.id, this.nowMs);
      // The decode instance is where it runs, so that is the routing decision logged.
      this.options.onDecision?.({
        requestId: request.id,
        atMs: this.nowMs,
        instance: decode.id,
        code: undefined,
      });
      const pastContext = !this.fitsDecode(request, decode);
      if (pastContext || cannotFit(request, decode)) {
        decode.ended(request.inputTokens, true);
        engineRefusalHooks(decodePolicy, request, decode.id, this.nowMs, false);
        this.refusedByEngine(request, offline, !pastContext);
        return false;
      }
      this.decodeWhole(request, offline, decode);
      return true;
    }
    // Remote: the decode instance holds the request from now, as the gateway's pick at arrival does;
    // its decode attempt (and the policy's onRouted) comes when the prefill ends (prefilled). A KV
    // its engine could never fit is refused then, by that attempt's 400, after the prefill ran.
    const decodeAt = this.pdDecodeAt as Map<string, number>;
    decodeAt.set(request.id, decode.index);
    if (this.route(request, offline)) return true;
    // The prefill pool refused it (counted): no decode attempt went out, the hold ends.
    this.releaseDecodeHold(request);
    return false;
  }

  /**
   * A request picked for a decode instance at arrival ended before its decode attempt (its prefill
   * refused): the instance lets go of it, as the gateway's exchange releases its hold when it ends.
   * The decode policy hears nothing, never having been told of an attempt.
   */
  private releaseDecodeHold(request: Request): void {
    const decodeAt = this.pdDecodeAt;
    const index = decodeAt?.get(request.id);
    if (decodeAt === undefined || index === undefined) return;
    decodeAt.delete(request.id);
    (this.instances[index] as SimInstance).ended(0, true);
  }

  /** The conditional rule's verdict for a request whose decode instance is `decode`. */
  private prefillsRemotely(request: Request, decode: SimInstance): boolean {
    const remote = (this.pd as PdHandoffs<PdPayload>).prefillsRemotely(
      request,
      this.decodePrefixHitTokens(request, decode),
      decode,
      this.view.instances,
      this.pdPerf as PerfModel,
      (this.options.engineByGroup?.[0] ?? this.options.engine).maxNumBatchedTokens,
    );
    // The decode instance computes or receives the prompt either way: the router learns it is there.
    const prefixes = this.decodePrefixes as PrefixCacheIndex;
    prefixes.learn(prefixes.register(decode.id), request.prefix);
    return remote;
  }

  /** The router's estimate of the prompt tokens `decode` holds in its prefix cache (learned index). */
  private decodePrefixHitTokens(request: Request, decode: SimInstance): number {
    const prefixes = this.decodePrefixes as PrefixCacheIndex;
    const blocks = prefixes.longestMatch(prefixes.slotOf(decode.id), request.prefix.hashes);
    return Math.min(blocks * request.prefix.blockTokens, request.inputTokens);
  }

  /** Conditional P/D, kept local: the decode instance prefills and decodes the request itself. */
  private decodeWhole(request: Request, offline: boolean, decode: SimInstance): void {
    this.addToDecode(request, decode, offline, 0, undefined);
  }

  /** Starts the transfers whose blocks the decode instance can reserve now. */
  private startTransfers(decode: SimInstance): void {
    const pd = this.pd as PdHandoffs<PdPayload>;
    if (pd.waitingAt(decode.index) === 0) return;
    const ends = pd.startTransfers(decode.index, this.nowMs, (h) =>
      decode.engine.reserveImport(h.request.id, h.blocks),
    );
    for (const endMs of ends) this.queue.push(endMs, PD_TRANSFER);
  }

  /**
   * Transfers that ended: the prefill instance frees the request's blocks (the decode side has read
   * them), and the request joins its decode instance with its prompt's KV in place.
   */
  private transfersArrived(): void {
    const pd = this.pd as PdHandoffs<PdPayload>;
    for (const h of pd.takeArrived(this.nowMs)) {
      this.releasePrefillKv(this.instances[h.payload.prefill] as SimInstance, h.request.id);
      this.decodeAdd(h);
    }
  }

  /** What a hand-off carries from the prefill leg. */
  private pdPayload(twin: TwinEngineRequest): PdPayload {
    return { offline: twin.offline, attempt: twin.attempt, prefill: twin.instance.index };
  }

  /** The prefill instance frees the blocks it held for a request; an engine they held up starts again. */
  private releasePrefillKv(prefill: SimInstance, requestId: string): void {
    prefill.engine.releaseExport(requestId);
    if (Number.isNaN(prefill.stepEndMs) && prefill.engine.hasWork) this.stepEndedIdle(prefill);
  }

  private decodeAdd(h: Handoff<PdPayload>): void {
    const decode = this.instances[h.decode] as SimInstance;
    this.addToDecode(h.request, decode, h.payload.offline, h.payload.attempt, h.request.inputTokens - 1);
  }

  /**
   * Adds `request` to its decode instance, with `importedTokens` of its prompt already there when
   * transferred (undefined: kept local, it prefills there); an idle engine starts stepping.
   */
  private addToDecode(
    request: Request,
    decode: SimInstance,
    offline: boolean,
    attempt: number,
    importedTokens: number | undefined,
  ): void {
    const engineRequest: TwinEngineRequest = {
      id: request.id,
      inputTokens: request.inputTokens,
      outputTokens: (request as TwinRequest).trueOutputTokens,
      arrivalMs: request.arrivalMs,
      priority: request.priority,
      ...this.prefixOf(request, decode),
      ...(importedTokens === undefined ? {} : { importedTokens }),
      source: request,
      instance: decode,
      offline,
      prefillPending: true,
      hostPrefillTokens: importedTokens === undefined ? request.inputTokens : 0,
      attempt,
      tried: NONE_TRIED,
      pdPhase: 'decode',
    };
    decode.engine.add(engineRequest, this.nowMs);
    if (Number.isNaN(decode.stepEndMs)) this.stepEndedIdle(decode);
  }

  private result(): SimResult {
    const wallSeconds = Number(process.hrtime.bigint() - this.wallStart) / 1e9;
    const options = this.options;
    const base = this.metrics.summarize(
      { policy: options.policy.name, seed: options.seed, workload: options.workload, slo: options.slo },
      this.instances,
      this.queue.popped,
      wallSeconds,
    );
    const rejectedByCode = Object.fromEntries([...this.rejectedByCode].sort(([a], [b]) => (a < b ? -1 : 1)));
    const failedByReason = Object.fromEntries([...this.failedByReason].sort(([a], [b]) => (a < b ? -1 : 1)));
    const batch: BatchJobSummary[] | undefined =
      this.batches === undefined
        ? undefined
        : this.batches.jobs(this.nowMs).map((job) => ({
            id: job.id,
            status: job.status,
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            expired: job.expired,
            submittedS: job.submittedMs / 1000,
            deadlineS: job.deadlineMs / 1000,
            finishedS: job.finishedMs === undefined ? -1 : job.finishedMs / 1000,
            withinWindow: job.withinWindow,
          }));
    const kvStore = this.fetches?.outcome();
    // The store's counts ride in the summary, so every writer of it (JSON, comparisons) shows them.
    const summary: SimSummary & { readonly kvStore?: KvStoreOutcome } = {
      ...base,
      ...(this.rejectedByCode.size > 0 ? { rejectedByCode } : {}),
      ...(this.failedByReason.size > 0 ? { failedByReason } : {}),
      ...(this.refusedPastKvCache > 0 ? { refusedPastKvCache: this.refusedPastKvCache } : {}),
      ...(batch !== undefined ? { batchJobs: batch } : {}),
      ...(this.faults !== undefined ? { reliability: this.faults.summary(this.faultCount) } : {}),
      ...(kvStore !== undefined ? { kvStore } : {}),
      decisionUs: this.decideUs.stats(),
    };
    const cdfMax = options.cdfPointsMax ?? 2000;
    return {
      summary,
      report: {
        summary,
        samples: {
          ttftMs: downsampleSorted(this.metrics.sortedTtft(), cdfMax),
          tpotMs: downsampleSorted(this.metrics.sortedTpot(), cdfMax),
          e2eMs: downsampleSorted(this.metrics.sortedE2e(), cdfMax),
        },
        series: { ...this.series.result(), cluster: this.clusterSeries.result() },
      },
      decisionDigest: this.digest.toString(16).padStart(8, '0'),
      ...this.controlOutcome(),
      ...(this.pd !== undefined ? { pd: this.pd.outcome() } : {}),
      ...(kvStore !== undefined ? { kvStore } : {}),
      ...(this.control instanceof PdPoolsHost && this.control.outcome !== undefined
        ? { pdPools: this.control.outcome }
        : {}),
    };
  }

  /** What a controlled run adds to its result; nothing without control. */
  private controlOutcome(): Pick<
    SimResult,
    | 'gpuHours'
    | 'billedUntilS'
    | 'instancesOverTime'
    | 'coldStarts'
    | 'models'
    | 'placementLog'
    | 'serverless'
  > {
    if (this.control === undefined) return {};
    const endMs = billedEndMs(
      this.options.workloadEnd,
      this.arrived,
      this.lastArrivalMs,
      this.metrics.lastFinishMs,
    );
    const outcome = this.control.finish(endMs);
    const { gpuHours, instancesOverTime, coldStarts, models, placementLog } = outcome;
    return {
      gpuHours,
      billedUntilS: endMs / 1000,
      instancesOverTime,
      coldStarts,
      ...(models !== undefined ? { models } : {}),
      ...(placementLog !== undefined ? { placementLog } : {}),
      ...(this.control instanceof ServerlessHost && this.control.outcome !== undefined
        ? { serverless: this.control.outcome }
        : {}),
    };
  }
}

/**
 * The role each of a P/D cluster's `count` instances is created with, by index: the prefill slots
 * first, then the decode slots.
 */
function pdRoles(prefillSlots: number, count: number): InstanceRole[] {
  return Array.from({ length: count }, (_, i) => (i < prefillSlots ? 'prefill' : 'decode'));
}

/**
 * What a routing policy hears when the engine it picked answers a 4xx (its verdict on the request),
 * as the live gateway tells it: a proxied attempt (a colocated request, a P/D decode attempt) ends
 * `ok` for the instance (proxy.ts endCollected) with onCompleted and no token count; a vLLM prefill
 * leg (`prefillLeg`) that fails hears onFailed (pd-exchange.ts prefillLeg). onRouted came before.
 */
function engineRefusalHooks(
  policy: RoutingPolicy,
  request: Request,
  instanceId: string,
  nowMs: number,
  prefillLeg: boolean,
): void {
  if (prefillLeg) policy.onFailed?.(request, instanceId, nowMs);
  else policy.onCompleted?.(request, instanceId, nowMs, undefined);
}

/** Whether the request's whole KV (prompt and answer) could never fit the instance's blocks. */
function cannotFit(request: Request, instance: SimInstance): boolean {
  const outputTokens = (request as TwinRequest).trueOutputTokens;
  return Math.ceil((request.inputTokens + outputTokens - 1) / instance.blockSize) > instance.kvBlocksTotal;
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
