/**
 * The live actuator: moves a pool of `maxInstances` engine slots toward a loop's decision by
 * starting engines (through an `EngineLauncher`, src/adapters/engine-launcher.ts) and draining them
 * out of the gateway. Slot k is backend `engine-k`.
 *
 * A slot goes stopped -> starting (launched, not yet answering its health check; not in the gateway)
 * -> ready (added to the gateway's backends) -> draining (marked draining: the gateway routes it
 * nothing new, requests already there finish there) -> stopping (no request in flight: removed from
 * the gateway, process stopping) -> stopped. A slot is reused only once its process exited, so at
 * most `maxInstances` processes exist at any moment.
 *
 * More wanted: a draining slot comes back first (its process is warm), then the lowest-index stopped
 * slots start. Fewer wanted: starting slots are cancelled first (they hold no request), then the
 * highest-index ready slots drain. A start that fails or times out is counted (`startFailures`) and
 * its slot is free again; the next decision retries it, so a failing engine is retried once per
 * tick, never in a tight loop (`onStartFailed` hears each failure: requests waiting for a first
 * instance fail then). Decisions arrive through `apply`; the actuator reads the clock only to stamp
 * phase changes that complete between ticks. A slot whose process exits while the last decision
 * wants more engines than are up starts again at once, not at the next tick (a scale from zero
 * that arrives while the last engine is still stopping).
 *
 * With `sleep` (vLLM's sleep mode, `switchyard serve --sleep`), a drained engine that was serving
 * goes to sleep instead of stopping when `sleep.take()` grants it a place (the bounds on sleepers,
 * src/control/serverless/live-sleep.ts): ready -> draining -> sleeping (out of the gateway,
 * `engine.sleep()` in progress) -> asleep (its process kept, its slot held). More wanted: draining
 * slots come back first, then asleep slots wake (`engine.wakeUp()`: the slot is `starting` until
 * the wake returns, then back in the gateway), then stopped slots start. A wake that fails (the
 * engine died, an HTTP error) stops that process and the slot starts afresh; a sleeper whose
 * process exits (`engineExited`) or that slept `sleep.sleepMaxMs` is stopped.
 *
 * Boot into sleep (`boot()`, the twin's `bootIntoSleep`; serve decides which models and when, by
 * `bootQueue`'s order): a pool that never had an engine launches one straight into sleep, holding a
 * sleeper's place from the launch on: stopped -> booting (launched, not in the gateway, no instance
 * the loop sees) -> sleeping -> asleep, its process kept. Once per pool. Demand first: more wanted
 * while it boots adopts the launch as a start (the slot is `starting`, its place released; it enters
 * the gateway when up, sooner than a second launch would be); `abandonBoot()` cancels one to make
 * room for a demand start. A boot whose launch fails is counted (`bootCounts.bootFailures`), never
 * retried, and leaves the pool at zero: its first request starts an engine as without boots.
 */
import type { Clock } from '../core/clock.ts';
import type { InstanceId, ModelId } from '../core/ids.ts';
import {
  type Actuator,
  type ControlAction,
  type ControlDecision,
  type InstancePhase,
  type ManagedInstance,
  totalReplicas,
  type Variant,
} from './types.ts';

/** A started engine, answering its health check. */
export interface LaunchedEngine {
  /** Base URL of its OpenAI API. */
  readonly url: string;
  /** Its KV-event endpoint, or null. */
  readonly kvEvents: string | null;
  /** The model name requests use. */
  readonly model: string;
  readonly pid: number;
  /** Stops the process (SIGTERM, SIGKILL after a grace period); resolves when it exited. */
  stop(): Promise<void>;
  /** Sleep mode: puts the engine to sleep (vLLM `POST /sleep?level=1`); rejects when it did not. */
  sleep?(): Promise<void>;
  /** Sleep mode: wakes it (vLLM `POST /wake_up`); resolves once it serves again, rejects otherwise. */
  wakeUp?(): Promise<void>;
  /**
   * Re-target: the process now serves another model's pool (its weights swapped in place), so its
   * supervisor restarts it, if it dies, on `to.args`, reports its exits to `to.onExit`, and its lines
   * (its own stderr, its restarts) go to `to.log` under slot `to.index`.
   */
  reassign?(to: EngineAssignment): void;
  /**
   * Re-target: this launch is another model's asleep process with its weights swapped in place, not
   * a fresh start, so its time is kept out of `lastStartupMs` (the twin's policies read a model's
   * fresh start-up there, and an eviction priced at a swap would read as cheap).
   */
  readonly retargeted?: boolean;
}

/** Where a re-targeted engine's process belongs from now on (`LaunchedEngine.reassign`). */
export interface EngineAssignment {
  /** The engine flags a restart of the process uses (the model it now serves). */
  readonly args: readonly string[];
  /** Its slot in the pool it now belongs to (its lines' `[engine k]`). */
  readonly index: number;
  /** Where its lines go from now on: that pool's log (several models' lines carry their model). */
  log(line: string): void;
  /** Its process exited; `gaveUp`: its supervisor will not restart it. */
  onExit(gaveUp: boolean): void;
}

/**
 * Starts engines one at a time; `index` is the slot (log prefixes). Rejects when a start fails, or
 * soon after `signal` aborts (a cancelled start: its process is stopped, not left loading).
 */
export interface EngineLauncher {
  launch(index: number, signal?: AbortSignal): Promise<LaunchedEngine>;
}

/** What the actuator does to the gateway in front of its engines. */
export interface BackendPool {
  /** Puts a started engine in service as backend `id`. */
  add(id: InstanceId, engine: LaunchedEngine): void;
  setDraining(id: InstanceId, draining: boolean): void;
  /** Requests the gateway has in flight on `id`. */
  inFlight(id: InstanceId): number;
  /** Takes `id` out of the gateway (it has nothing in flight). */
  remove(id: InstanceId): void;
}

/** Options of a `LocalActuator`. */
export interface LocalActuatorOptions {
  readonly variant: Variant;
  /** Slots, and so the most engine processes at any moment. */
  readonly maxInstances: number;
  readonly launcher: EngineLauncher;
  readonly backends: BackendPool;
  /** The host's clock: stamps starts that complete between ticks. */
  readonly clock: Clock;
  /** Engines already started and in the gateway as `engine-0`.. (serve's minimum, started first). */
  readonly initial?: readonly LaunchedEngine[];
  /** One line per start, failure, drain and stop. */
  readonly log?: (line: string) => void;
  /** Backend id of slot `index` (default `slotId`: engine-0..); per-model pools prefix theirs. */
  readonly slotId?: (index: number) => InstanceId;
  /** A start failed; `active` engines are still starting or ready after it. */
  readonly onStartFailed?: (error: Error, active: number) => void;
  /** Sleep mode (see the file comment); engines without `sleep`/`wakeUp` just stop. */
  readonly sleep?: {
    /** A drained engine may sleep: takes a sleeper's place when the bounds allow. */
    take(): boolean;
    /** A sleeper's place is free again (it woke, stopped or died). */
    release(): void;
    /** A sleeper asleep this long is stopped. */
    readonly sleepMaxMs: number;
  };
}

type SlotPhase = InstancePhase | 'stopping' | 'stopped' | 'booting' | 'sleeping' | 'asleep';

interface Slot {
  readonly index: number;
  readonly id: InstanceId;
  phase: SlotPhase;
  sinceMs: number;
  engine: LaunchedEngine | undefined;
  /** Bumped when a start is cancelled: a launch that completes under an old generation is stopped. */
  generation: number;
  /** The launch or stop in progress (resolves, never rejects). */
  pending: Promise<void> | undefined;
  /** Aborts the launch in progress (a cancelled start or boot, shutdown); undefined when none runs. */
  launchAbort: AbortController | undefined;
  /** Starting by a wake from sleep (not a launch). */
  waking: boolean;
  /** Its process exited while it slept, went to sleep or woke: it is stopped, never woken. */
  died: boolean;
  /** Drained because its engine was lost: it stops, never sleeps. */
  lost: boolean;
}

/** The backend id of slot `index`. */
export function slotId(index: number): InstanceId {
  return `engine-${index}`;
}

/** Local engines under a control loop's decisions (see the file comment). */
export class LocalActuator implements Actuator {
  /** Launches that failed or timed out. */
  startFailures = 0;
  /** Launches asked for (initial engines not counted). */
  starts = 0;
  /** Engines stopped after a drain. */
  stops = 0;
  /**
   * The last fresh start that came up: spawn (or a standby's hand-over) to ready, in ms on the host's
   * clock (undefined: none yet). Re-targeted launches are kept out: `lastRetargetMs`.
   */
  lastStartupMs: number | undefined;
  /** The last re-targeted launch that came up: its swap and wake to ready, in ms (undefined: none). */
  lastRetargetMs: number | undefined;
  /**
   * Sleep mode: engines put to sleep, woken, wakes that failed (a fresh start followed), sleeps that
   * failed (the engine refused or never answered `POST /sleep`: stopped, never asleep), and sleepers
   * stopped (asleep past the bound, or whose process exited).
   */
  readonly sleepCounts = { sleeps: 0, wakes: 0, wakeFailures: 0, sleepFailures: 0, sleepersStopped: 0 };
  /**
   * Boot into sleep: boot launches begun, those that failed to start (the pool stays at zero), and
   * those abandoned for a demand start's room (`abandonBoot`). A boot adopted by demand while it
   * launched counts in `starts` too.
   */
  readonly bootCounts = { boots: 0, bootFailures: 0, bootsAbandoned: 0 };
  /** The last wake that came up: from the wake's start to ready, in ms (undefined: none yet). */
  lastWakeMs: number | undefined;
  /** Re-target: asleep engines handed to another model's pool (`giveUpSleeper`). */
  sleepersGivenUp = 0;
  private readonly slots: Slot[];
  private readonly log: (line: string) => void;
  private closed = false;
  /** What the last decision wanted (clamped), kept to restart a slot that stopped meanwhile. */
  private wanted: number;

  constructor(private readonly options: LocalActuatorOptions) {
    const { maxInstances, initial = [] } = options;
    if (!Number.isInteger(maxInstances) || maxInstances < 1)
      throw new RangeError(`maxInstances ${maxInstances}: expected an integer >= 1`);
    if (initial.length > maxInstances)
      throw new RangeError(`${initial.length} initial engines exceed maxInstances ${maxInstances}`);
    this.log = options.log ?? (() => {});
    const nowMs = options.clock.nowMs();
    const idOf = options.slotId ?? slotId;
    this.wanted = initial.length;
    this.slots = Array.from({ length: maxInstances }, (_, index) => {
      const engine = initial[index];
      return {
        index,
        id: idOf(index),
        phase: engine === undefined ? 'stopped' : 'ready',
        sinceMs: nowMs,
        engine,
        generation: 0,
        pending: undefined,
        launchAbort: undefined,
        waking: false,
        died: false,
        lost: false,
      };
    });
  }

  /** Instances in phases the control layer knows (stopping and stopped slots are not listed). */
  instances(_model?: ModelId): readonly ManagedInstance[] {
    const out: ManagedInstance[] = [];
    for (const s of this.slots) {
      if (
        s.phase === 'stopped' ||
        s.phase === 'stopping' ||
        s.phase === 'booting' ||
        s.phase === 'sleeping' ||
        s.phase === 'asleep'
      )
        continue;
      out.push({ id: s.id, variant: this.options.variant, phase: s.phase, sinceMs: s.sinceMs });
    }
    return out;
  }

  /** Slots per phase, every phase listed (the replica gauges). */
  counts(): Record<SlotPhase, number> {
    const c: Record<SlotPhase, number> = {
      pending: 0,
      starting: 0,
      ready: 0,
      draining: 0,
      stopping: 0,
      stopped: 0,
      booting: 0,
      sleeping: 0,
      asleep: 0,
    };
    for (const s of this.slots) c[s.phase]++;
    return c;
  }

  /** Moves the pool toward `decision` (clamped to 0..maxInstances); returns what it did. */
  apply(_model: ModelId, decision: ControlDecision, nowMs: number): readonly ControlAction[] {
    if (this.closed) return [];
    this.wanted = Math.max(0, Math.min(this.slots.length, Math.round(totalReplicas(decision))));
    return this.moveTo(this.wanted, nowMs);
  }

  /** Engines starting or ready. */
  get active(): number {
    return this.count('starting') + this.count('ready');
  }

  private moveTo(wanted: number, nowMs: number): readonly ControlAction[] {
    this.settle(nowMs);
    const actions: ControlAction[] = [];
    const variant = this.options.variant;
    let active = this.count('starting') + this.count('ready');
    for (const s of this.slots) {
      if (active >= wanted) break;
      if (s.phase !== 'draining') continue;
      // Warm and still in the gateway: back in service at once.
      this.options.backends.setDraining(s.id, false);
      this.enter(s, 'ready', nowMs);
      this.log(`engine ${s.index} back in service (was draining)`);
      actions.push({ kind: 'start', variant, instanceId: s.id });
      active++;
    }
    for (const s of this.slots) {
      if (active >= wanted) break;
      if (s.phase !== 'asleep') continue;
      // Its process is up and its weights in host memory: a wake, not a start.
      this.wake(s, nowMs);
      actions.push({ kind: 'start', variant, instanceId: s.id });
      active++;
    }
    for (const s of this.slots) {
      if (active >= wanted) break;
      if (s.phase !== 'sleeping') continue;
      // Going to sleep: its sleep's completion wakes it (trySleep), sooner than a cold start would
      // be ready, and no second engine ends up beside a sleeper.
      active++;
    }
    for (const s of this.slots) {
      if (active >= wanted) break;
      if (s.phase !== 'booting') continue;
      // Its launch is under way: it serves when up, sooner than a second launch would.
      this.adoptBoot(s);
      actions.push({ kind: 'start', variant, instanceId: s.id });
      active++;
    }
    for (const s of this.slots) {
      if (active >= wanted) break;
      if (s.phase !== 'stopped') continue;
      this.start(s, nowMs);
      actions.push({ kind: 'start', variant, instanceId: s.id });
      active++;
    }
    for (const phase of ['starting', 'ready'] as const) {
      for (let k = this.slots.length - 1; k >= 0 && active > wanted; k--) {
        const s = this.slots[k] as Slot;
        if (s.phase !== phase) continue;
        active--;
        actions.push({ kind: 'drain', instanceId: s.id });
        if (phase === 'starting') {
          // Its launch is aborted (the engine stops, loading or not); the slot is reused after that.
          this.cancelLaunch(s);
          this.enter(s, 'stopping', nowMs);
          this.log(`engine ${s.index}: start cancelled`);
        } else {
          this.options.backends.setDraining(s.id, true);
          this.enter(s, 'draining', nowMs);
          this.log(`engine ${s.index} draining (${this.options.backends.inFlight(s.id)} in flight)`);
        }
      }
    }
    this.settle(nowMs);
    return actions;
  }

  /**
   * Stops every draining engine with nothing left in flight: out of the gateway, then its process.
   * The runner calls it between ticks too, so a drained engine does not wait a whole interval.
   */
  settle(nowMs: number): void {
    for (const s of this.slots) {
      if (s.phase === 'asleep' && nowMs - s.sinceMs >= (this.options.sleep?.sleepMaxMs ?? Infinity)) {
        this.stopSleeper(s, nowMs, `asleep for ${Math.round(nowMs - s.sinceMs)} ms`);
        continue;
      }
      if (s.phase !== 'draining' || this.options.backends.inFlight(s.id) > 0) continue;
      this.options.backends.remove(s.id);
      if (this.trySleep(s, nowMs)) continue;
      this.stopSlot(s, nowMs);
    }
  }

  /** Out of the gateway already: its process stops, then the slot is free. */
  private stopSlot(s: Slot, nowMs: number): void {
    this.enter(s, 'stopping', nowMs);
    const engine = s.engine;
    s.engine = undefined;
    s.pending = (engine?.stop() ?? Promise.resolve()).then(
      () => this.stopped(s),
      () => this.stopped(s),
    );
  }

  /** A drained engine goes to sleep instead of stopping, when it can and the bounds allow. */
  private trySleep(s: Slot, nowMs: number): boolean {
    const engine = s.engine;
    const sleep = this.options.sleep;
    if (sleep === undefined || engine?.sleep === undefined || this.closed || s.lost || s.died) return false;
    if (!sleep.take()) return false;
    this.putToSleep(s, engine, nowMs);
    return true;
  }

  /** `POST /sleep` on a slot's engine whose sleeper place is taken: sleeping, then asleep. */
  private putToSleep(s: Slot, engine: LaunchedEngine, nowMs: number): void {
    this.enter(s, 'sleeping', nowMs);
    const generation = s.generation;
    const sleep = engine.sleep?.() ?? Promise.reject(new Error('the engine has no sleep mode'));
    s.pending = sleep.then(
      () => {
        s.pending = undefined;
        if (s.generation !== generation || s.phase !== 'sleeping') return;
        if (s.died) {
          this.stopSleeper(s, this.options.clock.nowMs(), 'its process exited');
          return;
        }
        this.sleepCounts.sleeps++;
        this.enter(s, 'asleep', this.options.clock.nowMs());
        this.log(`engine ${s.index} asleep (pid ${engine.pid})`);
        // Wanted back while it went to sleep: wake it now.
        if (this.active < this.wanted) this.moveTo(this.wanted, this.options.clock.nowMs());
      },
      (error: Error) => {
        s.pending = undefined;
        if (s.generation !== generation || s.phase !== 'sleeping') return;
        this.sleepCounts.sleepFailures++;
        this.stopSleeper(s, this.options.clock.nowMs(), `sleep failed: ${error.message}`, false);
      },
    );
  }

  /**
   * The pool never had an engine (no launch, no initial engine): the twin's "never started in the
   * run", what `bootQueue` reads.
   */
  get everStarted(): boolean {
    return (
      this.starts > 0 ||
      this.bootCounts.boots > 0 ||
      (this.options.initial?.length ?? 0) > 0 ||
      this.slots.some((s) => s.phase !== 'stopped')
    );
  }

  /**
   * Boot into sleep (see the file comment): launches an engine straight into sleep when the pool
   * never had one, sleep mode is on and `sleep.take()` grants a sleeper's place. False: not booted.
   */
  boot(nowMs: number): boolean {
    const sleep = this.options.sleep;
    const s = this.slots[0];
    if (sleep === undefined || s === undefined || this.closed || this.everStarted) return false;
    if (!sleep.take()) return false;
    this.enter(s, 'booting', nowMs);
    this.bootCounts.boots++;
    const generation = s.generation;
    this.log(`booting engine ${s.index} into sleep`);
    s.pending = this.launch(s).then(
      (engine) => this.launched(s, generation, engine),
      (error: Error) => this.bootFailed(s, generation, error),
    );
    return true;
  }

  /** Engines booting into sleep (launched, not yet asleep or adopted). */
  get booting(): number {
    return this.count('booting');
  }

  /**
   * Cancels a boot still launching (a demand start needs its room): its sleeper place is freed at
   * once, its engine stopped when the launch completes. Once per pool: it is not booted again.
   */
  abandonBoot(nowMs: number, why: string): boolean {
    const s = this.slots.find((x) => x.phase === 'booting');
    if (s === undefined) return false;
    this.cancelLaunch(s);
    this.options.sleep?.release();
    this.bootCounts.bootsAbandoned++;
    this.enter(s, 'stopping', nowMs);
    this.log(`engine ${s.index}: boot abandoned (${why})`);
    return true;
  }

  /** Demand while a boot launches: the launch becomes a start (its spawn time kept for the start-up). */
  private adoptBoot(s: Slot): void {
    this.options.sleep?.release();
    s.phase = 'starting';
    this.starts++;
    this.log(`engine ${s.index}: boot taken over by demand (serves once up)`);
  }

  /** A boot's launch failed: counted, its place freed; the pool stays at zero, never retried. */
  private bootFailed(s: Slot, generation: number, error: Error): void {
    s.pending = undefined;
    if (s.generation !== generation || this.closed) {
      this.stopped(s);
      return;
    }
    if (s.phase === 'starting') {
      // Adopted by demand: a start that failed, heard as one.
      this.startFailed(s, error);
      return;
    }
    this.options.sleep?.release();
    this.bootCounts.bootFailures++;
    this.log(`engine ${s.index} failed to boot (left at zero): ${error.message}`);
    this.enter(s, 'stopped', this.options.clock.nowMs());
  }

  /**
   * Stops a sleeper (asleep or going to sleep): its place is freed, its process stopped. `slept`
   * false: its sleep failed (counted as such, not as a sleeper stopped).
   */
  private stopSleeper(s: Slot, nowMs: number, why: string, slept = true): void {
    this.options.sleep?.release();
    if (slept) this.sleepCounts.sleepersStopped++;
    this.log(`engine ${s.index} stopped asleep (${why})`);
    this.stopSlot(s, nowMs);
  }

  /**
   * Re-target (serve --retarget): hands one asleep engine's process to another model's pool without
   * stopping it. Its sleeper place is freed and its slot is stopped at once (free for a later start of
   * this model); the caller owns the engine from here (swaps its weights or stops it). Undefined
   * when no engine of this pool is asleep.
   */
  giveUpSleeper(nowMs: number): LaunchedEngine | undefined {
    const s = this.slots.find((x) => x.phase === 'asleep' && !x.died && x.engine !== undefined);
    if (s === undefined || this.closed) return undefined;
    const engine = s.engine as LaunchedEngine;
    this.options.sleep?.release();
    s.engine = undefined;
    // A completion of anything still pending on the slot must not touch what starts there next.
    s.generation++;
    this.sleepersGivenUp++;
    this.enter(s, 'stopped', nowMs);
    this.log(`engine ${s.index} (pid ${engine.pid}) handed asleep to another model`);
    return engine;
  }

  /** Wakes an asleep slot: `starting` until the engine answers its wake, then back in the gateway. */
  private wake(s: Slot, nowMs: number): void {
    const engine = s.engine as LaunchedEngine;
    this.options.sleep?.release();
    this.enter(s, 'starting', nowMs);
    s.waking = true;
    const generation = s.generation;
    this.log(`waking engine ${s.index} (pid ${engine.pid})`);
    const wakeUp = engine.wakeUp?.() ?? Promise.reject(new Error('the engine has no sleep mode'));
    s.pending = wakeUp.then(
      () => this.woken(s, generation, engine),
      (error: Error) => this.wakeFailed(s, generation, error),
    );
  }

  private woken(s: Slot, generation: number, engine: LaunchedEngine): void {
    s.pending = undefined;
    s.waking = false;
    if (s.died) {
      this.wakeFailed(s, generation, new Error('its process exited while it slept'));
      return;
    }
    if (s.generation !== generation || this.closed) {
      // Cancelled while waking (fewer wanted): it stops like a cancelled start.
      s.engine = undefined;
      s.pending = engine.stop().then(
        () => this.stopped(s),
        () => this.stopped(s),
      );
      return;
    }
    try {
      this.options.backends.add(s.id, engine);
    } catch (error) {
      this.wakeFailed(s, generation, error as Error);
      return;
    }
    const nowMs = this.options.clock.nowMs();
    this.lastWakeMs = nowMs - s.sinceMs;
    this.sleepCounts.wakes++;
    this.enter(s, 'ready', nowMs);
    this.log(
      `engine ${s.index} awake at ${engine.url} (pid ${engine.pid}, wake ${Math.round(this.lastWakeMs)} ms)`,
    );
  }

  /** A wake failed: that process stops and, still wanted, the slot starts afresh once it exited. */
  private wakeFailed(s: Slot, generation: number, error: Error): void {
    s.pending = undefined;
    s.waking = false;
    if (s.generation !== generation || this.closed) {
      const engine = s.engine;
      s.engine = undefined;
      s.pending = (engine?.stop() ?? Promise.resolve()).then(
        () => this.stopped(s),
        () => this.stopped(s),
      );
      return;
    }
    this.sleepCounts.wakeFailures++;
    this.log(`engine ${s.index} failed to wake (${error.message}): starting it afresh`);
    this.stopSlot(s, this.options.clock.nowMs());
  }

  /**
   * A slot's process exited (its supervisor may restart it). A sleeper is stopped rather than left
   * to a restart that would load the model again for no request; a ready engine is the
   * supervisor's to restart, as before.
   */
  engineExited(index: number): void {
    const s = this.slots[index];
    if (s === undefined) return;
    if (s.phase === 'asleep') {
      s.died = true;
      this.stopSleeper(s, this.options.clock.nowMs(), 'its process exited');
    } else if (s.phase === 'sleeping' || (s.phase === 'starting' && s.waking)) s.died = true;
  }

  /** A ready engine died for good (its supervisor gave up): drain it out like a scale-down. */
  engineLost(index: number): void {
    const s = this.slots[index];
    if (s === undefined || s.phase !== 'ready') return;
    s.lost = true;
    this.options.backends.setDraining(s.id, true);
    this.enter(s, 'draining', this.options.clock.nowMs());
    this.log(`engine ${s.index} lost: draining it out`);
  }

  /** Some slot is starting, draining or stopping (work in progress between ticks). */
  get busy(): boolean {
    return this.slots.some(
      (s) =>
        s.phase === 'starting' ||
        s.phase === 'booting' ||
        s.phase === 'draining' ||
        s.phase === 'stopping' ||
        s.phase === 'sleeping',
    );
  }

  /** Stops every engine (shutdown, after the gateway closed) and waits for launches in progress. */
  async close(): Promise<void> {
    this.closed = true;
    const waits: Promise<void>[] = [];
    for (const s of this.slots) {
      // A launch still loading is stopped now, not awaited to its end (a large model takes minutes).
      this.cancelLaunch(s);
      if (s.pending !== undefined) waits.push(s.pending);
      if (s.engine !== undefined) waits.push(s.engine.stop().catch(() => {}));
      s.engine = undefined;
    }
    await Promise.all(waits);
  }

  private start(s: Slot, nowMs: number): void {
    this.enter(s, 'starting', nowMs);
    this.starts++;
    const generation = s.generation;
    this.log(`starting engine ${s.index}`);
    s.pending = this.launch(s).then(
      (engine) => this.launched(s, generation, engine),
      (error: Error) => {
        s.pending = undefined;
        if (s.generation === generation && !this.closed) this.startFailed(s, error);
        else this.stopped(s);
      },
    );
  }

  /** Launches slot `s`'s engine, abortable through `s.launchAbort` until the launch settles. */
  private launch(s: Slot): Promise<LaunchedEngine> {
    const abort = new AbortController();
    s.launchAbort = abort;
    const clear = () => {
      if (s.launchAbort === abort) s.launchAbort = undefined;
    };
    return this.options.launcher.launch(s.index, abort.signal).finally(clear);
  }

  /** A start or boot no longer wanted: a launch that still completes is stopped, one in progress aborted. */
  private cancelLaunch(s: Slot): void {
    s.generation++;
    s.launchAbort?.abort();
    s.launchAbort = undefined;
  }

  private startFailed(s: Slot, error: Error): void {
    this.startFailures++;
    this.log(`engine ${s.index} failed to start (${this.startFailures} so far): ${error.message}`);
    this.enter(s, 'stopped', this.options.clock.nowMs());
    this.options.onStartFailed?.(error, this.active);
  }

  private async launched(s: Slot, generation: number, engine: LaunchedEngine): Promise<void> {
    s.pending = undefined;
    if (s.generation !== generation || this.closed) {
      await engine.stop().catch(() => {});
      this.stopped(s);
      return;
    }
    if (s.phase === 'booting') {
      this.booted(s, engine);
      return;
    }
    try {
      this.options.backends.add(s.id, engine);
    } catch (error) {
      this.startFailures++;
      this.log(`engine ${s.index} started but the gateway refused it: ${(error as Error).message}`);
      await engine.stop().catch(() => {});
      this.enter(s, 'stopped', this.options.clock.nowMs());
      this.options.onStartFailed?.(error as Error, this.active);
      return;
    }
    s.engine = engine;
    const nowMs = this.options.clock.nowMs();
    if (engine.retargeted === true) this.lastRetargetMs = nowMs - s.sinceMs;
    else this.lastStartupMs = nowMs - s.sinceMs;
    this.enter(s, 'ready', nowMs);
    this.log(`engine ${s.index} ready at ${engine.url} (pid ${engine.pid})`);
  }

  /** A boot's engine is up: straight to sleep (its place was taken at the boot), never in the gateway. */
  private booted(s: Slot, engine: LaunchedEngine): void {
    s.engine = engine;
    const nowMs = this.options.clock.nowMs();
    this.lastStartupMs = nowMs - s.sinceMs;
    this.log(`engine ${s.index} booted (pid ${engine.pid}): going to sleep`);
    this.putToSleep(s, engine, nowMs);
  }

  private stopped(s: Slot): void {
    s.pending = undefined;
    if (s.phase !== 'stopping') return;
    this.stops++;
    const nowMs = this.options.clock.nowMs();
    this.enter(s, 'stopped', nowMs);
    this.log(`engine ${s.index} stopped`);
    // Wanted back while it was stopping (every other slot busy): its slot is free now.
    if (!this.closed && this.active < this.wanted) this.moveTo(this.wanted, nowMs);
  }

  private enter(s: Slot, phase: SlotPhase, nowMs: number): void {
    if (phase === 'stopped' || phase === 'starting') {
      // A fresh life for the slot (a wake sets `waking` after this).
      s.died = false;
      s.lost = false;
      s.waking = false;
    }
    s.phase = phase;
    s.sinceMs = nowMs;
  }

  private count(phase: SlotPhase): number {
    let n = 0;
    for (const s of this.slots) if (s.phase === phase) n++;
    return n;
  }
}
