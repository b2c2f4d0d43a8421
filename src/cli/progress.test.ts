import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { withSteps } from './progress.ts';

/** A stream that says it is a terminal and keeps what is written to it. */
function fakeTerminal(): Writable & { isTTY: boolean; columns: number; text: () => string } {
  let out = '';
  const s = new Writable({
    write(chunk, _enc, done) {
      out += String(chunk);
      done();
    },
  }) as Writable & { isTTY: boolean; columns: number; text: () => string };
  s.isTTY = true;
  s.columns = 120;
  s.text = () => out;
  return s;
}

test('the runs bar reads sensibly before the first run and names each run after', async () => {
  const tty = fakeTerminal();
  let first = '';
  await withSteps(
    true,
    (step) => {
      first = tty.text();
      step('switchyard', 'rate 4 req/s');
      return 0;
    },
    tty,
  );
  assert.match(first, /runs 0 \| starting/);
  assert.doesNotMatch(first, /\| :/);
  assert.match(tty.text(), /runs 1 \| switchyard: rate 4 req\/s/);
});
