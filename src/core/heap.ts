/**
 * A binary min-heap ordered by a comparator. Small on purpose: push, pop, peek, remove at an index,
 * and a read-only scan for the rare callers that must look at every element (queue push-out).
 */
export class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  /** The smallest element, or undefined when empty. */
  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    this.items.push(item);
    this.up(this.items.length - 1);
  }

  /** Removes and returns the smallest element. */
  pop(): T | undefined {
    return this.removeAt(0);
  }

  /** The element at a heap position (0..size-1); positions carry no order beyond the heap property. */
  at(index: number): T | undefined {
    return this.items[index];
  }

  /** Removes the element at a heap position and restores the heap. */
  removeAt(index: number): T | undefined {
    const items = this.items;
    if (index < 0 || index >= items.length) return undefined;
    const removed = items[index] as T;
    const last = items.pop() as T;
    if (index < items.length) {
      items[index] = last;
      this.up(index);
      this.down(index);
    }
    return removed;
  }

  private up(index: number): void {
    const items = this.items;
    let i = index;
    const item = items[i] as T;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as T;
      if (!this.before(item, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = item;
  }

  private down(index: number): void {
    const items = this.items;
    const n = items.length;
    let i = index;
    const item = items[i] as T;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      let child = left;
      if (right < n && this.before(items[right] as T, items[left] as T)) child = right;
      const c = items[child] as T;
      if (!this.before(c, item)) break;
      items[i] = c;
      i = child;
    }
    items[i] = item;
  }
}
