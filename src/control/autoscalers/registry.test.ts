import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { totalReplicas } from '../types.ts';
import { autoscalerNames, checkAutoscaler, createAutoscaler } from './registry.ts';
import { ScriptedCluster, testContext } from './test-support.ts';

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

test('every autoscaler builds with its defaults and answers within the bounds on idle and busy ticks', () => {
  const context = testContext({ minReplicas: 1, maxReplicas: 8 });
  for (const name of autoscalerNames()) {
    const loop = createAutoscaler(name, context);
    const cluster = new ScriptedCluster(context, 1);
    for (const concurrency of [0, 0, 500, 500, 0]) {
      const n = totalReplicas(
        cluster.step(loop, { concurrency, signals: { kvUsage: concurrency > 0 ? 1 : 0 } }),
      );
      assert.ok(n >= 1 && n <= 8, `${name}: ${n} replicas outside [1, 8]`);
    }
  }
});

test('static holds maxReplicas whatever the load', () => {
  const context = testContext({ minReplicas: 1, maxReplicas: 6 });
  const loop = createAutoscaler('static', context);
  const replicas = new ScriptedCluster(context, 1).run(loop, [{ concurrency: 0 }, { concurrency: 900 }, {}]);
  assert.deepEqual(replicas, [6, 6, 6]);
});
