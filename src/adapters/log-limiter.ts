/**
 * Rate-limits repeated log lines per key: the first line of a key is logged at once; later ones
 * within `everyMs` are counted, and the next line after the window says how many were suppressed.
 * A key quiet for longer than `everyMs` starts over. Keys are bounded (`keysMax`): the oldest is
 * forgotten first, so an unbounded set of ids cannot grow the map.
 */

/** Default window between two lines of one key. */
export const LOG_EVERY_MS_DEFAULT = 30_000;
/** Default bound on the keys remembered. */
export const LOG_KEYS_MAX_DEFAULT = 1024;

interface KeyState {
  lastLoggedMs: number;
  suppressed: number;
}

/** Options of `LogLimiter`. */
export interface LogLimiterOptions {
  /** The clock (ms); the caller's, so tests can drive it. */
  readonly now: () => number;
  readonly everyMs?: number;
  readonly keysMax?: number;
}

/** Per-key rate limit with a count of what it held back. */
export class LogLimiter {
  private readonly keys = new Map<string, KeyState>();
  private readonly now: () => number;
  private readonly everyMs: number;
  private readonly keysMax: number;

  constructor(options: LogLimiterOptions) {
    this.now = options.now;
    this.everyMs = options.everyMs ?? LOG_EVERY_MS_DEFAULT;
    this.keysMax = options.keysMax ?? LOG_KEYS_MAX_DEFAULT;
  }

  /**
   * Calls `emit` with the count of lines of `key` suppressed since its last one, or counts this
   * one as suppressed when `key` was emitted within the window.
   */
  report(key: string, emit: (suppressed: number) => void): void {
    const now = this.now();
    const state = this.keys.get(key);
    if (state !== undefined && now - state.lastLoggedMs < this.everyMs) {
      state.suppressed++;
      return;
    }
    // Re-inserted so the map's order is least recently emitted first.
    this.keys.delete(key);
    this.keys.set(key, { lastLoggedMs: now, suppressed: 0 });
    if (this.keys.size > this.keysMax) {
      const oldest = this.keys.keys().next().value;
      if (oldest !== undefined) this.keys.delete(oldest);
    }
    emit(state?.suppressed ?? 0);
  }
}

/** `line` with the suppressed count appended when there is one. */
export function withSuppressed(line: string, suppressed: number): string {
  return suppressed === 0 ? line : `${line} (${suppressed} more like it since the last report)`;
}
