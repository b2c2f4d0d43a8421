import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLimiter, withSuppressed } from './log-limiter.ts';

test('the first line of a key goes out, repeats within the window are counted into the next one', () => {
  let now = 0;
  const limiter = new LogLimiter({ now: () => now, everyMs: 1000 });
  const out: string[] = [];
  const say = (key: string, line: string) =>
    limiter.report(key, (suppressed) => out.push(withSuppressed(line, suppressed)));
  say('metrics/engine-0', 'timed out');
  for (let i = 0; i < 5; i++) {
    now += 100;
    say('metrics/engine-0', 'timed out');
  }
  say('metrics/engine-1', 'refused');
  assert.deepEqual(out, ['timed out', 'refused']);
  now = 1000;
  say('metrics/engine-0', 'timed out');
  assert.equal(out[2], 'timed out (5 more like it since the last report)');
  now = 5000;
  say('metrics/engine-0', 'timed out');
  assert.equal(out[3], 'timed out');
});

test('keys are bounded: the least recently reported is forgotten first', () => {
  const now = 0;
  const limiter = new LogLimiter({ now: () => now, everyMs: 1000, keysMax: 2 });
  const out: string[] = [];
  for (const key of ['a', 'b', 'c', 'a']) limiter.report(key, () => out.push(key));
  // 'a' was forgotten when 'c' arrived, so it is new again.
  assert.deepEqual(out, ['a', 'b', 'c', 'a']);
});
