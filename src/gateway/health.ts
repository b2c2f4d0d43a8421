/**
 * Health of each backend: `GET <healthPath>` every `intervalMs`; an instance is ejected after
 * `failuresToEject` consecutive failures (failed checks and connection errors while proxying both
 * count) and re-admitted after `successesToReadmit` consecutive successful checks, or at its first
 * successful check if it never passed one before (an engine still starting when the gateway did).
 *
 * A busy gateway must not eject healthy engines. When its event loop is blocked (a large body being
 * parsed), a health answer that arrived on time waits unread in the socket, and a plain timer would
 * time the check out before the loop reads it: timers run before I/O in each turn of the loop. So a
 * round's deadline counts only time the loop was free (`LoopFreeDeadline`): a stretch where a tick
 * came late counts as at most PROBE_TICK_CREDIT_FACTOR ticks. Expiry waits one more turn, so an
 * answer already in the socket is read first. A round that spent PROBE_WALL_FACTOR_MAX x `timeoutMs`
 * of wall time without `timeoutMs` of free loop ends without a verdict for its timed-out checks: no
 * strike, no success. A connection refused or a non-2xx answer is a failure whatever the loop did.
 *
 * Passive evidence: the gateway calls `noteProgress(id)` when a backend delivers proxied bytes; a
 * check that timed out on a backend that delivered bytes since the check began is not a strike.
 *
 * P/D roles (engine-role.ts): a passed check asks the engine its role until it matched once. A P/D
 * side (`RoleCheck.gates`) starts ejected and is admitted only when its engine confirms the role; a
 * check that cannot tell (the role question failed, the health check failed) keeps it out, naming why
 * (logged once per new reason). The gateway asks a backend added at run time at once (`checkNow`).
 */
import { setMaxListeners } from 'node:events';
import { type Dispatcher, request } from 'undici';
import type { HealthState } from '../policies/reliability.ts';
import type { HealthCheckConfig } from './config.ts';
import type { RoleCheck } from './engine-role.ts';
import type { ModelLenProbe } from './model-len.ts';

/** The ejection state machine lives with the twin's, in one pure module. */
export { HealthState } from '../policies/reliability.ts';

/** Longest tick of a round's deadline clock (shorter for short timeouts: timeoutMs / 10). */
export const PROBE_TICK_MS_MAX = 50;
/** A late tick counts as at most this many ticks of free loop: the rest was the loop blocked. */
export const PROBE_TICK_CREDIT_FACTOR = 2;
/** Wall time a round may take, in timeouts, before its timed-out checks end without a verdict. */
export const PROBE_WALL_FACTOR_MAX = 10;

/** One backend the checker watches. */
export interface HealthTarget {
  readonly id: string;
  /** Full URL of the health endpoint. */
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly state: HealthState;
  /**
   * The engine's P/D role, asked at successful checks until it matched once (engine-role.ts): a
   * mismatch ejects the instance at once and keeps it out until the engine reports the configured role.
   */
  readonly role?: RoleCheck | undefined;
  /**
   * The backend's /v1/models, asked at a passed check until it answered and again when the instance
   * comes back from ejection (model-len.ts): its `max_model_len`s, for the gateway's own /v1/models.
   */
  readonly modelLen?: ModelLenProbe | undefined;
  /** Why the instance is ejected (the gateway sets it at each ejection, clears it at re-admission). */
  ejectedReason?: string | undefined;
}

/**
 * What one check found: `eject` takes the instance out at once (a wrong P/D role), not after strikes;
 * `unconfirmed` keeps a P/D side out that passed the health check but whose role is not known yet.
 */
type Verdict =
  | { kind: 'ok'; reason?: string }
  | { kind: 'fail'; reason: string }
  | { kind: 'eject'; reason: string }
  | { kind: 'unconfirmed'; reason: string }
  | { kind: 'none' };

/**
 * A deadline of `timeoutMs` of free event loop: ticks every `tickMs`; each tick credits the time
 * since the last one, at most PROBE_TICK_CREDIT_FACTOR x `tickMs`. Calls `expire(lagged)` once,
 * a loop turn after the credit reached `timeoutMs` (lagged false) or the wall time reached
 * PROBE_WALL_FACTOR_MAX x `timeoutMs` first (lagged true).
 */
export class LoopFreeDeadline {
  private readonly tickMs: number;
  private readonly startMs = performance.now();
  private lastMs = this.startMs;
  private creditMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly expire: (lagged: boolean) => void,
  ) {
    this.tickMs = Math.max(1, Math.min(PROBE_TICK_MS_MAX, timeoutMs / 10));
    this.arm();
  }

  cancel(): void {
    clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
  }

  private arm(): void {
    this.timer = setTimeout(() => this.tick(), Math.min(this.tickMs, this.timeoutMs - this.creditMs));
  }

  private tick(): void {
    const nowMs = performance.now();
    this.creditMs += Math.min(nowMs - this.lastMs, this.tickMs * PROBE_TICK_CREDIT_FACTOR);
    this.lastMs = nowMs;
    const lagged = nowMs - this.startMs >= this.timeoutMs * PROBE_WALL_FACTOR_MAX;
    if (this.creditMs < this.timeoutMs && !lagged) {
      this.arm();
      return;
    }
    // Timers run before I/O in a loop turn: let the poll phase read what already arrived first.
    this.immediate = setImmediate(() => this.expire(lagged && this.creditMs < this.timeoutMs));
  }
}

/** Periodic health checks of every target; `onChange` hears ejections and re-admissions. */
export class HealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;
  /** performance.now() of the last bytes each backend delivered to a proxied request. */
  private readonly progressMs = new Map<string, number>();
  /** Why each target out of service was last said to be out (a new reason is said again). */
  private readonly told = new WeakMap<HealthTarget, string>();

  /** `targets` is the caller's list, read at each round: it may add and remove targets between rounds. */
  constructor(
    private readonly targets: readonly HealthTarget[],
    private readonly config: HealthCheckConfig,
    private readonly dispatcher: Dispatcher,
    private readonly onChange: (id: string, healthy: boolean, reason: string) => void,
  ) {}

  /** Starts the periodic checks (the first round runs at once). */
  start(): void {
    this.schedule(0);
  }

  /** One round over every target, in parallel; resolves when all answered or timed out. */
  checkAll(): Promise<void> {
    // The gateway may add or remove targets while a round runs: verdicts go to this round's targets.
    return this.round([...this.targets]);
  }

  /**
   * A round of one: `target` (a backend added at run time) checked now rather than at the next
   * round, under the same deadline. A P/D side is admitted here once its engine confirms the role.
   */
  checkNow(target: HealthTarget): Promise<void> {
    return this.round([target]);
  }

  private async round(targets: readonly HealthTarget[]): Promise<void> {
    const round = new AbortController();
    // Up to three 'abort' listeners per target (probe's cut, and undici's for a P/D role check and
    // for the /v1/models ask), each removed when its check ends: past Node's default of 10, a
    // gateway with 11 or more engines printed a MaxListenersExceededWarning ("possible memory
    // leak") at its first round.
    setMaxListeners(3 * targets.length + 10, round.signal);
    let lagged = false;
    const deadline = new LoopFreeDeadline(this.config.timeoutMs, (l) => {
      lagged = l;
      round.abort();
    });
    try {
      const verdicts = await Promise.all(targets.map((t) => this.probe(t, round.signal, () => lagged)));
      if (this.closed) return;
      for (const [i, t] of targets.entries()) this.apply(t, verdicts[i]!);
    } finally {
      deadline.cancel();
    }
  }

  /**
   * Passive evidence that backend `id` is alive: it delivered bytes of a proxied response at `atMs`
   * (performance.now(), the gateway's clock). A check of `id` that times out after `atMs` is then
   * not counted against it. For the proxy's stall detection and the gateway's first-byte and
   * end-of-attempt hooks.
   */
  noteProgress(id: string, atMs: number = performance.now()): void {
    const last = this.progressMs.get(id);
    if (last === undefined || atMs > last) this.progressMs.set(id, atMs);
  }

  /** A connection error while proxying counts as a failed check. */
  reportConnectFailure(target: HealthTarget, reason: string): void {
    if (target.state.fail()) this.onChange(target.id, false, reason);
  }

  stop(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      if (this.running) return;
      this.running = true;
      void this.checkAll().finally(() => {
        this.running = false;
        this.schedule(this.config.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  private apply(target: HealthTarget, verdict: Verdict): void {
    if (verdict.kind === 'ok') {
      if (target.state.succeed()) {
        this.told.delete(target);
        this.onChange(target.id, true, verdict.reason ?? 'health checks pass');
      }
    } else if (verdict.kind === 'fail') {
      if (target.state.fail()) this.out(target, verdict.reason);
      // A P/D side never admitted: why it is still out.
      else if (this.unconfirmed(target)) this.sayOut(target, `${pendingRole(target)}: ${verdict.reason}`);
    } else if (verdict.kind === 'eject') {
      // As many strikes as ejection takes; an instance already out says the new reason only.
      let ejected = false;
      for (let k = 0; k < this.config.failuresToEject && target.state.healthy; k++)
        ejected = target.state.fail();
      if (ejected) this.out(target, verdict.reason);
      else this.sayOut(target, verdict.reason);
    } else if (verdict.kind === 'unconfirmed') this.sayOut(target, verdict.reason);
  }

  /** `target` was just ejected for `reason`. */
  private out(target: HealthTarget, reason: string): void {
    this.told.set(target, reason);
    this.onChange(target.id, false, reason);
  }

  /** `target` is out already: says `reason` if it is a new one. */
  private sayOut(target: HealthTarget, reason: string): void {
    if (target.state.healthy || this.told.get(target) === reason) return;
    this.out(target, reason);
  }

  /** A P/D side whose engine has not yet confirmed its role (so it is out of service). */
  private unconfirmed(target: HealthTarget): boolean {
    return target.role?.gates === true && !target.role.matched;
  }

  /**
   * A passed check of `target` whose engine's role is not yet known to match: asks it, within the
   * round's deadline (an answer cut by it is no verdict on the role: asked again next round).
   */
  private async roleVerdict(target: HealthTarget, signal: AbortSignal): Promise<Verdict> {
    const role = target.role;
    if (role === undefined || role.matched) return { kind: 'ok' };
    const finding = await role.ask(this.dispatcher, target.headers, signal);
    if (finding.kind === 'mismatch') return { kind: 'eject', reason: finding.reason };
    if (finding.kind === 'match') {
      role.matched = true;
      return {
        kind: 'ok',
        reason: `health checks pass; role ${role.configured} confirmed (its ${role.where})`,
      };
    }
    // A P/D side stays out until its role is known; a whole-request backend is served meanwhile.
    if (role.gates) return { kind: 'unconfirmed', reason: `${pendingRole(target)}: ${finding.reason}` };
    return { kind: 'ok' };
  }

  /** A passed check of `target`: its /v1/models read when due (model-len.ts); never a verdict. */
  private async askModelLen(target: HealthTarget, signal: AbortSignal): Promise<void> {
    const probe = target.modelLen;
    if (probe === undefined || !probe.due(target.state.healthy)) return;
    await probe.ask(this.dispatcher, target.headers, signal);
  }

  /**
   * One check of `target`, cut when the round's deadline expires (unless its answer's head arrived:
   * then its body, empty for a health answer, is left to undici's body timeout).
   */
  private async probe(target: HealthTarget, round: AbortSignal, lagged: () => boolean): Promise<Verdict> {
    const startMs = performance.now();
    const own = new AbortController();
    let head = false;
    const cut = (): void => {
      if (!head) own.abort(new Error(`no answer within ${this.config.timeoutMs} ms`));
    };
    round.addEventListener('abort', cut, { once: true });
    // undici's own timers would fire before the loop reads a late-processed answer: the round's
    // deadline decides, and these only bound a wait the round never cuts.
    const undiciTimeoutMs = this.config.timeoutMs * (PROBE_WALL_FACTOR_MAX + 1);
    try {
      const res = await request(target.url, {
        dispatcher: this.dispatcher,
        method: 'GET',
        headers: target.headers,
        headersTimeout: undiciTimeoutMs,
        bodyTimeout: undiciTimeoutMs,
        signal: own.signal,
      });
      head = true;
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) {
        const [verdict] = await Promise.all([
          this.roleVerdict(target, round),
          this.askModelLen(target, round),
        ]);
        return verdict;
      }
      return { kind: 'fail', reason: `health check answered ${res.statusCode}` };
    } catch (error) {
      if (own.signal.aborted) {
        if (lagged()) return { kind: 'none' };
        if ((this.progressMs.get(target.id) ?? Number.NEGATIVE_INFINITY) >= startMs) return { kind: 'none' };
      }
      return { kind: 'fail', reason: `health check failed: ${(error as Error).message}` };
    } finally {
      round.removeEventListener('abort', cut);
    }
  }
}

/** The start of the reason a P/D side is out before its engine confirmed the role. */
export function pendingRole(target: Pick<HealthTarget, 'role'>): string {
  const role = target.role;
  return role === undefined
    ? 'role not checked'
    : `role ${role.configured} not yet confirmed (its ${role.where})`;
}
