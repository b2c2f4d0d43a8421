/**
 * The twin's event queue: a binary min-heap over parallel typed arrays (no object per event).
 * Events are ordered by time, then by insertion sequence, so equal-time events run in the order
 * they were scheduled and a run is reproducible bit for bit.
 */
export class EventQueue {
  private times: Float64Array;
  private seqs: Float64Array;
  private payloads: Int32Array;
  private size = 0;
  private nextSeq = 0;
  /** Events popped so far. */
  popped = 0;

  constructor(capacity = 1024) {
    this.times = new Float64Array(capacity);
    this.seqs = new Float64Array(capacity);
    this.payloads = new Int32Array(capacity);
  }

  get length(): number {
    return this.size;
  }

  /** Schedules an event carrying an int32 payload at `timeMs`. */
  push(timeMs: number, payload: number): void {
    if (this.size === this.times.length) this.grow();
    let i = this.size++;
    const seq = this.nextSeq++;
    const times = this.times;
    const seqs = this.seqs;
    const payloads = this.payloads;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pt = times[parent] as number;
      if (pt < timeMs || (pt === timeMs && (seqs[parent] as number) < seq)) break;
      times[i] = pt;
      seqs[i] = seqs[parent] as number;
      payloads[i] = payloads[parent] as number;
      i = parent;
    }
    times[i] = timeMs;
    seqs[i] = seq;
    payloads[i] = payload;
  }

  /** Time of the earliest event; Infinity when empty. */
  peekTime(): number {
    return this.size === 0 ? Number.POSITIVE_INFINITY : (this.times[0] as number);
  }

  /** Removes the earliest event and returns its payload; call peekTime first for its time. */
  pop(): number {
    if (this.size === 0) throw new RangeError('pop from an empty event queue');
    this.popped++;
    const times = this.times;
    const seqs = this.seqs;
    const payloads = this.payloads;
    const top = payloads[0] as number;
    const last = --this.size;
    if (last === 0) return top;
    const t = times[last] as number;
    const s = seqs[last] as number;
    const p = payloads[last] as number;
    let i = 0;
    const half = last >> 1;
    while (i < half) {
      let child = 2 * i + 1;
      let ct = times[child] as number;
      let cs = seqs[child] as number;
      const right = child + 1;
      if (right < last) {
        const rt = times[right] as number;
        if (rt < ct || (rt === ct && (seqs[right] as number) < cs)) {
          child = right;
          ct = rt;
          cs = seqs[right] as number;
        }
      }
      if (t < ct || (t === ct && s < cs)) break;
      times[i] = ct;
      seqs[i] = cs;
      payloads[i] = payloads[child] as number;
      i = child;
    }
    times[i] = t;
    seqs[i] = s;
    payloads[i] = p;
    return top;
  }

  private grow(): void {
    const capacity = this.times.length * 2;
    const times = new Float64Array(capacity);
    times.set(this.times);
    const seqs = new Float64Array(capacity);
    seqs.set(this.seqs);
    const payloads = new Int32Array(capacity);
    payloads.set(this.payloads);
    this.times = times;
    this.seqs = seqs;
    this.payloads = payloads;
  }
}
