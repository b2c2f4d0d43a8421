/**
 * A node's pool of standby llama engines (`switchyard engine llama --standby`): processes that have
 * done every part of their start-up that does not need a model (Node, the CLI, node-llama-cpp and
 * its binary check, about 1.5 s of a 2 s cold start) and wait for one JSON line on stdin naming it.
 * A cold start takes one (`take`) and hands it the model (`StandbyEngine.hand`); once that engine is
 * ready (or failed), the pool starts another in the background, so the spawn of the next standby
 * process never competes with the cold start it follows for the CPU.
 *
 * Bounded: at most `size` processes wait (STANDBY_ENGINES_MAX), and after
 * STANDBY_SPAWN_FAILURES_MAX standby processes in a row die before they are ready the pool stops
 * refilling (cold starts then spawn fresh engines, as without a pool).
 *
 * A handed engine is not restarted in place when it dies (the supervisor's restart re-runs a fresh
 * `--model` start on the same port; a standby process has no such command line): it is reported
 * through `onExit` as lost, and the next request for its model starts another.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { SwitchyardError } from '../core/errors.ts';
import { keepStderrTail, parseReadyLine, spawnEngine, withStderrTail } from './engine-process.ts';
import type { LocalEngine } from './local-engines.ts';
import { STOP_GRACE_MS_DEFAULT } from './local-engines.ts';

/** Most standby engines one node keeps waiting (each holds node-llama-cpp's runtime, ~100 MB). */
export const STANDBY_ENGINES_MAX = 8;
/** Standby processes in a row that may die before saying standby before the pool stops refilling. */
export const STANDBY_SPAWN_FAILURES_MAX = 3;

/** Options of a `StandbyEngines` pool. */
export interface StandbyEnginesOptions {
  /** Standby processes kept waiting, 0..STANDBY_ENGINES_MAX. */
  readonly size: number;
  /** Flags every standby engine gets besides `--standby --port 0` (no `--model`). */
  readonly args: readonly string[];
  /** Each child's stderr and the pool's own lines. */
  readonly log?: (line: string) => void;
  /** Longest wait for a standby process to say standby. */
  readonly standbyTimeoutMs: number;
}

/** The pool's counters (serve's /stats `standbyEngines`). */
export interface StandbyStats {
  readonly size: number;
  /** Waiting for a model now. */
  readonly idle: number;
  /** Spawned, not yet waiting. */
  readonly starting: number;
  /** Cold starts handed to a standby process. */
  readonly handed: number;
  /** Standby processes that died or timed out before saying standby. */
  readonly spawnFailures: number;
  /** True once the pool gave up refilling (STANDBY_SPAWN_FAILURES_MAX in a row). */
  readonly gaveUp: boolean;
}

/** A standby engine taken from the pool: hand it a model once. */
export interface StandbyEngine {
  readonly pid: number;
  /**
   * Sends the model and resolves with the engine once it printed its ready line. Rejects (once the
   * process it stopped has exited) when it exits first, stays silent past `readyTimeoutMs` or
   * `signal` aborts. Its stderr lines go to
   * `log` from then on.
   */
  hand(
    order: { readonly model: string; readonly servedModelName: string },
    log: (line: string) => void,
    readyTimeoutMs: number,
    onExit: () => void,
    /** Cancels the hand-over: the engine, still loading the model, is stopped and the promise rejects. */
    signal?: AbortSignal,
  ): Promise<LocalEngine & { stop(): Promise<void> }>;
}

interface Waiting {
  readonly proc: ChildProcess;
  readonly lines: Interface;
  readonly exited: Promise<void>;
  alive: boolean;
  /** The end of its stderr, for the error when it dies. */
  readonly stderrTail: () => string;
  /** Where its stderr lines go: the pool's log until it is handed a model, then the launcher's. */
  log: (line: string) => void;
}

/** A bounded pool of standby llama engines (see the file comment). */
export class StandbyEngines {
  private readonly idle: Waiting[] = [];
  private readonly starting = new Set<Waiting>();
  /** Taken and not yet ready or failed: the refill waits for them. */
  private handing = 0;
  private handed = 0;
  private spawnFailures = 0;
  private failuresInRow = 0;
  private closed = false;
  private readonly log: (line: string) => void;

  constructor(private readonly options: StandbyEnginesOptions) {
    if (!Number.isInteger(options.size) || options.size < 0 || options.size > STANDBY_ENGINES_MAX)
      throw new RangeError(
        `standby engines ${options.size}: expected an integer in [0, ${STANDBY_ENGINES_MAX}]`,
      );
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** Starts the pool's processes. */
  start(): void {
    this.refill();
  }

  /** A standby engine waiting for a model, or undefined (none ready yet, or the pool is empty). */
  take(): StandbyEngine | undefined {
    const w = this.idle.shift();
    if (w === undefined) return undefined;
    this.handing++;
    this.handed++;
    return {
      pid: w.proc.pid ?? 0,
      hand: (order, log, readyTimeoutMs, onExit, signal) =>
        this.hand(w, order, log, readyTimeoutMs, onExit, signal).finally(() => {
          this.handing--;
          this.refill();
        }),
    };
  }

  stats(): StandbyStats {
    return {
      size: this.options.size,
      idle: this.idle.length,
      starting: this.starting.size,
      handed: this.handed,
      spawnFailures: this.spawnFailures,
      gaveUp: this.failuresInRow >= STANDBY_SPAWN_FAILURES_MAX,
    };
  }

  /** Stops the waiting processes (handed engines are their launcher's to stop). */
  async close(): Promise<void> {
    this.closed = true;
    const waiting = [...this.idle, ...this.starting];
    this.idle.length = 0;
    this.starting.clear();
    await Promise.all(waiting.map((w) => stopProcess(w)));
  }

  /** Spawns standby processes up to `size`, none while a cold start is being handed one. */
  private refill(): void {
    if (this.closed || this.handing > 0 || this.failuresInRow >= STANDBY_SPAWN_FAILURES_MAX) return;
    while (this.idle.length + this.starting.size < this.options.size) this.spawnOne();
  }

  private spawnOne(): void {
    const proc = spawnEngine(['llama', '--standby', ...this.options.args, '--port', '0']);
    const w: Waiting = {
      proc,
      lines: createInterface({ input: proc.stdout! }),
      alive: true,
      // Through `w.log`, which changes when the process is handed a model.
      stderrTail: keepStderrTail(proc, (line) => w.log(line)),
      log: (line) => this.log(`[standby ${proc.pid ?? '?'}] ${line}`),
      exited: new Promise((resolve) => proc.once('close', () => resolve())),
    };
    proc.once('close', () => {
      w.alive = false;
    });
    proc.once('error', () => {});
    this.starting.add(w);
    void this.awaitStandby(w);
  }

  /** Moves `w` to the idle list when it says standby; counts a failure when it dies first. */
  private async awaitStandby(w: Waiting): Promise<void> {
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.options.standbyTimeoutMs);
      const onLine = (line: string): void => {
        if (!line.startsWith('{"event":"standby"')) return;
        w.lines.off('line', onLine);
        clearTimeout(timer);
        resolve(true);
      };
      w.lines.on('line', onLine);
      void w.exited.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!this.starting.delete(w)) return; // closed meanwhile
    if (ok && w.alive) {
      this.failuresInRow = 0;
      this.idle.push(w);
      // An idle one that dies leaves the pool; the next refill replaces it.
      void w.exited.then(() => {
        const k = this.idle.indexOf(w);
        if (k >= 0) {
          this.idle.splice(k, 1);
          this.spawnFailures++;
          this.failuresInRow++;
          this.refill();
        }
      });
      return;
    }
    this.spawnFailures++;
    this.failuresInRow++;
    await stopProcess(w);
    if (this.failuresInRow >= STANDBY_SPAWN_FAILURES_MAX)
      this.log(
        `standby engines: ${this.failuresInRow} in a row failed to start; cold starts spawn fresh engines${w.stderrTail() === '' ? '' : `; the last one's stderr ends:\n${w.stderrTail()}`}`,
      );
    this.refill();
  }

  private hand(
    w: Waiting,
    order: { readonly model: string; readonly servedModelName: string },
    log: (line: string) => void,
    readyTimeoutMs: number,
    onExit: () => void,
    signal: AbortSignal | undefined,
  ): Promise<LocalEngine & { stop(): Promise<void> }> {
    // From now on its lines are the model's engine's, prefixed as the launcher's fresh engines are.
    w.log = log;
    return new Promise((resolve, reject) => {
      let ready = false;
      let stopping = false;
      let failed = false;
      const onAbort = (): void => fail('was cancelled (start no longer wanted)');
      const fail = (why: string): void => {
        // Its own exit, seen after a cancel or timeout stopped it, is the same failure.
        if (failed) return;
        failed = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        w.lines.off('line', onLine);
        // Rejected once the process is gone, as a fresh engine's cancelled start is: the caller
        // frees its slot on the rejection and may start another engine in the memory this one held.
        void stopProcess(w).then(() =>
          reject(
            new SwitchyardError(
              'SY_ERR_UPSTREAM',
              withStderrTail(
                `standby llama engine (pid ${w.proc.pid}) given ${order.model} ${why}`,
                w.stderrTail(),
              ),
              { param: 'engine' },
            ),
          ),
        );
      };
      const timer = setTimeout(
        () => fail(`printed no ready line within ${readyTimeoutMs} ms`),
        readyTimeoutMs,
      );
      const onLine = (line: string): void => {
        const engine = parseReadyLine(line);
        if (engine === undefined) return;
        ready = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        w.lines.off('line', onLine);
        resolve({
          ...engine,
          pid: w.proc.pid ?? 0,
          stop: async () => {
            stopping = true;
            await stopProcess(w);
          },
        });
      };
      w.lines.on('line', onLine);
      void w.exited.then(() => {
        if (!ready) fail(`exited (code ${w.proc.exitCode}, signal ${w.proc.signalCode}) before it was ready`);
        else if (!stopping && !this.closed) onExit();
      });
      if (signal?.aborted === true) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      // The pipe stays open after the line: its end-of-file is how the engine learns we are gone.
      w.proc.stdin?.write(`${JSON.stringify(order)}\n`);
    });
  }
}

/** SIGTERM, SIGKILL after STOP_GRACE_MS_DEFAULT; resolves when it exited. */
async function stopProcess(w: Waiting): Promise<void> {
  if (w.alive) w.proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), STOP_GRACE_MS_DEFAULT);
  });
  if ((await Promise.race([w.exited, late])) === 'late' && w.alive) {
    w.proc.kill('SIGKILL');
    await w.exited;
  }
  clearTimeout(timer);
}
