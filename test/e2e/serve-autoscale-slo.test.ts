/**
 * End-to-end, the live target: `switchyard bench` sends a rising then falling load (4, then
 * 40, then 2 req/s) to `switchyard serve --autoscaler slo-planner` with real sim engines on loopback.
 * The planner starts engines as the load rises and drains them as it falls; every request the bench
 * sent completes, and the gateway's counters agree that none was lost.
 *
 * The planner's parameters (from the config file) make a short run show it: a one-second start-up
 * (so a two-second scale-down delay), a five-second burst lookback, and planning on a tenth of the
 * performance model's capacity per replica, so 40 req/s of short requests needs the whole pool of
 * three while 4 req/s needs one. Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { runCli } from './support/cli.ts';
import { startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 90_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 100);

const dir = mkdtempSync(join(tmpdir(), 'sy-autoscale-slo-'));
const children: ChildProcess[] = [];
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

const LABELS = 'model="llama-3.1-8b",role="both"';

it('slo-planner starts engines for a rising load from switchyard bench and drains them as it falls, losing no request', async () => {
  const config = join(dir, 'gateway.yaml');
  writeFileSync(
    config,
    [
      'slo: { ttftMs: 1000, tpotMs: 50 }',
      'autoscaler:',
      '  name: slo-planner',
      '  params: { startupMs: 1000, burstLookbackMs: 5000, targetUtilization: 0.1 }',
      '',
    ].join('\n'),
  );
  const { url, stderr, stop } = await startServe(
    [
      '--config',
      config,
      '--autoscaler',
      'slo-planner',
      '--min-instances',
      '1',
      '--max-instances',
      '3',
      '--autoscaler-interval-ms',
      '250',
    ],
    children,
  );

  const out = join(dir, 'bench.json');
  const bench = await runCli(
    [
      'bench',
      '--url',
      url,
      '--stages',
      '4:2,40:5,2:5',
      '--input-tokens',
      '200',
      '--output-tokens',
      '100',
      '--json',
      out,
      '--no-progress',
    ],
    HANG_GUARD_MS,
  );
  assert.equal(bench.code, 0, bench.stderr);
  const summary = JSON.parse(readFileSync(out, 'utf8')) as {
    requests: { scheduled: number; sent: number; completed: number; failed: number };
  };

  // Up with the load: engines 1 and 2 started and became ready while the bench ran.
  for (const k of [1, 2]) {
    assert.ok(
      stderr.some((l) => l.includes(`engine ${k} ready at`)),
      `engine ${k} never became ready:\n${stderr.join('\n')}`,
    );
  }
  // Down as it fell: back to one ready engine, the others drained and stopped.
  await waitFor('the pool back at one engine', async () => {
    const m = await scrapeMetrics(url);
    return (
      m.get(`switchyard_desired_replicas{${LABELS}}`) === 1 &&
      m.get(`switchyard_replicas{${LABELS},phase="ready"}`) === 1 &&
      m.get(`switchyard_replicas{${LABELS},phase="draining"}`) === 0
    );
  });
  assert.ok(
    stderr.some((l) => /engine [12] draining/.test(l)),
    stderr.join('\n'),
  );
  assert.ok(
    stderr.some((l) => /engine [12] stopped/.test(l)),
    stderr.join('\n'),
  );

  // No request lost: the bench's every request completed, and the gateway counted each one.
  assert.equal(summary.requests.failed, 0);
  assert.equal(summary.requests.completed, summary.requests.sent);
  assert.ok(summary.requests.sent >= 200, `sent ${summary.requests.sent}`);
  const stats = (await (await fetch(`${url}/stats`)).json()) as Record<string, unknown>;
  assert.equal(stats['accepted'], summary.requests.sent);
  assert.equal(stats['completed'], summary.requests.sent);
  assert.equal(stats['failedTotal'], 0);

  assert.equal(await stop(), 0);
});
