import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DrainRate } from './drain-rate.ts';
import { TokenBucket } from './token-bucket.ts';

test('token bucket: waitMs is exact, rounded up, and waiting it always finds room', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 1_000_000 })), {
        maxLength: 30,
      }),
      (capacity, steps) => {
        const bucket = new TokenBucket(capacity, 60_000, 0);
        let now = 0;
        for (const [dt, rawCost] of steps) {
          now += dt;
          const cost = Math.min(rawCost, capacity);
          const wait = bucket.waitMs(cost, now);
          assert.ok(wait !== undefined && wait >= 0);
          assert.equal(bucket.waitMs(cost, now + wait), 0);
          if (wait > 0) assert.ok((bucket.waitMs(cost, now + wait - 1) ?? 0) > 0);
          now += wait;
          bucket.take(cost, now);
        }
        assert.equal(bucket.waitMs(capacity + 1, now), undefined);
      },
    ),
  );
});

test('token bucket: a rate below the capacity refills at the rate, and waiting the wait finds room', () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0.01, max: 1, noNaN: true }),
      fc.array(fc.integer({ min: 0, max: 500_000 }), { maxLength: 20 }),
      (rate, gaps) => {
        const bucket = new TokenBucket(rate, 60_000, 0, 1);
        let now = 0;
        bucket.take(1, now);
        // An empty bucket of one token at `rate` per minute is full again after 60/rate s.
        assert.equal(bucket.waitMs(1, now), Math.ceil(60_000 / rate - 1e-9));
        for (const gap of gaps) {
          now += gap;
          const wait = bucket.waitMs(1, now);
          assert.ok(wait !== undefined && wait >= 0);
          assert.equal(bucket.waitMs(1, now + wait), 0);
          now += wait;
          bucket.take(1, now);
          // Never more than one token banked, however long the gap.
          assert.ok(bucket.available(now) < 1);
        }
      },
    ),
  );
});

test('drain rate: a steady rate is measured without start-up bias, and idle time is not counted', () => {
  const rate = new DrainRate(10_000);
  rate.setBusy(true, 0);
  assert.equal(rate.perMs(0), undefined);
  for (let t = 50; t <= 2000; t += 50) rate.observe(t); // 20 per second
  assert.ok(Math.abs((rate.perMs(2000) ?? 0) * 1000 - 20) < 1);
  rate.setBusy(false, 2000);
  // An hour with an empty queue leaves the estimate as it was.
  assert.ok(Math.abs((rate.perMs(3_602_000) ?? 0) * 1000 - 20) < 1);
  // Busy again but nothing leaves: the estimate decays toward zero, then is withdrawn.
  rate.setBusy(true, 3_602_000);
  const stalled = rate.perMs(3_612_000) ?? 0;
  assert.ok(stalled * 1000 < 20 * 0.5);
  assert.equal(rate.perMs(3_702_000), undefined);
});
