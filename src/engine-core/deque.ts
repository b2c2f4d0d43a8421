/**
 * A double-ended queue on a power-of-two ring buffer. The waiting queue needs O(1) push at both ends
 * (preempted sequences go back to the front) and O(1) pop at the front; `Array.prototype.shift` is
 * O(n) on large arrays, so it is not an option on a queue that can hold thousands of requests.
 */
export class Deque<T> {
  private items: (T | undefined)[];
  /** Capacity minus one; the capacity is always a power of two so indices wrap with a mask. */
  private mask: number;
  private head = 0;
  private count = 0;

  constructor(initialCapacity = 16) {
    let capacity = 1;
    while (capacity < initialCapacity) capacity *= 2;
    this.items = new Array<T | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
  }

  /** Number of items held. */
  get size(): number {
    return this.count;
  }

  /** Appends at the back. */
  pushBack(item: T): void {
    if (this.count > this.mask) this.grow();
    this.items[(this.head + this.count) & this.mask] = item;
    this.count++;
  }

  /** Prepends at the front. */
  pushFront(item: T): void {
    if (this.count > this.mask) this.grow();
    this.head = (this.head - 1) & this.mask;
    this.items[this.head] = item;
    this.count++;
  }

  /** The front item, or undefined when empty. */
  peekFront(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  /** Removes and returns the front item, or undefined when empty. */
  popFront(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    // Drop the reference so a finished request can be collected.
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.count--;
    return item;
  }

  /** The item at position `index` from the front (0 is the front), or undefined when out of range. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.count) return undefined;
    return this.items[(this.head + index) & this.mask];
  }

  /** Removes the first item identical to `item`, keeping the order of the rest. O(n); for rare aborts. */
  remove(item: T): boolean {
    for (let i = 0; i < this.count; i++) {
      if (this.items[(this.head + i) & this.mask] !== item) continue;
      for (let j = i; j < this.count - 1; j++) {
        this.items[(this.head + j) & this.mask] = this.items[(this.head + j + 1) & this.mask];
      }
      this.items[(this.head + this.count - 1) & this.mask] = undefined;
      this.count--;
      return true;
    }
    return false;
  }

  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    const next = new Array<T | undefined>(capacity).fill(undefined);
    for (let i = 0; i < this.count; i++) next[i] = this.items[(this.head + i) & this.mask];
    this.items = next;
    this.mask = capacity - 1;
    this.head = 0;
  }
}
