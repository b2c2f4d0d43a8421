/**
 * Property test of the in-place `priority` editor (engine-priority.ts) on random JSON bodies: for
 * every body, order and gateway priority, the edited body parses to the body with only its
 * top-level `priority` set (JSON.parse keeps the last of duplicate keys, as the engines' parsers
 * do), and every byte outside the one edited span is the client's. Bodies mix what a byte scan
 * could mistake for the key: `priority` inside strings (escaped quotes, backslashes), nested
 * objects and arrays holding `priority`, keys spelled with \u escapes, near-miss keys, duplicate
 * top-level keys, odd whitespace, exponent and huge-integer values, a UTF-8 BOM (the gateway and
 * the built-in engines take one). Each body is edited twice: as a body the gateway did not parse
 * (the byte walk) and as one it did (the priority its parse found noted, as bodyFields does).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bodyWithEnginePriority, enginePriorityValue, noteBodyPriority } from './engine-priority.ts';
import { jsonText, parseBodyFields } from './request-build.ts';

/** mulberry32: a seeded generator, so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WS = ['', '', '', ' ', '\n', '\t', '\r\n  '];
/** Keys as JSON tokens: the key itself spelled several ways, near misses, others. */
const PRIORITY_KEYS = [
  '"priority"',
  '"priorit\\u0079"',
  '"\\u0070riority"',
  '"\\u0070\\u0072\\u0069\\u006F\\u0072ity"',
];
const OTHER_KEYS = [
  '"max_tokens"',
  '"Priority"',
  '"priority "',
  '"prio"',
  '"stop"',
  '"meta"',
  '"x\\"priority"',
  '"\\\\"',
];
const STRINGS = [
  '"priority"',
  '"\\"priority\\": 5"',
  '"{\\"priority\\":1}"',
  '"x\\\\"',
  '"\\\\\\"priority\\\\\\":"',
  '"\\u0070riority"',
  '"é ü 日本 \\ud83d\\ude00"',
  '"}],{["',
  '""',
];
const NUMBERS = ['0', '-0', '7', '-12', '1e2', '2.5', '-1.5E-3', '12345678901234567890', '1e400'];
/** Values a top-level priority may hold that the gateway accepts (integers, as JSON.parse reads them). */
const PRIORITIES = [
  '0',
  '-0',
  '5',
  '-5',
  '3.0',
  '1e2',
  '-1E1',
  '999999',
  '1000000',
  '2000000',
  '123456789012345678901234567890',
];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

function value(r: () => number, depth: number): string {
  const k = r();
  if (depth <= 0 || k < 0.45)
    return k < 0.2 ? pick(r, STRINGS) : k < 0.38 ? pick(r, NUMBERS) : pick(r, ['true', 'false', 'null']);
  if (k < 0.75) return object(r, depth - 1, false);
  const n = Math.floor(r() * 4);
  const items: string[] = [];
  for (let i = 0; i < n; i++) items.push(pick(r, WS) + value(r, depth - 1) + pick(r, WS));
  return `[${items.join(',')}]`;
}

function member(key: string, val: string, r: () => number): string {
  return `${pick(r, WS)}${key}${pick(r, WS)}:${pick(r, WS)}${val}${pick(r, WS)}`;
}

function object(r: () => number, depth: number, top: boolean): string {
  const members: string[] = [];
  if (top) members.push(member('"model"', '"m"', r), member('"prompt"', pick(r, STRINGS.slice(0, 7)), r));
  const n = Math.floor(r() * 5);
  for (let i = 0; i < n; i++) {
    const key = r() < 0.35 ? pick(r, PRIORITY_KEYS) : pick(r, OTHER_KEYS);
    const isPriority = PRIORITY_KEYS.includes(key);
    // A top-level priority holds an integer (the gateway refuses anything else); nested ones anything.
    const val =
      isPriority && top ? pick(r, PRIORITIES) : key === '"max_tokens"' && top ? '3' : value(r, depth);
    members.splice(Math.floor(r() * (members.length + 1)), 0, member(key, val, r));
  }
  return `{${members.join(',')}${members.length === 0 ? pick(r, WS) : ''}}`;
}

/** The JSON.parse of `body` (BOM stripped, as the gateway reads it). */
function parsed(body: Buffer): Record<string, unknown> {
  const json = JSON.parse(jsonText(body)) as Record<string, unknown>;
  // -0 is 0 to every engine: a body's own -0 may stay.
  if (json['priority'] === 0) json['priority'] = 0;
  return json;
}

function check(body: Buffer, order: 'lower-first' | 'higher-first', p: number, label: string): void {
  const out = bodyWithEnginePriority(body, order, p);
  const expected = parsed(body);
  const wanted = enginePriorityValue(order, p);
  if (wanted !== undefined) expected['priority'] = wanted;
  else if (Object.hasOwn(expected, 'priority') && expected['priority'] !== 0) expected['priority'] = 0;
  assert.deepEqual(parsed(out), expected, `${label}: parse of ${out.toString()}`);
  // Every byte outside one edited span is the client's: out = body[0, k) + added + body[k + removed, end),
  // where added is an inserted member or a number and removed a number literal (or nothing).
  if (out === body) return;
  let head = 0;
  while (head < body.length && head < out.length && body[head] === out[head]) head++;
  for (let k = head; k >= Math.max(0, head - 40); k--)
    for (let a = 0; a <= Math.min(48, body.length - k); a++) {
      const b = out.length - body.length + a;
      if (b < 0 || !out.subarray(k + b).equals(body.subarray(k + a))) continue;
      if (!out.subarray(0, k).equals(body.subarray(0, k))) continue;
      const removed = body.toString('latin1', k, k + a);
      const added = out.toString('latin1', k, k + b);
      if (/^[-+.0-9eE]*$/.test(removed) && /^("priority":)?-?[0-9]+,?$/.test(added)) return;
    }
  assert.fail(
    `${label}: not one edit of a number or one inserted member: ${body.toString()} -> ${out.toString()}`,
  );
}

describe('bodyWithEnginePriority on random bodies', () => {
  it('edit then parse equals parse then set priority; the other bytes unchanged (2,000 bodies x 2 orders x 5 priorities)', () => {
    const r = rng(20261206);
    let noted = 0;
    for (let i = 0; i < 2000; i++) {
      const text = pick(r, WS) + object(r, 3, true) + pick(r, WS);
      const bom = r() < 0.15;
      const bytes = Buffer.concat([Buffer.from(bom ? [0xef, 0xbb, 0xbf] : []), Buffer.from(text)]);
      let fieldsPriority: number | undefined | 'refused' = 'refused';
      try {
        fieldsPriority = parseBodyFields('completion', bytes).priority;
      } catch {
        // Not a body the gateway accepts (e.g. an exponent priority too big): the byte walk alone.
      }
      for (const order of ['lower-first', 'higher-first'] as const)
        for (const p of [0, 1, -1, 5, -7]) {
          check(Buffer.from(bytes), order, p, `#${i} walked ${order} ${p}`);
          if (fieldsPriority === 'refused') continue;
          const copy = Buffer.from(bytes);
          noteBodyPriority(copy, fieldsPriority);
          check(copy, order, p, `#${i} noted ${order} ${p}`);
          noted++;
        }
    }
    assert.ok(noted > 5000, `only ${noted} cases took the noted path`);
  });
});
