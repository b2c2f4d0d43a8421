/**
 * End-to-end: `switchyard serve --autoscaler` with real sim engines on loopback. APA on the
 * gateway's own concurrency (target 2 per engine, no cooldowns, a 250 ms tick, from a config file)
 * starts with one engine; eight clients sending back to back make it start a second, which then takes
 * requests; when six of them stop it drains the second back out while the other two keep sending, and
 * stops its process. Every request gets a 200, the gateway's counters show none lost, and /metrics
 * shows the desired and actual counts.
 * Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, it } from 'node:test';
import { BIN } from './support/cli.ts';
import { startServe as startServeIn } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 50);
const CLIENTS = 8;

const dir = mkdtempSync(join(tmpdir(), 'sy-autoscale-'));
const children: ChildProcess[] = [];
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

const startServe = (args: string[]) => startServeIn(args, children);

const LABELS = 'model="llama-3.1-8b",role="both"';
const desired = (m: Map<string, number>) => m.get(`switchyard_desired_replicas{${LABELS}}`);
const replicas = (m: Map<string, number>, phase: string) =>
  m.get(`switchyard_replicas{${LABELS},phase="${phase}"}`);
const inFlightOn = (m: Map<string, number>, id: string) =>
  m.get(`switchyard_gateway_instance_in_flight{instance="${id}"}`);

it('scales sim engines up under load and drains back to the minimum, losing no request', async (t) => {
  const config = join(dir, 'gateway.yaml');
  writeFileSync(
    config,
    [
      'autoscaler:',
      '  name: apa',
      '  params: { metric: concurrency, targetValue: 2, windowMs: 0, scaleUpCooldownMs: 0, scaleDownCooldownMs: 0 }',
      '',
    ].join('\n'),
  );
  const { proc, stderr, exited, url } = await startServe([
    '--config',
    config,
    '--autoscaler',
    'apa',
    '--min-instances',
    '1',
    '--max-instances',
    '2',
    '--autoscaler-interval-ms',
    '250',
    '--time-scale',
    '0.5',
  ]);

  // At rest: one engine, and the loop wants one.
  const rest = await scrapeMetrics(url);
  assert.equal(replicas(rest, 'ready'), 1);
  assert.equal(desired(rest), 1);

  // Rising load: clients send back to back until told to stop (client c runs while c < active).
  let active = CLIENTS;
  const statuses: number[] = [];
  const client = async (c: number): Promise<void> => {
    while (c < active) {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'llama-3.1-8b',
          messages: [{ role: 'user', content: `client ${c} asks something of moderate length` }],
          max_tokens: 120,
          stream: c % 2 === 0,
        }),
      });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
  };
  const clients = Array.from({ length: CLIENTS }, (_, c) => client(c));
  let sawDesired2 = false;
  await waitFor('a second engine taking requests', async () => {
    const m = await scrapeMetrics(url);
    if (desired(m) === 2) sawDesired2 = true;
    return replicas(m, 'ready') === 2 && (inFlightOn(m, 'engine-1') ?? 0) > 0;
  });
  assert.ok(sawDesired2, 'the gauge showed 2 desired replicas');
  assert.ok(
    stderr.some((l) => l.includes('engine 1 ready at')),
    stderr.join('\n'),
  );

  // Falling load: two clients go on; the second engine drains out under traffic and its process stops.
  active = 2;
  await waitFor('the pool back at one engine', async () => {
    const m = await scrapeMetrics(url);
    return (
      desired(m) === 1 &&
      replicas(m, 'ready') === 1 &&
      replicas(m, 'starting') === 0 &&
      replicas(m, 'draining') === 0 &&
      stderr.some((l) => l.includes('engine 1 stopped'))
    );
  });
  t.diagnostic(stderr.find((l) => l.includes('engine 1 draining')) ?? 'no drain line');
  active = 0;
  await Promise.all(clients);
  const end = await scrapeMetrics(url);
  assert.equal(inFlightOn(end, 'engine-1'), undefined, 'engine-1 is no longer a backend');
  assert.equal(inFlightOn(end, 'engine-0'), 0);

  // No request lost: every answer a 200, and the gateway counted each one as completed.
  assert.ok(statuses.length >= CLIENTS);
  assert.deepEqual(
    statuses.filter((s) => s !== 200),
    [],
  );
  const stats = (await (await fetch(`${url}/stats`)).json()) as Record<string, unknown>;
  assert.equal(stats['accepted'], statuses.length);
  assert.equal(stats['completed'], statuses.length);
  assert.equal(stats['failedTotal'], 0);
  assert.equal(stats['retries'], 0);
  assert.equal(end.get('switchyard_autoscaler_start_failures_total{' + LABELS + '}'), 0);

  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.ok(stderr.some((l) => l.includes('switchyard serve: stopped')));
});

it('with configured backends, exports the desired count without starting anything', async () => {
  // An engine Switchyard does not run: started here, named in the config.
  const engine = spawn(process.execPath, [BIN, 'engine', 'sim', '--port', '0', '--time-scale', '0.5'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const engineClosed = new Promise((resolve) => engine.once('close', resolve));
  let engineUrl: string | undefined;
  createInterface({ input: engine.stdout as NodeJS.ReadableStream }).on('line', (l) => {
    engineUrl ??= (JSON.parse(l) as { url?: string }).url;
  });
  try {
    await waitFor('the engine ready line', () => engineUrl !== undefined);
    const config = join(dir, 'backends.yaml');
    writeFileSync(
      config,
      [
        'backends:',
        `  - { id: pod-a, type: sim, url: "${engineUrl}", models: [llama-3.1-8b] }`,
        'autoscaler:',
        '  name: apa',
        '  params: { metric: concurrency, targetValue: 2, windowMs: 0, scaleDownCooldownMs: 0 }',
        '  maxInstances: 4',
        '  intervalMs: 250',
        '',
      ].join('\n'),
    );
    const serve = await startServe(['--config', config]);
    let loadOn = true;
    const client = async (): Promise<void> => {
      while (loadOn) {
        const res = await fetch(`${serve.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'llama-3.1-8b',
            messages: [{ role: 'user', content: 'hello' }],
            max_tokens: 120,
          }),
        });
        await res.arrayBuffer();
        assert.equal(res.status, 200);
      }
    };
    const clients = Array.from({ length: CLIENTS }, client);
    await waitFor('a desired count above the one backend', async () => {
      const m = await scrapeMetrics(serve.url);
      return (desired(m) ?? 0) > 1;
    });
    const m = await scrapeMetrics(serve.url);
    assert.equal(replicas(m, 'ready'), 1, 'the one configured backend');
    assert.equal(replicas(m, 'starting'), 0, 'nothing started');
    loadOn = false;
    await Promise.all(clients);
    assert.ok(serve.stderr.some((l) => l.includes('exports switchyard_desired_replicas')));
    assert.ok(!serve.stderr.some((l) => l.includes('starting engine')));
    serve.proc.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
  } finally {
    engine.kill('SIGTERM');
    await engineClosed;
  }
});
