/** Time is an interface: the twin passes a virtual clock, the gateway a wall clock. */
export interface Clock {
  /** Milliseconds on this host's timeline. */
  nowMs(): number;
}

/** A clock that moves only when told to; the twin's clock and the tests'. */
export class ManualClock implements Clock {
  private timeMs: number;
  constructor(startMs = 0) {
    this.timeMs = startMs;
  }
  nowMs(): number {
    return this.timeMs;
  }
  /** Moves to `timeMs`; time never goes backwards. */
  set(timeMs: number): void {
    if (timeMs < this.timeMs) throw new RangeError(`clock moved backwards: ${timeMs} < ${this.timeMs}`);
    this.timeMs = timeMs;
  }
  advance(deltaMs: number): void {
    this.set(this.timeMs + deltaMs);
  }
}
