import { Deque } from './deque.ts';

/** The waiting queue's operations; FCFS uses a plain Deque, the priority policy a queue per level. */
export interface WaitQueue<T> {
  readonly size: number;
  /** Enqueues a new arrival behind every item of its level (and in front of lower levels). */
  pushBack(item: T): void;
  /** Requeues a preempted item at the front of its level. */
  pushFront(item: T): void;
  peekFront(): T | undefined;
  popFront(): T | undefined;
  remove(item: T): boolean;
  /** The item at `index` from the front, in service order. */
  at(index: number): T | undefined;
}

/**
 * Waiting items by priority, highest first, FCFS within a level: one deque per distinct priority.
 * A cluster uses a handful of levels (interactive, online, batch), so the sorted list of levels is
 * short and a new level is a rare insertion.
 */
export class PriorityWaitQueue<T> implements WaitQueue<T> {
  /** Levels, highest priority first. */
  private readonly levels: { readonly priority: number; readonly items: Deque<T> }[] = [];
  private count = 0;

  constructor(private readonly priorityOf: (item: T) => number) {}

  get size(): number {
    return this.count;
  }

  pushBack(item: T): void {
    this.level(this.priorityOf(item)).pushBack(item);
    this.count++;
  }

  pushFront(item: T): void {
    this.level(this.priorityOf(item)).pushFront(item);
    this.count++;
  }

  peekFront(): T | undefined {
    for (const level of this.levels) if (level.items.size > 0) return level.items.peekFront();
    return undefined;
  }

  popFront(): T | undefined {
    for (const level of this.levels) {
      if (level.items.size > 0) {
        this.count--;
        return level.items.popFront();
      }
    }
    return undefined;
  }

  at(index: number): T | undefined {
    let rest = index;
    for (const level of this.levels) {
      if (rest < level.items.size) return level.items.at(rest);
      rest -= level.items.size;
    }
    return undefined;
  }

  remove(item: T): boolean {
    const priority = this.priorityOf(item);
    const level = this.levels.find((l) => l.priority === priority);
    if (level === undefined || !level.items.remove(item)) return false;
    this.count--;
    return true;
  }

  private level(priority: number): Deque<T> {
    let at = 0;
    while (at < this.levels.length && (this.levels[at] as { priority: number }).priority > priority) at++;
    const existing = this.levels[at];
    if (existing !== undefined && existing.priority === priority) return existing.items;
    const items = new Deque<T>(16);
    this.levels.splice(at, 0, { priority, items });
    return items;
  }
}
