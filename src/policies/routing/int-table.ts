/**
 * An int32 -> int32 hash table with open addressing (linear probing) over one typed array, for the
 * hot path of the prefix cache index (`prefix-cache-index.ts`). A V8 Map costs two or three cache
 * misses per lookup (hash table, entry, boxed value) and holds at most 2^24 entries; here a lookup is
 * one multiply and, almost always, one cache line, keys and values sitting side by side. Deletion shifts later entries of the probe run
 * back, so there are no tombstones and probes stay short however long the table lives.
 *
 * Values may be any int32 except `INT_TABLE_MISSING`, which `get` returns for an absent key.
 */

/** What `get` returns for an absent key; never a stored value. */
export const INT_TABLE_MISSING = -0x80000000;

/** Entries a table holds at most (2^29: its array then takes 4 GiB). */
export const INT_TABLE_ENTRIES_MAX = 1 << 29;

const LOAD_MAX = 0.5;

export class IntTable {
  /** [key0, value0, key1, value1, ...]; an empty bucket has value INT_TABLE_MISSING. */
  private data: Int32Array<ArrayBuffer>;
  private mask: number;
  private shift: number;
  private count = 0;

  constructor(initialBuckets = 1024) {
    let log2 = 4;
    while (1 << log2 < initialBuckets) log2++;
    this.data = IntTable.empty(1 << log2);
    this.mask = (1 << log2) - 1;
    this.shift = 32 - log2;
  }

  /** Entries stored. */
  get size(): number {
    return this.count;
  }

  /** The value of `key`, or INT_TABLE_MISSING. */
  get(key: number): number {
    const data = this.data;
    const mask = this.mask;
    let i = Math.imul(key, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const v = data[2 * i + 1] as number;
      if (v === INT_TABLE_MISSING || data[2 * i] === key) return v;
      i = (i + 1) & mask;
    }
  }

  /**
   * `out[j] = get(keys[j])` for j < count. One loop of independent lookups, so the CPU overlaps
   * their cache misses where a lookup per iteration of a longer loop would take them one at a time.
   */
  getMany(keys: Int32Array, out: Int32Array, count: number): void {
    const data = this.data;
    const mask = this.mask;
    const shift = this.shift;
    for (let j = 0; j < count; j++) {
      const key = keys[j] as number;
      let i = Math.imul(key, 0x9e3779b1) >>> shift;
      for (;;) {
        const v = data[2 * i + 1] as number;
        if (v === INT_TABLE_MISSING || data[2 * i] === key) {
          out[j] = v;
          break;
        }
        i = (i + 1) & mask;
      }
    }
  }

  /** Stores `value` (not INT_TABLE_MISSING) under `key`. */
  set(key: number, value: number): void {
    if (value === INT_TABLE_MISSING) throw new RangeError('IntTable: value INT_TABLE_MISSING is reserved');
    const data = this.data;
    let i = Math.imul(key, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const v = data[2 * i + 1] as number;
      if (v === INT_TABLE_MISSING) break;
      if (data[2 * i] === key) {
        data[2 * i + 1] = value;
        return;
      }
      i = (i + 1) & this.mask;
    }
    if (this.count >= INT_TABLE_ENTRIES_MAX)
      throw new RangeError(`IntTable: more than ${INT_TABLE_ENTRIES_MAX} entries`);
    data[2 * i] = key;
    data[2 * i + 1] = value;
    this.count++;
    if (this.count > LOAD_MAX * (this.mask + 1)) this.grow();
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: number): boolean {
    const data = this.data;
    const mask = this.mask;
    let i = Math.imul(key, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const v = data[2 * i + 1] as number;
      if (v === INT_TABLE_MISSING) return false;
      if (data[2 * i] === key) break;
      i = (i + 1) & mask;
    }
    // Backward shift: move each later entry of the run into the hole unless its home bucket lies
    // cyclically in (hole, its position], where moving it would put it before its home.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (data[2 * j + 1] === INT_TABLE_MISSING) break;
      const home = Math.imul(data[2 * j] as number, 0x9e3779b1) >>> this.shift;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      data[2 * i] = data[2 * j] as number;
      data[2 * i + 1] = data[2 * j + 1] as number;
      i = j;
    }
    data[2 * i + 1] = INT_TABLE_MISSING;
    this.count--;
    return true;
  }

  private grow(): void {
    const old = this.data;
    const buckets = (this.mask + 1) * 2;
    this.data = IntTable.empty(buckets);
    this.mask = buckets - 1;
    this.shift--;
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) {
      const v = old[i + 1] as number;
      if (v !== INT_TABLE_MISSING) this.set(old[i] as number, v);
    }
  }

  private static empty(buckets: number): Int32Array<ArrayBuffer> {
    const data = new Int32Array(2 * buckets);
    for (let i = 1; i < data.length; i += 2) data[i] = INT_TABLE_MISSING;
    return data;
  }
}
