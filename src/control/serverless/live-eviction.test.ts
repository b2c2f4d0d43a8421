import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chooseEviction,
  type EvictionCandidate,
  evictionCost,
  RATE_NONE,
  rateAt,
  withArrival,
} from './live-eviction.ts';

const c = (
  model: string,
  lastUsedMs: number,
  startupMs: number,
  requestsPerS: number,
): EvictionCandidate => ({
  model,
  lastUsedMs,
  startupMs,
  requestsPerS,
});

describe('chooseEviction', () => {
  it('has no choice without candidates', () => {
    assert.equal(chooseEviction('lru', []), undefined);
    assert.equal(chooseEviction('cost-aware', []), undefined);
  });

  it('lru: the least recently used, whatever its cost', () => {
    const cands = [c('b', 2000, 100, 0.01), c('a', 1000, 9000, 5), c('c', 3000, 50, 0)];
    assert.equal(chooseEviction('lru', cands)?.model, 'a');
  });

  it('cost-aware: the least start-up x rate, which may be the most recently used', () => {
    // a: slow to load and popular (9000 x 5); b: quick and rare (100 x 0.01); c: cheap but popular.
    const cands = [c('a', 1000, 9000, 5), c('b', 3000, 100, 0.01), c('c', 2000, 50, 2)];
    assert.equal(chooseEviction('cost-aware', cands)?.model, 'b');
    assert.equal(evictionCost(cands[1] as EvictionCandidate), 1);
  });

  it('cost-aware: a cheap reload goes first at equal rates; a rare model at equal start-up', () => {
    assert.equal(chooseEviction('cost-aware', [c('slow', 1, 8000, 1), c('fast', 2, 800, 1)])?.model, 'fast');
    assert.equal(chooseEviction('cost-aware', [c('hot', 1, 800, 4), c('cold', 2, 800, 0.5)])?.model, 'cold');
  });

  it('equal costs fall back to LRU, then to the name, never to the order given', () => {
    const tied = [c('y', 500, 100, 0), c('x', 500, 300, 0), c('z', 900, 100, 0)];
    assert.equal(chooseEviction('cost-aware', tied)?.model, 'x');
    assert.equal(chooseEviction('cost-aware', [...tied].reverse())?.model, 'x');
    assert.equal(chooseEviction('lru', tied)?.model, 'x');
    assert.equal(chooseEviction('lru', [...tied].reverse())?.model, 'x');
  });
});

describe('decayed request rate', () => {
  it('reads a steady stream at its rate', () => {
    const tauMs = 10_000;
    let r = RATE_NONE;
    // 2 requests per second for 10 time constants.
    for (let t = 0; t <= 100_000; t += 500) r = withArrival(r, t, tauMs);
    const perS = rateAt(r, 100_000, tauMs);
    assert.ok(Math.abs(perS - 2) < 0.1, `steady 2/s read ${perS}`);
  });

  it('decays a model left alone toward zero and ranks recent traffic above old', () => {
    const tauMs = 60_000;
    const old = withArrival(withArrival(RATE_NONE, 0, tauMs), 0, tauMs);
    const recent = withArrival(RATE_NONE, 300_000, tauMs);
    assert.equal(rateAt(RATE_NONE, 5000, tauMs), 0);
    assert.ok(rateAt(old, 300_000, tauMs) < rateAt(old, 0, tauMs) / 100);
    assert.ok(rateAt(old, 300_000, tauMs) < rateAt(recent, 300_000, tauMs));
  });
});
