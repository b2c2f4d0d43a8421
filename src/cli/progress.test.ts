import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { runTwin } from '../twin/run.ts';
import { withProgress, withSteps } from './progress.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

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

test('the simulation bar fills to the total the run tells it (a trace counts its requests first)', async () => {
  const tty = fakeTerminal();
  await withProgress(
    true,
    undefined,
    (onProgress) => {
      onProgress(0, 0, 3000);
      onProgress(3000, 987_000, 3000);
      return 0;
    },
    tty,
  );
  assert.match(tty.text(), /simulating \[.*\] 0% \| 0\/3000 requests \| t=0 s/);
  assert.match(tty.text(), /100% \| 3000\/3000 requests \| t=987 s/);
  // Without a total it counts.
  const counting = fakeTerminal();
  await withProgress(true, undefined, (onProgress) => onProgress(5, 1000), counting);
  assert.match(counting.text(), /simulating 5 requests \| t=1 s/);
});

test('a trace replay tells the progress its request count from the first report on', () => {
  const totals = new Set<number | undefined>();
  let reports = 0;
  const settings = resolveSettings(
    simFlags({ trace: 'sample:azure-conv', requests: 2000 }),
    {},
    fromCli(['trace', 'requests']),
  );
  runTwin(settings, (_arrived, _ms, total) => {
    reports++;
    totals.add(total);
  });
  assert.ok(reports > 0);
  assert.deepEqual([...totals], [2000]);
});
