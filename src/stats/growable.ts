/** A Float64Array that grows by doubling: per-request samples without an object per request. */
export class GrowableFloat64 {
  private data: Float64Array;
  length = 0;
  constructor(capacity = 1024) {
    this.data = new Float64Array(capacity);
  }
  push(value: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = value;
  }
  /** A view of the filled part (shares memory). */
  view(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}
