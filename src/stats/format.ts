/**
 * Number formatting shared by the terminal tables and the HTML report. Locale is fixed to en-US so
 * the output does not depend on the machine that prints it.
 */

const formatters = new Map<number, Intl.NumberFormat>();

/** `x` with thousands separators and at most `fractionDigits` decimals; '-' for non-finite. */
export function fmtNumber(x: number, fractionDigits = 0): string {
  if (!Number.isFinite(x)) return '-';
  let f = formatters.get(fractionDigits);
  if (f === undefined) {
    f = new Intl.NumberFormat('en-US', {
      minimumFractionDigits: fractionDigits,
      maximumFractionDigits: fractionDigits,
    });
    formatters.set(fractionDigits, f);
  }
  // -0 would print as "-0".
  return f.format(x === 0 ? 0 : x);
}

/**
 * A latency in ms with precision that follows its size: 0.042, 3.27, 45.1, 1,234. Three
 * significant figures is what a reader compares at a glance.
 */
export function fmtMs(ms: number): string {
  const a = Math.abs(ms);
  if (a === 0) return '0';
  if (a < 1) return fmtNumber(ms, 3);
  if (a < 10) return fmtNumber(ms, 2);
  if (a < 100) return fmtNumber(ms, 1);
  return fmtNumber(ms, 0);
}

/** An SLO target in ms: "500", "50", "0.25"; no trailing ".0" on round targets. */
export function fmtTarget(ms: number): string {
  return Number.isInteger(ms) ? fmtNumber(ms) : fmtMs(ms);
}

/** A fraction in [0, 1] as a percentage with one decimal: 0.9734 -> "97.3%". */
export function fmtPct(fraction: number): string {
  return Number.isFinite(fraction) ? `${fmtNumber(fraction * 100, 1)}%` : '-';
}

/** A rate or count with an SI suffix: 1234567 -> "1.23M". */
export function fmtSi(x: number): string {
  if (!Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  for (const [scale, suffix] of [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const) {
    if (a >= scale) return `${(x / scale).toPrecision(3)}${suffix}`;
  }
  return a >= 100 || Number.isInteger(x) ? fmtNumber(x, 0) : x.toPrecision(3);
}

/** A quantity in a fitting number of decimals: 12,345 / 123.4 / 1.23. */
export function fmtQty(x: number): string {
  const a = Math.abs(x);
  if (a >= 1000 || Number.isInteger(x)) return fmtNumber(x, 0);
  if (a >= 100) return fmtNumber(x, 1);
  return fmtNumber(x, 2);
}

/** Seconds with one decimal below an hour, else hours, minutes, seconds: "0.012 s", "1h 02m 05s". */
export function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '-';
  if (Math.abs(s) < 1) return `${fmtNumber(s, 3)} s`;
  if (Math.abs(s) < 3600) return `${fmtNumber(s, 1)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  return `${h}h ${String(m).padStart(2, '0')}m ${String(sec).padStart(2, '0')}s`;
}
