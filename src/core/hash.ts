/**
 * Chained block hashes. A block's hash mixes its parent's hash with its own content key, so equal
 * hashes at position i mean equal prefixes up to block i. 32-bit mixing keeps the numbers small
 * and exact in a double.
 */
export function chainHash(parent: number, contentKey: number): number {
  let h = Math.imul(parent ^ 0x9e3779b9, 0x85ebca6b) ^ contentKey;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  return (h ^ (h >>> 15)) >>> 0;
}

/** The root every chain starts from. */
export const CHAIN_ROOT = 0x5bd1e995;
