import assert from 'node:assert/strict';
import { test } from 'node:test';
import { goodputSweep, scaleWorkload } from './goodput.ts';

test('goodput sweep finds the knee of a monotone attainment curve', () => {
  const knee = 3.3;
  const r = goodputSweep((scale) => ({ attainment: scale <= knee ? 0.95 : 0.5, rateRps: scale * 10 }));
  assert.ok(r.scale <= knee && r.scale > knee * 0.95, `scale ${r.scale}`);
  assert.equal(r.goodputRps, r.scale * 10);
  assert.ok(r.points.every((p, i) => i === 0 || (r.points[i - 1] as { scale: number }).scale < p.scale));
});

test('goodput sweep searches downwards when the base rate already fails', () => {
  const r = goodputSweep((scale) => ({ attainment: scale <= 0.2 ? 1 : 0, rateRps: scale * 4 }));
  assert.ok(r.scale <= 0.2 && r.scale > 0.18, `scale ${r.scale}`);
});

test('goodput is 0 when nothing meets the target, and the sweep is bounded', () => {
  let calls = 0;
  const r = goodputSweep(() => {
    calls++;
    return { attainment: 0, rateRps: 1 };
  });
  assert.equal(r.goodputRps, 0);
  assert.ok(calls < 20);
});

test('scaling a workload multiplies its rate', () => {
  const t = scaleWorkload(
    {
      kind: 'trace',
      trace: 'x',
      rateScale: 2,
      startS: 0,
      model: 'm',
      tenant: 't',
      priority: 0,
      declaredMaxTokens: { kind: 'none' },
    },
    3,
  );
  assert.equal(t.kind === 'trace' && t.rateScale, 6);
});
