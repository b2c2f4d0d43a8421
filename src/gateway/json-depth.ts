/**
 * A nesting-depth bound checked on the raw bytes before JSON.parse: a body of a few megabytes of
 * `[[[[...` costs the parser (and whatever walks the result) seconds of event-loop time, so it is
 * refused first. The scan skips string contents with the native `indexOf` (a prompt is mostly one
 * long string), so a valid body costs far less than its parse.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/** Index just past the string whose opening quote is at `open`, or `body.length` when unterminated. */
function skipString(body: Buffer, open: number): number {
  let from = open + 1;
  for (;;) {
    const q = body.indexOf(QUOTE, from);
    if (q < 0) return body.length;
    // The quote is escaped when an odd run of backslashes stands right before it.
    let k = q - 1;
    while (k > open && body[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    from = q + 1;
  }
}

/**
 * Whether the JSON text in `body` nests arrays and objects deeper than `depthMax` (a bracket
 * inside a string does not count). Invalid JSON gives some answer; JSON.parse rejects it after.
 */
export function jsonDepthExceeds(body: Buffer, depthMax: number): boolean {
  // No more opening brackets in all (strings included) than the bound: no need to look closer.
  if (!opensAtLeast(body, depthMax + 1)) return false;
  let depth = 0;
  let i = 0;
  const n = body.length;
  while (i < n) {
    const c = body[i] as number;
    if (c === QUOTE) {
      i = skipString(body, i);
      continue;
    }
    if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > depthMax) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
    i++;
  }
  return false;
}

/** Whether `[` and `{` together occur at least `n` times (native search, stops at the n-th). */
function opensAtLeast(body: Buffer, n: number): boolean {
  let seen = 0;
  for (const byte of [OPEN_ARRAY, OPEN_OBJECT]) {
    let at = body.indexOf(byte);
    while (at >= 0) {
      if (++seen >= n) return true;
      at = body.indexOf(byte, at + 1);
    }
  }
  return false;
}
