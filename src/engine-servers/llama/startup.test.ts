import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StartupClock, startupLogLine, startupMetricsText } from './startup.ts';

test('stages are durations between marks that add up to ready; the first mark of each counts', () => {
  let nowMs = 0;
  const clock = new StartupClock(() => nowMs);
  clock.modelBytes = 1234;
  for (const [stage, atMs] of [
    ['runtime', 100],
    ['import', 400],
    ['binding', 900],
    ['weights', 950],
    ['context', 1200],
    ['listen', 1210],
  ] as const) {
    nowMs = atMs;
    clock.mark(stage);
  }
  nowMs = 5000;
  clock.mark('listen');
  assert.equal(clock.report().firstTokenS, undefined);
  const before = startupMetricsText(clock.report(), 'm"x');
  assert.match(before, /^switchyard:engine_startup_ready_seconds\{model_name="m\\"x",engine="0"\} 1\.21$/m);
  assert.doesNotMatch(before, /first_token/);
  nowMs = 1500;
  assert.equal(clock.markToken(), true);
  nowMs = 1600;
  assert.equal(clock.markToken(), false);
  const text = startupMetricsText(clock.report(), 'm');
  assert.match(text, /^switchyard:engine_startup_first_token_seconds\{model_name="m",engine="0"\} 1\.5$/m);
  assert.match(text, /^switchyard:engine_model_bytes\{model_name="m",engine="0"\} 1234$/m);
  const stages = [...text.matchAll(/stage="(\w+)"\} (\S+)/g)].map((m) => [m[1], Number(m[2])]);
  assert.deepEqual(
    stages.map(([s]) => s),
    ['runtime', 'import', 'binding', 'weights', 'context', 'listen'],
  );
  const sum = stages.reduce((a, [, v]) => a + (v as number), 0);
  assert.ok(Math.abs(sum - 1.21) < 1e-9, `${sum}`);
  // Every series has its HELP and TYPE lines once.
  assert.equal(text.match(/^# TYPE switchyard:engine_startup_stage_seconds gauge$/gm)?.length, 1);
  const line = JSON.parse(startupLogLine(clock.report(), 'llama')) as Record<string, unknown>;
  assert.deepEqual(line, {
    event: 'startup',
    engine: 'llama',
    readyS: 1.21,
    firstTokenS: 1.5,
    stagesS: { runtime: 0.1, import: 0.3, binding: 0.5, weights: 0.05, context: 0.25, listen: 0.01 },
    modelBytes: 1234,
  });
});

test('nothing marked, nothing exported', () => {
  assert.equal(startupMetricsText(new StartupClock(() => 0).report(), 'm'), '');
});

test('a standby engine counts from its activation and leaves the stages before it out', () => {
  let nowMs = 0;
  const clock = new StartupClock(() => nowMs);
  for (const [stage, atMs] of [
    ['runtime', 100],
    ['import', 400],
    ['binding', 900],
  ] as const) {
    nowMs = atMs;
    clock.mark(stage);
  }
  nowMs = 60_000;
  clock.activate();
  nowMs = 60_050;
  clock.mark('weights');
  nowMs = 60_300;
  clock.mark('context');
  nowMs = 60_310;
  clock.mark('listen');
  nowMs = 60_400;
  clock.markToken();
  const report = clock.report();
  assert.deepEqual(Object.keys(report.stageEndS), ['weights', 'context', 'listen']);
  assert.ok(Math.abs((report.readyS ?? 0) - 0.31) < 1e-9);
  assert.ok(Math.abs((report.firstTokenS ?? 0) - 0.4) < 1e-9);
  assert.equal(report.standbyS, 60);
  assert.match(
    startupMetricsText(report, 'm'),
    /^switchyard:engine_standby_seconds\{model_name="m",engine="0"\} 60$/m,
  );
});
