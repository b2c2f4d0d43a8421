import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { totalReplicas } from '../types.ts';
import { autoscalerNames, checkAutoscaler, createAutoscaler } from './registry.ts';
import { ScriptedCluster, type ScriptTick, testContext } from './test-support.ts';

test('an unknown autoscaler fails with SY_ERR_UNKNOWN_NAME and lists the valid names', () => {
  assert.throws(
    () => createAutoscaler('hpa', testContext()),
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME' && /static/.test(e.message),
  );
});

test('an unknown parameter fails with SY_ERR_INVALID_CONFIG, naming it and the valid keys', () => {
  assert.throws(
    () => checkAutoscaler('static', { replicas: 3 }),
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_CONFIG' && /replicas/.test(e.message),
  );
});

test('impossible bounds in the context fail naming the field', () => {
  const bad = [
    { maxReplicas: 2, minReplicas: 3 },
    { maxReplicas: 0 },
    { minReplicas: -1 },
    { intervalMs: 0 },
    { variants: [] },
  ];
  for (const overrides of bad) {
    const field = Object.keys(overrides)[0] as string;
    assert.throws(
      () => createAutoscaler('static', testContext(overrides)),
      (e: unknown) =>
        e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT' && e.message.includes(field),
      field,
    );
  }
});

/** A load that rises, bursts and falls, with engine signals that follow it, for every loop. */
const MIXED_SCRIPT: ScriptTick[] = [0, 0, 30, 60, 500, 500, 120, 40, 0, 0].map((concurrency) => ({
  concurrency,
  arrivals: concurrency,
  signalsFor: (ready: number) => {
    const perReplica = concurrency / Math.max(1, ready);
    return {
      running: perReplica,
      inFlight: perReplica,
      waiting: perReplica / 4,
      kvUsage: Math.min(1, perReplica / 100),
    };
  },
}));

test('every autoscaler builds with its defaults, stays within the bounds and is deterministic', () => {
  const context = testContext({ minReplicas: 1, maxReplicas: 8 });
  for (const name of autoscalerNames()) {
    const run = () => {
      const cluster = new ScriptedCluster(context, 1);
      const loop = createAutoscaler(name, context);
      return MIXED_SCRIPT.map((t) => cluster.step(loop, t));
    };
    const decisions = run();
    for (const d of decisions) {
      const n = totalReplicas(d);
      assert.ok(n >= 1 && n <= 8, `${name}: ${n} replicas outside [1, 8]`);
      assert.ok(d.reason.length > 0, `${name}: a decision without a reason`);
      for (const t of d.targets)
        assert.ok(context.variants.includes(t.variant), `${name}: a variant outside the context`);
    }
    assert.deepEqual(run(), decisions, `${name}: the same script gave different decisions`);
  }
});

test('static holds maxReplicas whatever the load', () => {
  const context = testContext({ minReplicas: 1, maxReplicas: 6 });
  const loop = createAutoscaler('static', context);
  const replicas = new ScriptedCluster(context, 1).run(loop, [{ concurrency: 0 }, { concurrency: 900 }, {}]);
  assert.deepEqual(replicas, [6, 6, 6]);
});
