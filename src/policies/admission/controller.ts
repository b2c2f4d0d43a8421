/**
 * The gateway-side admission queue: priority bands, VTC fairness between tenants within a band, EDF
 * within a tenant, RPM/TPM token buckets, a capacity gate that passes requests straight through an
 * unloaded cluster and lets offline work harvest only spare capacity, and bounded queues that shed
 * with a Retry-After. Pure: time comes from the view or the hooks' `nowMs`, and nothing is random.
 * README.md gives the formulas, defaults and sources.
 */
import { assert } from '../../core/assert.ts';
import type { ErrorCode } from '../../core/errors.ts';
import { MinHeap } from '../../core/heap.ts';
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';
import { OutputLengthEstimator } from '../estimation/output-length.ts';
import { type AdmissionConfig, type BandConfig, parseAdmissionConfig, type TenantConfig } from './config.ts';
import { DrainRate } from './drain-rate.ts';
import { CapacityProjection } from './gate.ts';
import { TokenBucket } from './token-bucket.ts';
import type {
  AdmissionHostOptions,
  AdmissionQueue,
  AdmissionStats,
  BandSnapshot,
  CompletionUsage,
  DrainResult,
  OfferHints,
  OfferResult,
  QueueRejection,
} from './types.ts';

/** RPM and TPM are per minute. */
const MINUTE_MS = 60_000;

/**
 * Past this many backlogged lanes in a band, a drain judges lane heads by a cheaper lower bound on
 * their wait (the bands above only), so its work stays linear in the lanes, not quadratic.
 */
const SHED_LANES_EXACT_MAX = 64;

/** Completions the service-time mean runs over (older ones fade out as a running mean's would). */
const SERVICE_SAMPLES_MAX = 64;

/** A queued request. */
interface Entry {
  readonly request: Request;
  readonly deadlineMs: number;
}

/** A tenant's state: its limits, buckets and the per-band queues and counters. */
interface Tenant {
  readonly name: string;
  readonly config: TenantConfig;
  readonly weight: number;
  readonly rpm: TokenBucket | undefined;
  readonly tpm: TokenBucket | undefined;
  /** Its queue and counter in each band, by band index; created on first use. */
  readonly lanes: (Lane | undefined)[];
  queued: number;
  inFlight: number;
  lastActiveMs: number;
}

/** One tenant within one band: its virtual token counter and its EDF queue. */
interface Lane {
  readonly tenant: Tenant;
  counter: number;
  readonly queue: MinHeap<Entry>;
}

interface Band {
  readonly config: BandConfig;
  readonly index: number;
  readonly offline: boolean;
  /** Lanes with queued requests. Order is irrelevant: every choice among them breaks ties by name. */
  readonly backlogged: Lane[];
  queued: number;
  /** VTC: the counter of the last lane that left the backlog (the lift for a lane arriving to an idle band). */
  lastLeftCounter: number;
  readonly drainRate: DrainRate;
}

/** A request released and not yet completed or failed. */
interface InFlight {
  readonly band: Band;
  readonly lane: Lane;
  /** Left from the queue (not passed straight through): only those measure the drain rate. */
  readonly fromQueue: boolean;
  confirmed: boolean;
  /** When the host sent it (`onDispatched`): its completion measures the service time. */
  sentMs: number | undefined;
}

/** EDF: earlier deadline first, then earlier arrival, then smaller id (a total order). */
function edfBefore(a: Entry, b: Entry): boolean {
  if (a.deadlineMs !== b.deadlineMs) return a.deadlineMs < b.deadlineMs;
  if (a.request.arrivalMs !== b.request.arrivalMs) return a.request.arrivalMs < b.request.arrivalMs;
  return a.request.id < b.request.id;
}

function compareEdf(a: Entry, b: Entry): number {
  return edfBefore(a, b) ? -1 : edfBefore(b, a) ? 1 : 0;
}

/**
 * Builds an admission controller from a config (validated here; `{}` gives every default) and what
 * the host says of its view (`host.signalStaleAfterMs`: both hosts pass theirs).
 * Throws SY_ERR_INVALID_CONFIG naming each bad field.
 */
export function createAdmissionController(
  config: unknown = {},
  host: AdmissionHostOptions = {},
): AdmissionQueue {
  return new Controller(parseAdmissionConfig(config), host.signalStaleAfterMs ?? Number.POSITIVE_INFINITY);
}

class Controller implements AdmissionQueue {
  private readonly bandList: Band[];
  private readonly lowest: Band;
  private readonly tenants = new Map<string, Tenant>();
  private readonly inFlight = new Map<string, InFlight>();
  /** Requests pushed out of a full queue, reported by the next drain. */
  private readonly pushedOut: QueueRejection[] = [];
  private readonly pushedOutMax: number;
  private offlineInFlightCount = 0;
  private counts = { offered: 0, dispatched: 0, rejected: 0, expired: 0 };
  private queuedTotal = 0;
  /** A request's token cost counts its expected output, learnt from completions (never the true length). */
  private readonly lengths = new OutputLengthEstimator();
  /** Mean time from send to completion over the last SERVICE_SAMPLES_MAX completions (running mean). */
  private serviceMs = 0;
  private serviceSamples = 0;
  /** Sent requests in flight and the sum of their send times (whole ms after `sentBaseMs`). */
  private sentInFlight = 0;
  private sentSumMs = 0;
  private sentBaseMs: number | undefined = undefined;

  constructor(
    private readonly config: AdmissionConfig,
    /** Engine signals older than this are bounded by host accounting in the gate (CapacityProjection). */
    private readonly signalStaleAfterMs: number,
  ) {
    const sorted = [...config.bands].sort((a, b) => b.minPriority - a.minPriority);
    this.bandList = sorted.map((band, index) => ({
      config: band,
      index,
      offline: index === sorted.length - 1,
      backlogged: [],
      queued: 0,
      lastLeftCounter: 0,
      drainRate: new DrainRate(config.shedding.drainRateWindowMs),
    }));
    this.lowest = this.bandList[this.bandList.length - 1] as Band;
    this.pushedOutMax = sorted.reduce((sum, band) => sum + band.queueDepthMax, 0);
  }

  get queued(): number {
    return this.queuedTotal;
  }

  get stats(): AdmissionStats {
    return { ...this.counts, queued: this.queuedTotal };
  }

  get offlineRoom(): number {
    return this.lowest.config.queueDepthMax - this.lowest.queued;
  }

  get offlineInFlight(): number {
    return this.offlineInFlightCount;
  }

  offer(request: Request, view: ClusterView, hints?: OfferHints): OfferResult {
    const nowMs = view.nowMs;
    this.counts.offered += 1;
    const tenant = this.tenantFor(request.tenant, nowMs);
    if (tenant === undefined)
      return this.reject(
        'SY_ERR_OVERLOADED',
        `${this.tenants.size} tenants are active (tenantsMax ${this.config.tenantsMax}); none can be forgotten yet`,
        this.config.shedding.retryAfterMinMs,
      );
    tenant.lastActiveMs = nowMs;
    const offline = hints?.offline === true;
    const band = offline ? this.lowest : this.bandFor(tenant.config.priority ?? request.priority);
    const deadlineMs =
      hints?.deadlineMs ?? request.arrivalMs + (request.slo?.ttftMs ?? band.config.deadlineMs);
    const tokens = request.inputTokens + Math.round(this.lengths.estimate(request));

    if (!offline) {
      const limited = this.rateLimited(tenant, tokens, nowMs);
      if (limited !== undefined) return limited;
    }
    const lane = this.laneFor(tenant, band);

    if (this.queuedAtOrAbove(band) === 0 && this.gateOpen(this.projection(view), band, request)) {
      this.admit(tenant, tokens, nowMs, offline);
      this.lift(band, lane);
      this.release(request, band, lane, false);
      return { kind: 'dispatch' };
    }

    const waitMs = this.estimateWaitMs(band, lane, nowMs);
    if (deadlineMs <= nowMs)
      return this.reject(
        'SY_ERR_OVERLOADED',
        `deadline ${deadlineMs} ms has passed (now ${nowMs} ms) and the cluster is busy`,
        this.retryAfterMs(waitMs),
      );
    if (
      !band.offline &&
      this.config.shedding.shedOnEstimatedWait &&
      waitMs !== undefined &&
      nowMs + waitMs > deadlineMs
    )
      return this.reject(
        'SY_ERR_OVERLOADED',
        `estimated queueing wait ${Math.round(waitMs)} ms exceeds the ${deadlineMs - nowMs} ms left before the deadline`,
        this.retryAfterMs(waitMs),
      );
    if (band.queued >= band.config.queueDepthMax && !this.pushOut(band, lane, nowMs))
      return this.reject(
        'SY_ERR_OVERLOADED',
        `band '${band.config.name}' queue is full (queueDepthMax ${band.config.queueDepthMax})`,
        this.retryAfterMs(waitMs),
      );

    if (hints?.unqueueable !== undefined)
      return this.reject(hints.unqueueable.code, hints.unqueueable.reason, this.retryAfterMs(waitMs));

    this.admit(tenant, tokens, nowMs, offline);
    this.lift(band, lane);
    this.enqueue(band, lane, { request, deadlineMs }, nowMs);
    return { kind: 'queued' };
  }

  drain(view: ClusterView): DrainResult {
    const nowMs = view.nowMs;
    const expired = this.pushedOut.splice(0, this.pushedOut.length);
    for (const band of this.bandList) this.expire(band, nowMs, expired);

    const dispatch: Request[] = [];
    const projection = this.projection(view);
    for (const band of this.bandList) {
      while (band.queued > 0) {
        const lane = this.pickLane(band);
        const head = lane.queue.peek() as Entry;
        if (!this.gateOpen(projection, band, head.request)) break;
        this.dequeue(band, lane, nowMs);
        this.release(head.request, band, lane, true);
        projection.add(head.request, band.offline);
        dispatch.push(head.request);
      }
      // Strict priority: while a band still waits, nothing below it may take the capacity.
      if (band.queued > 0) break;
    }
    for (const band of this.bandList) this.shedHopeless(band, nowMs, expired);
    return { dispatch, expired };
  }

  onDispatched(request: Request, nowMs: number): void {
    const record = this.inFlight.get(request.id);
    if (record === undefined || record.confirmed) return;
    record.confirmed = true;
    this.sentBaseMs ??= nowMs;
    record.sentMs = Math.round(nowMs - this.sentBaseMs);
    this.sentInFlight += 1;
    this.sentSumMs += record.sentMs;
    if (record.fromQueue) record.band.drainRate.observe(nowMs);
  }

  onCompleted(request: Request, usage: CompletionUsage, nowMs: number): void {
    this.lengths.observe(request, usage.completionTokens);
    const record = this.inFlight.get(request.id);
    if (record === undefined) return;
    if (record.sentMs !== undefined) this.observeService(nowMs - (this.sentBaseMs ?? 0) - record.sentMs);
    const { inputWeight, outputWeight } = this.config.vtc;
    // Input was charged at release from the request's own count; settle any difference now.
    const cost =
      inputWeight * (usage.inputTokens - request.inputTokens) + outputWeight * (usage.completionTokens ?? 0);
    record.lane.counter += cost / record.lane.tenant.weight;
    this.finish(request, record, nowMs);
  }

  onFailed(request: Request, nowMs: number): void {
    const record = this.inFlight.get(request.id);
    if (record !== undefined) this.finish(request, record, nowMs);
  }

  nextWakeMs(nowMs: number): number | undefined {
    if (this.pushedOut.length > 0) return nowMs;
    if (this.queuedTotal === 0) return undefined;
    let wakeMs = nowMs + this.config.gate.recheckMs;
    for (const band of this.bandList)
      for (const lane of band.backlogged) {
        const head = lane.queue.peek();
        if (head !== undefined && head.deadlineMs < wakeMs) wakeMs = head.deadlineMs;
      }
    return Math.max(nowMs, wakeMs);
  }

  bands(nowMs: number): BandSnapshot[] {
    return this.bandList.map((band) => {
      const perMs = band.drainRate.perMs(nowMs);
      return {
        name: band.config.name,
        minPriority: band.config.minPriority,
        offline: band.offline,
        queued: band.queued,
        queueDepthMax: band.config.queueDepthMax,
        drainRatePerS: perMs === undefined ? undefined : perMs * 1000,
      };
    });
  }

  counter(tenant: string, band: string): number | undefined {
    const index = this.bandList.findIndex((b) => b.config.name === band);
    return this.tenants.get(tenant)?.lanes[index]?.counter;
  }

  // --- bands and gates -------------------------------------------------------------------------

  /** The highest band whose minPriority the priority reaches; below every band, the lowest. */
  private bandFor(priority: number): Band {
    for (const band of this.bandList) if (priority >= band.config.minPriority) return band;
    return this.lowest;
  }

  private queuedAtOrAbove(band: Band): number {
    let queued = 0;
    for (let i = 0; i <= band.index; i++) queued += this.bandList[i]?.queued ?? 0;
    return queued;
  }

  /** The gate's projection of `view`, with this host's staleness bound. */
  private projection(view: ClusterView): CapacityProjection {
    return new CapacityProjection(view, this.config.gate, this.signalStaleAfterMs);
  }

  private gateOpen(projection: CapacityProjection, band: Band, request: Request): boolean {
    return band.offline
      ? projection.offlineOpen(request.model, this.offlineInFlightCount)
      : projection.onlineOpen(request.model);
  }

  // --- tenants, limits -------------------------------------------------------------------------

  /** The tenant's state, created on first sight; undefined when tenantsMax is reached and none is idle. */
  private tenantFor(name: string, nowMs: number): Tenant | undefined {
    const known = this.tenants.get(name);
    if (known !== undefined) return known;
    if (this.tenants.size >= this.config.tenantsMax && !this.forgetIdleTenant(nowMs)) return undefined;
    const config = Object.hasOwn(this.config.tenants, name)
      ? (this.config.tenants[name] as TenantConfig)
      : this.config.defaultTenant;
    const tenant: Tenant = {
      name,
      config,
      weight: config.weight ?? 1,
      // A request costs one token, so a fractional rpm (0.5: one request every two minutes) still
      // holds a burst of one; at 1 and above the burst is the rpm itself.
      rpm:
        config.rpm === undefined
          ? undefined
          : new TokenBucket(config.rpm, MINUTE_MS, nowMs, Math.max(1, config.rpm)),
      tpm: config.tpm === undefined ? undefined : new TokenBucket(config.tpm, MINUTE_MS, nowMs),
      lanes: [],
      queued: 0,
      inFlight: 0,
      lastActiveMs: nowMs,
    };
    this.tenants.set(name, tenant);
    return tenant;
  }

  /**
   * Forgets the longest-idle tenant with nothing queued, nothing in flight and full buckets (so its
   * limits lose nothing). Its counters go too: if it returns, the VTC lift sets them again.
   */
  private forgetIdleTenant(nowMs: number): boolean {
    let victim: Tenant | undefined;
    for (const tenant of this.tenants.values()) {
      if (tenant.queued > 0 || tenant.inFlight > 0) continue;
      if (tenant.rpm?.isFull(nowMs) === false || tenant.tpm?.isFull(nowMs) === false) continue;
      if (
        victim === undefined ||
        tenant.lastActiveMs < victim.lastActiveMs ||
        (tenant.lastActiveMs === victim.lastActiveMs && tenant.name < victim.name)
      )
        victim = tenant;
    }
    if (victim === undefined) return false;
    this.tenants.delete(victim.name);
    return true;
  }

  /** A rejection when the tenant's RPM or TPM bucket lacks room, else undefined. */
  private rateLimited(tenant: Tenant, tokens: number, nowMs: number): OfferResult | undefined {
    // An absent bucket waits 0; a present one answers undefined when the cost exceeds its capacity,
    // which the rpm bucket's (at least 1) never is.
    const rpmWaitMs = tenant.rpm === undefined ? 0 : (tenant.rpm.waitMs(1, nowMs) ?? 0);
    const tpmWaitMs = tenant.tpm === undefined ? 0 : tenant.tpm.waitMs(tokens, nowMs);
    // Past the bucket's whole capacity no wait admits it: a 429 would only be retried forever.
    if (tpmWaitMs === undefined)
      return this.reject(
        'SY_ERR_REQUEST_OVER_TPM',
        `request needs ${tokens} tokens (input + expected output, max_tokens caps the output), more than ` +
          `tenant '${tenant.name}''s whole tpm of ${tenant.config.tpm} tokens a minute, so no wait admits it: ` +
          "shorten the prompt or lower max_tokens, or raise the tenant's tpm",
        undefined,
      );
    if (rpmWaitMs === 0 && tpmWaitMs === 0) return undefined;
    const which = rpmWaitMs >= tpmWaitMs ? `rpm ${tenant.config.rpm}` : `tpm ${tenant.config.tpm}`;
    return this.reject(
      'SY_ERR_RATE_LIMITED',
      `tenant '${tenant.name}' is over its ${which} limit`,
      Math.max(rpmWaitMs, tpmWaitMs),
    );
  }

  /** Takes the request's share of the buckets (batch requests skip them). */
  private admit(tenant: Tenant, tokens: number, nowMs: number, offline: boolean): void {
    if (offline) return;
    tenant.rpm?.take(1, nowMs);
    tenant.tpm?.take(tokens, nowMs);
  }

  private reject(code: ErrorCode, reason: string, retryAfterMs: number | undefined): OfferResult {
    this.counts.rejected += 1;
    return { kind: 'reject', code, reason, retryAfterMs };
  }

  // --- VTC ---------------------------------------------------------------------------------------

  private laneFor(tenant: Tenant, band: Band): Lane {
    const existing = tenant.lanes[band.index];
    if (existing !== undefined) return existing;
    const lane: Lane = { tenant, counter: 0, queue: new MinHeap(edfBefore) };
    tenant.lanes[band.index] = lane;
    return lane;
  }

  /**
   * VTC's lift, applied on every arrival of a lane that is not backlogged: its counter rises to the
   * smallest counter among backlogged lanes (or, when none is, to the counter of the last lane that
   * left the backlog). Idle time therefore earns no credit to spend later.
   */
  private lift(band: Band, lane: Lane): void {
    if (lane.queue.size > 0) return;
    let floor = band.backlogged.length > 0 ? Number.POSITIVE_INFINITY : band.lastLeftCounter;
    for (const other of band.backlogged) if (other.counter < floor) floor = other.counter;
    if (lane.counter < floor) lane.counter = floor;
  }

  /** The backlogged lane with the smallest counter; ties go to the smaller tenant name. */
  private pickLane(band: Band): Lane {
    let best = band.backlogged[0] as Lane;
    for (const lane of band.backlogged)
      if (
        lane.counter < best.counter ||
        (lane.counter === best.counter && lane.tenant.name < best.tenant.name)
      )
        best = lane;
    return best;
  }

  // --- queue ------------------------------------------------------------------------------------

  private enqueue(band: Band, lane: Lane, entry: Entry, nowMs: number): void {
    if (lane.queue.size === 0) band.backlogged.push(lane);
    lane.queue.push(entry);
    lane.tenant.queued += 1;
    band.queued += 1;
    this.queuedTotal += 1;
    if (band.queued === 1) band.drainRate.setBusy(true, nowMs);
  }

  /** Pops the lane's head (the caller already peeked it). */
  private dequeue(band: Band, lane: Lane, nowMs: number): Entry {
    return this.removeFrom(band, lane, 0, nowMs);
  }

  private removeFrom(band: Band, lane: Lane, heapIndex: number, nowMs: number): Entry {
    const entry = lane.queue.removeAt(heapIndex);
    assert(entry !== undefined, 'removing from an empty lane');
    lane.tenant.queued -= 1;
    band.queued -= 1;
    this.queuedTotal -= 1;
    if (lane.queue.size === 0) {
      band.backlogged.splice(band.backlogged.indexOf(lane), 1);
      band.lastLeftCounter = lane.counter;
    }
    if (band.queued === 0) band.drainRate.setBusy(false, nowMs);
    return entry;
  }

  /** Moves every queued entry whose deadline has come into `out`, in EDF order. */
  private expire(band: Band, nowMs: number, out: QueueRejection[]): void {
    const gone: Entry[] = [];
    for (const lane of [...band.backlogged])
      while ((lane.queue.peek()?.deadlineMs ?? Number.POSITIVE_INFINITY) <= nowMs)
        gone.push(this.dequeue(band, lane, nowMs));
    gone.sort(compareEdf);
    const retryAfterMs = this.retryAfterMs(this.bandWaitMs(band, nowMs));
    for (const entry of gone) {
      this.counts.expired += 1;
      out.push({
        request: entry.request,
        code: 'SY_ERR_SLO_UNREACHABLE',
        reason: `deadline passed after ${Math.round(nowMs - entry.request.arrivalMs)} ms queued in band '${band.config.name}'`,
        retryAfterMs,
      });
    }
  }

  /**
   * Longest-queue drop for a full band: when another tenant holds at least two more queued requests
   * than the arriving one, its latest-deadline request leaves (reported by the next drain) to make
   * room. A heavy tenant thus cannot fill the shared bound and lock a light one out.
   */
  private pushOut(band: Band, arriving: Lane, nowMs: number): boolean {
    if (this.pushedOut.length >= this.pushedOutMax) return false;
    let victim: Lane | undefined;
    for (const lane of band.backlogged) {
      if (lane === arriving || lane.queue.size <= arriving.queue.size + 1) continue;
      if (
        victim === undefined ||
        lane.queue.size > victim.queue.size ||
        (lane.queue.size === victim.queue.size && lane.tenant.name > victim.tenant.name)
      )
        victim = lane;
    }
    if (victim === undefined) return false;
    let last = 0;
    for (let i = 1; i < victim.queue.size; i++)
      if (edfBefore(victim.queue.at(last) as Entry, victim.queue.at(i) as Entry)) last = i;
    const entry = this.removeFrom(band, victim, last, nowMs);
    this.counts.expired += 1;
    this.pushedOut.push({
      request: entry.request,
      code: 'SY_ERR_OVERLOADED',
      reason: `pushed out of the full '${band.config.name}' queue by a tenant with fewer requests queued`,
      retryAfterMs: this.retryAfterMs(this.estimateWaitMs(band, victim, nowMs)),
    });
    return true;
  }

  // --- release and completion ---------------------------------------------------------------------

  /** Counts a request as dispatched: charges its input to the lane and tracks it until it ends. */
  private release(request: Request, band: Band, lane: Lane, fromQueue: boolean): void {
    assert(!this.inFlight.has(request.id), `request '${request.id}' released twice`);
    assert(
      this.inFlight.size < this.config.inFlightTrackedMax,
      `inFlightTrackedMax ${this.config.inFlightTrackedMax} reached: the host is not calling onCompleted/onFailed`,
    );
    lane.counter += (this.config.vtc.inputWeight * request.inputTokens) / lane.tenant.weight;
    if (lane.queue.size === 0) band.lastLeftCounter = lane.counter;
    lane.tenant.inFlight += 1;
    if (band.offline) this.offlineInFlightCount += 1;
    this.inFlight.set(request.id, { band, lane, fromQueue, confirmed: false, sentMs: undefined });
    this.counts.dispatched += 1;
  }

  private finish(request: Request, record: InFlight, nowMs: number): void {
    this.inFlight.delete(request.id);
    if (record.sentMs !== undefined) {
      this.sentInFlight -= 1;
      this.sentSumMs -= record.sentMs;
    }
    record.lane.tenant.inFlight -= 1;
    record.lane.tenant.lastActiveMs = nowMs;
    if (record.band.offline) this.offlineInFlightCount -= 1;
  }

  // --- shedding estimates -------------------------------------------------------------------------

  private observeService(ms: number): void {
    this.serviceSamples = Math.min(this.serviceSamples + 1, SERVICE_SAMPLES_MAX);
    this.serviceMs += (Math.max(0, ms) - this.serviceMs) / this.serviceSamples;
  }

  /**
   * The rate a band's queue is expected to drain at, for shedding: the larger of the cluster's
   * throughput by Little's law (requests in flight / service time) and the band's measured drain
   * rate out of its backlog. The service time is the mean over recent completions; before the
   * first completion, the mean age of the requests in flight (each will have run at least that
   * long, so the throughput read from it is optimistic: at a burst's start, when every slot was
   * filled a moment ago, it is very high and nothing is shed; a request that has held the only slot
   * for seconds gives a low one). Undefined while nothing is in flight or nothing has been sent.
   * A past drain rate alone is no bound on the future one: behind engines full of long generations
   * a queue may see no dispatch for seconds and then hundreds at once, as the running batch ends.
   */
  private shedPerMs(band: Band, nowMs: number): number | undefined {
    const inFlight = this.inFlight.size;
    if (inFlight === 0) return undefined;
    let serviceMs = this.serviceMs;
    if (this.serviceSamples === 0) {
      if (this.sentInFlight === 0 || this.sentBaseMs === undefined) return undefined;
      serviceMs = nowMs - this.sentBaseMs - this.sentSumMs / this.sentInFlight;
    }
    const throughput = inFlight / Math.max(1, serviceMs);
    return Math.max(throughput, band.drainRate.perMs(nowMs) ?? 0);
  }

  /**
   * Estimated queueing wait for a new request of `lane`, from the band's drain rate: the requests that
   * go before it divided by the rate. Higher bands go first; within the band VTC interleaves tenants,
   * so another backlogged tenant u gets about (own + 1) x weight_u / weight_own turns before the new
   * request's, capped by what u has queued. Undefined while the band has no drain-rate history.
   */
  private estimateWaitMs(band: Band, lane: Lane, nowMs: number, own = lane.queue.size): number | undefined {
    const perMs = this.shedPerMs(band, nowMs);
    if (perMs === undefined) return undefined;
    let ahead = this.queuedAtOrAbove(band) - band.queued + own;
    for (const other of band.backlogged) {
      if (other === lane) continue;
      const turns = Math.ceil(((own + 1) * other.tenant.weight) / lane.tenant.weight);
      ahead += Math.min(other.queue.size, turns);
    }
    return (ahead + 1) / perMs;
  }

  /** Estimated wait of a request that would arrive in `band` now for a new tenant (everyone's turn first). */
  private bandWaitMs(band: Band, nowMs: number): number | undefined {
    const perMs = this.shedPerMs(band, nowMs);
    if (perMs === undefined) return undefined;
    return (this.queuedAtOrAbove(band) + 1) / perMs;
  }

  /** A lower bound on any queued request's wait in `band`: the bands above it go first. */
  private bandAboveWaitMs(band: Band, nowMs: number): number | undefined {
    const perMs = this.shedPerMs(band, nowMs);
    if (perMs === undefined) return undefined;
    return (this.queuedAtOrAbove(band) - band.queued + 1) / perMs;
  }

  /**
   * Refuses now, instead of at its deadline, each lane head whose estimated wait already passes it
   * (SY_ERR_SLO_UNREACHABLE with a Retry-After): a request that will expire anyway should not hold a
   * client for the rest of its deadline. Runs after the dispatch loop, so only requests the gate is
   * still holding back are judged; the head is the lane's earliest deadline and its shortest wait,
   * and the rest of the lane is judged as it reaches the head. Online bands only, and only with
   * shedOnEstimatedWait (the same estimate `offer` sheds on).
   */
  private shedHopeless(band: Band, nowMs: number, out: QueueRejection[]): void {
    if (band.offline || band.queued === 0 || !this.config.shedding.shedOnEstimatedWait) return;
    for (const lane of [...band.backlogged]) {
      for (;;) {
        const head = lane.queue.peek();
        if (head === undefined) break;
        const waitMs =
          band.backlogged.length <= SHED_LANES_EXACT_MAX
            ? this.estimateWaitMs(band, lane, nowMs, 0)
            : this.bandAboveWaitMs(band, nowMs);
        if (waitMs === undefined || nowMs + waitMs <= head.deadlineMs) break;
        this.dequeue(band, lane, nowMs);
        this.counts.expired += 1;
        out.push({
          request: head.request,
          code: 'SY_ERR_SLO_UNREACHABLE',
          reason: `estimated queueing wait ${Math.round(waitMs)} ms passes the deadline in ${Math.round(head.deadlineMs - nowMs)} ms (band '${band.config.name}')`,
          retryAfterMs: this.retryAfterMs(waitMs),
        });
      }
    }
  }

  /** A Retry-After hint: the wait estimate clamped to [retryAfterMinMs, retryAfterMaxMs]. */
  private retryAfterMs(waitMs: number | undefined): number {
    const { retryAfterMinMs, retryAfterMaxMs } = this.config.shedding;
    if (waitMs === undefined) return retryAfterMaxMs;
    return Math.min(retryAfterMaxMs, Math.max(retryAfterMinMs, Math.ceil(waitMs)));
  }
}
