/**
 * Starts built-in engines (`switchyard engine sim|llama`) as child processes on loopback, for
 * `switchyard serve` and for tests: each child listens on a free port and announces itself with one
 * JSON ready line on stdout (see src/cli/engine-command.ts); the supervisor collects those, forwards
 * the children's stderr with a prefix, reports a child that dies, and stops them all (SIGTERM, then
 * SIGKILL after a grace period).
 *
 * With a `restart` policy, a child that exits while it should be running is started again on the
 * same port (and the same KV-event endpoint), after a backoff that doubles from `backoffMsMin` to
 * `backoffMsMax`; past `restartsMax` restarts within `windowMs` the supervisor gives up on that
 * engine (one `onGiveUp`). The gateway in front sees the engine fail its health checks, then pass
 * them again, and re-admits it. A restart that finds its port taken by another process (the child
 * exits before it is ready with EADDRINUSE) is no crash: it is tried again on the same port after
 * `PORT_TAKEN_RETRY_MS`, up to `PORT_TAKEN_RETRIES_MAX` times in a row, without spending the restart
 * budget. The port stays the same because the gateway and its KV-event subscriber know the engine
 * by that URL and endpoint; another port would need them re-pointed.
 *
 * Each child runs in its own process group, so a terminal's Ctrl-C (or a wrapper signalling the
 * group) reaches only the supervisor, which drains first and then stops the engines in order. Each
 * child's stdin is a pipe the supervisor holds for the child's life: when the supervisor dies, however
 * it dies, the kernel closes it and the child exits (see `whenParentGone`).
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { SwitchyardError } from '../core/errors.ts';
import { keepStderrTail, parseReadyLine, spawnEngine, withStderrTail } from './engine-process.ts';

/** Default wait for a child's ready line: generous, a busy machine or a large model is slow to start. */
export const READY_TIMEOUT_MS_DEFAULT = 300_000;
/** Default wait between SIGTERM and SIGKILL when stopping. */
export const STOP_GRACE_MS_DEFAULT = 10_000;
/** Most engines one supervisor starts. */
export const LOCAL_ENGINES_MAX = 256;
/**
 * Tries in a row of a restart whose port is taken (another process bound it while the engine was
 * down), before such a failure counts as a crash again: 10 tries 0.5 s apart, plus each child's own
 * start, wait out a short-lived holder (a test, a port scanner, a client's ephemeral port).
 */
export const PORT_TAKEN_RETRIES_MAX = 10;
/** Wait before trying a taken port again. */
export const PORT_TAKEN_RETRY_MS = 500;
/** What a child that could not listen prints (Node's listen error; ZeroMQ's bind error). */
const PORT_TAKEN = /EADDRINUSE|address already in use/i;

/** One running engine child. */
export interface LocalEngine {
  /** Base URL of its OpenAI API, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** Its KV-event ZMQ endpoint, or null when it publishes none. */
  readonly kvEvents: string | null;
  /** The current child's pid (a restart changes it). */
  readonly pid: number;
  /** The model name requests must use. */
  readonly model: string;
}

/** The engines a supervisor started. */
export interface LocalEngines {
  readonly engines: readonly LocalEngine[];
  /** SIGTERM to every child, SIGKILL to those still alive after the grace period; resolves when all exited. */
  stop(): Promise<void>;
  /**
   * Restarts from now on spawn the children with `args` in place of the options' (a re-target swapped
   * the model an engine serves in place: a restart must come back on the new model, not the old).
   */
  setArgs(args: readonly string[]): void;
}

/** When and how often a child that died is started again. */
export interface RestartPolicy {
  /** Wait before the first restart; each restart within the window doubles it. */
  readonly backoffMsMin: number;
  /** Longest wait before a restart. */
  readonly backoffMsMax: number;
  /** Most restarts of one engine within `windowMs`; one more death and the supervisor gives up on it. */
  readonly restartsMax: number;
  readonly windowMs: number;
}

/** The restart policy `switchyard serve` uses: 0.5 s doubling to 10 s, at most 5 restarts a minute. */
export const RESTART_POLICY_DEFAULT: RestartPolicy = {
  backoffMsMin: 500,
  backoffMsMax: 10_000,
  restartsMax: 5,
  windowMs: 60_000,
};

/** Options of `startLocalEngines`. */
export interface LocalEnginesOptions {
  readonly count: number;
  readonly engine: 'sim' | 'llama';
  /** Flags passed to every child (`--port 0` is appended: each picks a free port). */
  readonly args: readonly string[];
  /** A child exited after it was ready and before `stop` (code or signal, as node reports them). */
  onExit?(index: number, code: number | null, signal: NodeJS.Signals | null): void;
  /** A child printed its ready line, `elapsedMs` after the supervisor spawned it (restarts too). */
  onReady?(index: number, engine: LocalEngine, elapsedMs: number): void;
  /** Restart children that die; unset: a dead child stays dead. */
  readonly restart?: RestartPolicy;
  /** A restart of engine `index` is due in `delayMs`; `restarts` counts those within the window, this one included. */
  onRestart?(index: number, restarts: number, delayMs: number): void;
  /** Engine `index` died again after `restarts` restarts within the window: it stays down. */
  onGiveUp?(index: number, restarts: number): void;
  /**
   * A restart of engine `index` found its port taken; it is tried again in `delayMs` (try `tries` of
   * at most PORT_TAKEN_RETRIES_MAX), outside the restart budget.
   */
  onPortTaken?(index: number, tries: number, delayMs: number): void;
  /** Wait for each ready line; default READY_TIMEOUT_MS_DEFAULT. */
  readonly readyTimeoutMs?: number;
  /** Wait between SIGTERM and SIGKILL; default STOP_GRACE_MS_DEFAULT. */
  readonly stopGraceMs?: number;
  /** Where the children's stderr goes, line by line with a `[engine i] ` prefix; default process.stderr. */
  readonly log?: (line: string) => void;
  /**
   * Cancels the start: every child is stopped at once (an engine still loading its model dies on
   * SIGTERM, which it only drains once it serves) and `startLocalEngines` rejects. Without it a
   * cancelled start would hold a process, and its model's memory, until the load ended. No effect
   * once the start resolved: `stop()` is for that.
   */
  readonly signal?: AbortSignal;
}

interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  alive: boolean;
}

/**
 * The wait before a restart when `recent` restarts happened within the window: `backoffMsMin`
 * doubled per recent restart, at most `backoffMsMax`.
 */
export function restartDelayMs(policy: RestartPolicy, recent: number): number {
  return Math.min(policy.backoffMsMax, policy.backoffMsMin * 2 ** Math.min(recent, 30));
}

/** One engine slot: its current child, what it announced, and its restart history. */
class Slot {
  child: Child | undefined;
  /** Set once the first child was ready: where restarts must listen again. */
  engine: LocalEngine | undefined;
  /** performance.now() of each restart within the window (oldest first). */
  readonly restartsMs: number[] = [];
  /** Restarts in a row that found the port taken, since the last child was ready. */
  portTakenTries = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(readonly index: number) {}
}

/** The supervisor proper; `startLocalEngines` is its public face. */
class Supervisor {
  private readonly slots: Slot[];
  private stopping = false;
  private readonly log: (line: string) => void;
  private readonly readyTimeoutMs: number;
  /** What children are spawned with (`setArgs` replaces it for restarts). */
  private args: readonly string[];

  constructor(private readonly options: LocalEnginesOptions) {
    this.args = options.args;
    this.slots = Array.from({ length: options.count }, (_, i) => new Slot(i));
    this.log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    this.readyTimeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS_DEFAULT;
  }

  /** Starts every child; resolves with the engines once all are ready (stopping all on a failure). */
  async start(): Promise<LocalEngines> {
    const readies = this.slots.map((slot) => this.spawn(slot));
    // The first failure stops the rest; their own rejections then have nobody to tell.
    for (const ready of readies) ready.catch(() => {});
    const cancel = cancelled(this.options.signal);
    try {
      await Promise.race([Promise.all(readies), cancel.promise]);
    } catch (error) {
      await this.stop();
      throw error;
    } finally {
      cancel.dispose();
    }
    const engines = this.slots.map((slot) => this.view(slot));
    return {
      engines,
      stop: () => this.stop(),
      setArgs: (args) => {
        this.args = [...args];
      },
    };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) clearTimeout(slot.timer);
    const children = this.slots.flatMap((s) => (s.child === undefined ? [] : [s.child]));
    for (const child of children) if (child.alive) child.process.kill('SIGTERM');
    const all = Promise.all(children.map((c) => c.exited));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.options.stopGraceMs ?? STOP_GRACE_MS_DEFAULT);
    });
    if ((await Promise.race([all, late])) === 'late') {
      for (const child of children) if (child.alive) child.process.kill('SIGKILL');
      await all;
    }
    clearTimeout(timer);
  }

  /** The slot's engine as callers see it: the pid follows restarts. */
  private view(slot: Slot): LocalEngine {
    const engine = slot.engine!;
    return {
      url: engine.url,
      model: engine.model,
      kvEvents: engine.kvEvents,
      get pid() {
        return slot.child?.process.pid ?? 0;
      },
    };
  }

  /** Where the child listens: a free port the first time, the first child's port and KV endpoint after. */
  private placeArgs(slot: Slot): string[] {
    const engine = slot.engine;
    if (engine === undefined) return ['--port', '0'];
    const kv = engine.kvEvents === null ? [] : ['--kv-events', engine.kvEvents];
    return [...kv, '--port', new URL(engine.url).port];
  }

  /** Spawns the slot's child; resolves when it printed its ready line, rejects if it dies or stays silent. */
  private spawn(slot: Slot): Promise<LocalEngine> {
    const { index } = slot;
    const spawnedMs = performance.now();
    const proc = spawnEngine([this.options.engine, ...this.args, ...this.placeArgs(slot)]);
    const prefix = `[engine ${index}] `;
    const stderrTail = keepStderrTail(proc, (line) => this.log(prefix + line));
    const child: Child = {
      process: proc,
      alive: true,
      exited: new Promise((resolve) => proc.once('close', () => resolve())),
    };
    slot.child = child;
    let ready = false;
    return new Promise<LocalEngine>((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        reject(
          new SwitchyardError(
            'SY_ERR_UPSTREAM',
            withStderrTail(`engine ${index} (${this.options.engine}) ${why}`, stderrTail()),
            { param: 'engine', index },
          ),
        );
      };
      const timer = setTimeout(() => {
        fail(`printed no ready line within ${this.readyTimeoutMs} ms`);
        // A restarted child that never gets ready is a death like any other.
        if (slot.engine !== undefined && child.alive) proc.kill('SIGKILL');
      }, this.readyTimeoutMs);
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        if (!ready) {
          const engine = parseReadyLine(line);
          if (engine !== undefined) {
            ready = true;
            clearTimeout(timer);
            slot.engine ??= engine;
            slot.portTakenTries = 0;
            const started = { ...engine, pid: proc.pid ?? 0 };
            this.options.onReady?.(index, started, performance.now() - spawnedMs);
            resolve(started);
            return;
          }
        }
        this.log(prefix + line);
      });
      proc.once('error', (error) => fail(`could not start: ${error.message}`));
      // 'close' comes after the child's stdio closed, so its last stderr lines are in the tail.
      proc.once('close', (code, signal) => {
        child.alive = false;
        if (!ready) fail(`exited (code ${code}, signal ${signal}) before it was ready`);
        else if (!this.stopping) this.options.onExit?.(index, code, signal);
        // Only a child that was once ready is restarted: one that cannot start fails `start`.
        if (this.stopping || slot.engine === undefined) return;
        if (!ready && PORT_TAKEN.test(stderrTail()) && slot.portTakenTries < PORT_TAKEN_RETRIES_MAX)
          this.portTaken(slot);
        else this.died(slot);
      });
    });
  }

  /** A child of a started slot died: schedule its restart, or give up past the bound. */
  private died(slot: Slot): void {
    const policy = this.options.restart;
    if (policy === undefined) return;
    const nowMs = performance.now();
    while (slot.restartsMs.length > 0 && nowMs - slot.restartsMs[0]! > policy.windowMs)
      slot.restartsMs.shift();
    const recent = slot.restartsMs.length;
    if (recent >= policy.restartsMax) {
      this.options.onGiveUp?.(slot.index, recent);
      return;
    }
    const delayMs = restartDelayMs(policy, recent);
    slot.restartsMs.push(nowMs + delayMs);
    this.options.onRestart?.(slot.index, recent + 1, delayMs);
    this.respawnAfter(slot, delayMs);
  }

  /** A restart found the slot's port taken: the same port again shortly, outside the restart budget. */
  private portTaken(slot: Slot): void {
    slot.portTakenTries++;
    const port = new URL(slot.engine!.url).port;
    this.log(
      `[engine ${slot.index}] port ${port} is taken; trying it again in ${PORT_TAKEN_RETRY_MS} ms (${slot.portTakenTries} of at most ${PORT_TAKEN_RETRIES_MAX}, not counted as a restart)`,
    );
    this.options.onPortTaken?.(slot.index, slot.portTakenTries, PORT_TAKEN_RETRY_MS);
    this.respawnAfter(slot, PORT_TAKEN_RETRY_MS);
  }

  private respawnAfter(slot: Slot, delayMs: number): void {
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.stopping) return;
      // A failure (port taken, silent) ends in the child's 'close', which comes back to `died` or `portTaken`.
      this.spawn(slot).catch((error: Error) => {
        if (!this.stopping) this.log(`[engine ${slot.index}] restart failed: ${error.message}`);
      });
    }, delayMs);
  }
}

/** Rejects when `signal` aborts (at once if it already has); `dispose` stops listening. */
function cancelled(signal: AbortSignal | undefined): { promise: Promise<never>; dispose(): void } {
  let onAbort = (): void => {};
  const promise = new Promise<never>((_, reject) => {
    onAbort = () =>
      reject(
        new SwitchyardError('SY_ERR_UPSTREAM', 'engine start cancelled', {
          param: 'engine',
          cancelled: true,
        }),
      );
  });
  promise.catch(() => {});
  if (signal?.aborted === true) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return { promise, dispose: () => signal?.removeEventListener('abort', onAbort) };
}

/**
 * Starts `count` engines and resolves once every one printed its ready line. Rejects (after stopping
 * the ones that started) when a child exits or stays silent past `readyTimeoutMs`; the error carries
 * the end of that child's stderr.
 */
export async function startLocalEngines(options: LocalEnginesOptions): Promise<LocalEngines> {
  const { count } = options;
  if (!Number.isInteger(count) || count < 1 || count > LOCAL_ENGINES_MAX) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid count '${count}': expected an integer in [1, ${LOCAL_ENGINES_MAX}]`,
      { param: 'count' },
    );
  }
  return new Supervisor(options).start();
}
