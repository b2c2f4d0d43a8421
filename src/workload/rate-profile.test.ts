/** Property tests: Λ⁻¹ inverts Λ for any rate curve and sinusoid, and the curve parser round-trips. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseRateCurve } from './rate-curve-file.ts';
import { type RatePoint, type RateProfile, rateCurve, sinusoidRate } from './rate-profile.ts';

/** Curves of 2-30 points: increasing times from 0, rates in [0, 100] with some zero stretches. */
const curves = fc
  .array(
    fc.record({
      dtS: fc.double({ min: 0.001, max: 1000, noNaN: true }),
      rateRps: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 100, noNaN: true })),
    }),
    { minLength: 1, maxLength: 29 },
  )
  .chain((steps) =>
    fc.double({ min: 0.01, max: 100, noNaN: true }).map((first) => {
      const points: RatePoint[] = [{ timeS: 0, rateRps: first }];
      let t = 0;
      for (const s of steps) {
        t += s.dtS;
        points.push({ timeS: t, rateRps: s.rateRps });
      }
      return points;
    }),
  );

/** Λ(Λ⁻¹(y)) = y, and Λ⁻¹ never goes backwards, at `fractions` of the profile's mass up to `total`. */
function assertInverts(p: RateProfile, total: number, fractions: readonly number[]): void {
  let lastT = 0;
  for (const f of [...fractions].sort((a, b) => a - b)) {
    const y = f * total;
    const t = p.inverse(y);
    assert.ok(t >= lastT - 1e-9, `inverse went backwards at y=${y}`);
    lastT = t;
    assert.ok(
      Math.abs(p.cumulative(t) - y) <= 1e-7 * Math.max(1, total),
      `Λ(Λ⁻¹(${y})) = ${p.cumulative(t)}`,
    );
  }
}

const fractions = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 20 });

describe('rate profile properties', () => {
  it('a piecewise-linear curve inverts its integral everywhere', () => {
    fc.assert(
      fc.property(curves, fractions, (points, fs) => {
        const p = rateCurve(points);
        assertInverts(p, p.total, fs);
        assert.ok(p.inverse(p.total * 1.001 + 1) === Number.POSITIVE_INFINITY);
      }),
    );
  });

  it('a sinusoid inverts its integral over several periods, at any phase', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 50, noNaN: true }),
        fc.double({ min: 0.01, max: 50, noNaN: true }),
        fc.double({ min: 0.1, max: 10_000, noNaN: true }),
        fc.double({ min: -1e4, max: 1e4, noNaN: true }),
        fractions,
        (lo, span, periodS, phaseS, fs) => {
          const p = sinusoidRate(lo, lo + span, periodS, phaseS);
          assertInverts(p, p.cumulative(3.5 * periodS), fs);
        },
      ),
    );
  });

  it('a curve written as CSV parses back to the same points', () => {
    fc.assert(
      fc.property(curves, fc.boolean(), (points, header) => {
        const text = `${header ? 'time_s,rate\n' : ''}${points.map((p) => `${p.timeS},${p.rateRps}`).join('\n')}\n`;
        assert.deepEqual(parseRateCurve(text, 'c.csv'), points);
      }),
    );
  });
});
