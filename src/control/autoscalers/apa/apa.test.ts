import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControlContext, ControlDecision, ControlLoop } from '../../types.ts';
import { totalReplicas } from '../../types.ts';
import { createAutoscaler } from '../registry.ts';
import { repeat, ScriptedCluster, type ScriptTick, testContext } from '../test-support.ts';

/** `running` against 10 per replica, the latest tick only, no cooldowns: the bare rule. */
const BARE = { metric: 'running', targetValue: 10, windowMs: 0, scaleDownCooldownMs: 0 };

function apa(context: ControlContext, params: Record<string, unknown> = BARE): ControlLoop {
  return createAutoscaler('apa', context, params);
}

/** A total of `n` running sequences spread evenly over the ready instances. */
const spread = (n: number): ScriptTick => ({ signalsFor: (ready) => ({ running: n / Math.max(1, ready) }) });

/** One decision at `ready` instances each showing `running` sequences. */
function once(running: number, ready: number, params: Record<string, unknown> = BARE): ControlDecision {
  const context = testContext({ minReplicas: 1 });
  return new ScriptedCluster(context, ready).step(apa(context, params), { signals: { running } });
}

test('inside the tolerance band it holds; outside it scales by the ratio', () => {
  // Band with 10% each way around 10 per replica: 9..11.
  assert.equal(totalReplicas(once(10.9, 4)), 4, '1.09x target: inside');
  assert.equal(totalReplicas(once(9.1, 4)), 4, '0.91x target: inside');
  assert.equal(totalReplicas(once(11.5, 4)), 5, 'ceil(4 x 1.15) = 5');
  assert.equal(totalReplicas(once(6, 4)), 3, 'ceil(4 x 0.6) = 3');
  assert.match(once(10.9, 4).reason, /^apa hold: running 10\.9.* band 9\.000\.\.11\.0/);
  // A wider down band (AIBrix's sample uses 0.2) holds 8.5 where 10% would not.
  assert.equal(totalReplicas(once(8.5, 4)), 4, 'ceil(4 x 0.85) = 4 anyway');
  assert.equal(totalReplicas(once(8.5, 10)), 9, 'ceil(10 x 0.85) = 9 with the 10% band');
  assert.equal(
    totalReplicas(once(8.5, 10, { ...BARE, downFluctuationTolerance: 0.2 })),
    10,
    'inside a 20% band',
  );
});

test('a step up in load doubles at most per tick (max scale-up rate 2)', () => {
  const context = testContext({ minReplicas: 1 });
  // 200 running in all wants 20 replicas at 10 each; from 2 ready: 4, 8, 16, then the ratio's 20.
  const n = new ScriptedCluster(context, 2).run(apa(context), repeat(6, spread(200)));
  assert.deepEqual(n, [4, 8, 16, 20, 20, 20]);
});

test('a fall in load halves at most per tick (max scale-down rate 2)', () => {
  const context = testContext({ minReplicas: 1 });
  // From 20 at 10 each, load falls to 20 in all (2 replicas' worth): 10, 5, then ceil(5 x 0.4) = 2.
  const n = new ScriptedCluster(context, 20).run(apa(context), [spread(200), ...repeat(5, spread(20))]);
  assert.deepEqual(n, [20, 10, 5, 2, 2, 2]);
});

test('the scale-down cooldown (300 s by default) holds the highest recommendation of its window', () => {
  const context = testContext({ minReplicas: 1 });
  const { scaleDownCooldownMs: _, ...withCooldown } = BARE;
  const n = new ScriptedCluster(context, 20).run(apa(context, withCooldown), [
    ...repeat(3, spread(200)),
    ...repeat(300, spread(20)),
  ]);
  const fall = n.slice(3);
  // The last "hold 20" came at 6 s; it leaves the window at the tick at 306 s, the 150th after the fall.
  assert.deepEqual(fall.slice(0, 149), Array(149).fill(20), 'no scale-down for 300 s');
  assert.equal(fall[149], 10, 'then one rate-limited step');
  // The 10 recommended from then on keeps the next step down a further 300 s away.
  assert.deepEqual(fall.slice(149, 299), Array(150).fill(10));
  assert.equal(fall[299], 5);
});

test('a scale-up cooldown ignores a one-tick spike and scales after a sustained rise', () => {
  const context = testContext({ minReplicas: 1 });
  const params = { ...BARE, scaleUpCooldownMs: 10_000 };
  const steady = repeat(5, { signals: { running: 10 } });
  const spike = new ScriptedCluster(context, 4).run(apa(context, params), [
    ...steady,
    { signals: { running: 20 } },
    ...repeat(6, { signals: { running: 10 } }),
  ]);
  assert.deepEqual(spike, Array(12).fill(4), 'one tick at 2x target does not scale up');
  const rise = new ScriptedCluster(context, 4).run(apa(context, params), [
    ...steady,
    ...repeat(6, spread(80)),
  ]);
  // 80 running over 4 ready wants 8; the window still holds a "4" for 4 ticks (10 s at 2 s ticks).
  assert.deepEqual(rise.slice(5), [4, 4, 4, 4, 8, 8]);
  // Without the cooldown it scales on the first tick.
  const prompt = new ScriptedCluster(context, 4).run(apa(context), [...steady, ...repeat(2, spread(80))]);
  assert.deepEqual(prompt.slice(5), [8, 8]);
});

test('the signal is averaged over windowMs before the band is applied', () => {
  const context = testContext({ minReplicas: 1 });
  const script = [...repeat(3, { signals: { running: 10 } }), { signals: { running: 12 } }];
  // Over 6 s (3 ticks): (10 + 10 + 12) / 3 = 10.7 per replica, inside the band.
  const averaged = new ScriptedCluster(context, 4).run(apa(context, { ...BARE, windowMs: 6_000 }), script);
  assert.deepEqual(averaged, [4, 4, 4, 4]);
  // The latest tick alone: 12 = 1.2x, ceil(4 x 1.2) = 5.
  const latest = new ScriptedCluster(context, 4).run(apa(context), script);
  assert.deepEqual(latest, [4, 4, 4, 5]);
});

test('any signal: kvUsage (the default, 0.5), waiting, concurrency and arrival rate', () => {
  const context = testContext({ minReplicas: 1 });
  const byKv = new ScriptedCluster(context, 2).step(createAutoscaler('apa', context), {
    signals: { kvUsage: 0.9 },
  });
  assert.equal(totalReplicas(byKv), 4, 'ceil(2 x 0.9 / 0.5) = 4, within the rate');
  const byWaiting = apa(context, { ...BARE, metric: 'waiting', targetValue: 2 });
  assert.equal(
    totalReplicas(new ScriptedCluster(context, 3).step(byWaiting, { signals: { waiting: 3 } })),
    5,
  );
  const byConcurrency = apa(context, { ...BARE, metric: 'concurrency', targetValue: 10 });
  assert.equal(totalReplicas(new ScriptedCluster(context, 2).step(byConcurrency, { concurrency: 30 })), 3);
  // 40 arrivals over a 2 s window: 20 req/s over 2 replicas = 10 each, 2x a target of 5.
  const byRate = apa(context, { ...BARE, metric: 'arrivalRate', targetValue: 5 });
  assert.equal(totalReplicas(new ScriptedCluster(context, 2).step(byRate, { arrivals: 40 })), 4);
});

test('instances still starting are neither counted as loaded nor cancelled by a scale-up', () => {
  const context = testContext({ minReplicas: 1 });
  const loop = apa(context);
  // 2 ready at 15 each (30 in all wants 3) while 2 more start: a scale-up signal keeps all 4.
  const d = new ScriptedCluster(context, 2).step(loop, { signals: { running: 15 }, starting: 2 });
  assert.equal(totalReplicas(d), 4);
  assert.match(d.reason, /^apa hold: .*ready 2, current 4/);
  // Nothing ready yet reports an engine signal: hold what is on the way.
  const none = new ScriptedCluster(context, 0).step(apa(context), { starting: 3 });
  assert.equal(totalReplicas(none), 3);
  assert.match(none.reason, /no running reported/);
});

test('scale to zero only when minReplicas allows, and back to one when requests wait', () => {
  const zero = testContext({ minReplicas: 0 });
  const n = new ScriptedCluster(zero, 1).run(apa(zero, { ...BARE, metric: 'concurrency' }), [
    { concurrency: 0 },
    { concurrency: 0 },
    { arrivals: 1, window: { queuedAtEnd: 1 } },
  ]);
  assert.deepEqual(n, [0, 0, 1]);
  const one = testContext({ minReplicas: 1 });
  assert.deepEqual(
    new ScriptedCluster(one, 1).run(apa(one, { ...BARE, metric: 'concurrency' }), repeat(2, {})),
    [1, 1],
  );
  // With an engine signal and nothing ready, a waiting request still brings one up.
  const cold = new ScriptedCluster(zero, 0).step(apa(zero), { arrivals: 2 });
  assert.equal(totalReplicas(cold), 1);
});

/** A cold start: none ready, `starting` on the way, `held` requests of `prompt` tokens at the host. */
const cold = (starting: number, held: number, prompt = 8000): ScriptTick => ({
  ready: 0,
  starting,
  arrivals: 40,
  window: { queuedAtEnd: held, meanInputTokens: prompt },
});

/** Runs ticks where each decision's instances are all still starting (a cold start longer than the run). */
function coldStart(
  loop: ControlLoop,
  context: ControlContext,
  held: readonly number[],
  prompt = 8000,
): number[] {
  const cluster = new ScriptedCluster(context, 0);
  let starting = 1; // the host's wake-up started one at the first request
  return held.map((h) => {
    starting = totalReplicas(cluster.step(loop, cold(starting, h, prompt)));
    return starting;
  });
}

test('from zero, requests held at the host size the pool while the first instances start (kvUsage)', () => {
  const zero = testContext({ minReplicas: 0, maxReplicas: 16 });
  // llama-3.1-8b on one H100 holds 419,648 KV tokens (performance model, vLLM's defaults). 256 held
  // 8,000-token prompts need 4.88 caches: 9.8x the 0.5 target, so ceil(9.76) = 10, doubling per tick.
  const n = coldStart(createAutoscaler('apa', zero), zero, [40, 120, 256, 256, 256, 256]);
  assert.deepEqual(n, [2, 4, 8, 10, 10, 10]);
  const d = new ScriptedCluster(zero, 0).step(createAutoscaler('apa', zero), cold(1, 256));
  assert.match(
    d.reason,
    /^apa up: kvUsage 4\.880 per replica.*ready 0, current 1, from 256 request\(s\) held/,
  );
  // A few short prompts fit in one instance's cache: one, as before.
  assert.deepEqual(coldStart(createAutoscaler('apa', zero), zero, [10, 20], 1024), [1, 1]);
});

test('from zero, a held request counts as one of running, waiting or in-flight', () => {
  const zero = testContext({ minReplicas: 0, maxReplicas: 16 });
  for (const metric of ['running', 'waiting', 'inFlight']) {
    const loop = apa(zero, { ...BARE, metric });
    // 45 held at 10 per replica: 5, reached at the scale-up rate.
    assert.deepEqual(coldStart(loop, zero, [45, 45, 45, 45]), [2, 4, 5, 5], metric);
  }
});

test('from zero, the KV size last seen on an instance converts held requests', () => {
  const zero = testContext({ minReplicas: 0, maxReplicas: 16 });
  const loop = createAutoscaler('apa', zero);
  const cluster = new ScriptedCluster(zero, 1);
  // An instance of 1,000 blocks of 16 tokens (16,000 tokens) was seen, then the pool went to zero.
  cluster.step(loop, { ready: 1, signals: { kvUsage: 0.5 } });
  // 10 held 1,600-token prompts fill one such cache: 2x the target.
  const d = cluster.step(loop, { ...cold(1, 10, 1600) });
  assert.equal(totalReplicas(d), 2);
  assert.match(d.reason, /kvUsage 1\.000 per replica/);
});

test('from zero with no way to convert held requests (a model outside the catalogue), it holds one', () => {
  const gguf = { ...testContext().variants[0], model: 'my-finetune.gguf' } as ControlContext['variants'][0];
  const zero = testContext({ minReplicas: 0, maxReplicas: 16, variants: [gguf] });
  const n = coldStart(createAutoscaler('apa', zero), zero, [256, 256]);
  assert.deepEqual(n, [1, 1]);
});

test('the held-request estimate never enters the averaging window', () => {
  const zero = testContext({ minReplicas: 0, maxReplicas: 16 });
  const loop = createAutoscaler('apa', zero); // 60 s window
  const cluster = new ScriptedCluster(zero, 0);
  for (let i = 0; i < 5; i++) cluster.step(loop, cold(4, 100, 8000));
  // The first instance is ready and reads 0.5, on target: the window holds that reading alone.
  const d = cluster.step(loop, { ready: 1, starting: 3, signals: { kvUsage: 0.5 } });
  assert.match(d.reason, /kvUsage 0\.500 per replica/);
  assert.equal(totalReplicas(d), 4, 'what is on the way is kept');
});

test("readings from before the pool lost its last ready instance do not enter the new instances' average", () => {
  const zero = testContext({ minReplicas: 0, maxReplicas: 16 }); // 2 s ticks, 60 s window
  const loop = createAutoscaler('apa', zero);
  const cluster = new ScriptedCluster(zero, 2);
  // Two instances at twice the target (kvUsage 1.0 each), held at two by a cap of 2.
  const busy = { ready: 2, signals: { kvUsage: 1 } };
  for (let i = 0; i < 3; i++) cluster.step(loop, busy);
  // Both are gone within the window (a crash, a replacement) and requests are held meanwhile.
  cluster.step(loop, cold(2, 10, 1000));
  // The replacements read 0.5, on target: their average is their own reading, not 0.875 with the
  // old instances' 1.0s, which would scale up.
  const d = cluster.step(loop, { ready: 2, signals: { kvUsage: 0.5 } });
  assert.match(d.reason, /^apa hold: kvUsage 0\.500 per replica/);
  assert.equal(totalReplicas(d), 2);
});

test('the same script gives the same decisions', () => {
  const context = testContext({ minReplicas: 1 });
  const script = [...repeat(5, spread(30)), ...repeat(5, spread(300)), ...repeat(40, spread(10))];
  const params = { ...BARE, windowMs: 6_000, scaleDownCooldownMs: 20_000 };
  const a = new ScriptedCluster(context, 2).run(apa(context, params), script);
  const b = new ScriptedCluster(context, 2).run(apa(context, params), script);
  assert.deepEqual(a, b);
});

test('bad parameters fail naming the key', () => {
  const context = testContext();
  assert.throws(() => apa(context, { metric: 'running' }), /targetValue/);
  assert.throws(() => apa(context, { metric: 'gpu' }), /metric/);
  assert.throws(() => apa(context, { downFluctuationTolerance: 1 }), /downFluctuationTolerance/);
  assert.throws(() => apa(context, { tolerance: 0.1 }), /tolerance.*valid: .*upFluctuationTolerance/);
});
