import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type KeepAliveInput, keepAliveReplicas } from './scale-to-zero.ts';

const idle: KeepAliveInput = {
  loopReplicas: 0,
  active: 0,
  waiting: 0,
  inSystem: 0,
  idleMs: 0,
  keepAliveMs: 1000,
};

it('requests at the host wake a model at zero whatever the loop says', () => {
  const d = keepAliveReplicas({ ...idle, waiting: 3, inSystem: 3 });
  assert.equal(d.replicas, 1);
  assert.match(d.override ?? '', /scale from zero: 3/);
  assert.equal(keepAliveReplicas({ ...idle, loopReplicas: 4, inSystem: 2, active: 1 }).replicas, 4);
});

it('keeps at least one instance within the keep-alive, none past it', () => {
  const warm = keepAliveReplicas({ ...idle, active: 1, idleMs: 400 });
  assert.equal(warm.replicas, 1);
  assert.match(warm.override ?? '', /600 ms left/);
  assert.equal(keepAliveReplicas({ ...idle, active: 2, loopReplicas: 2, idleMs: 400 }).replicas, 2);
  const cold = keepAliveReplicas({ ...idle, active: 2, loopReplicas: 2, idleMs: 1000 });
  assert.equal(cold.replicas, 0);
  assert.match(cold.override ?? '', /keep-alive/);
  // keep_alive 0: unloaded as soon as the last request ended.
  assert.equal(keepAliveReplicas({ ...idle, active: 1, keepAliveMs: 0 }).replicas, 0);
});

it('never starts an idle model at zero, even when the loop wants one (a failed start is not retried)', () => {
  const d = keepAliveReplicas({ ...idle, loopReplicas: 1, idleMs: 10 });
  assert.equal(d.replicas, 0);
  assert.equal(keepAliveReplicas(idle).override, undefined, 'no override when the loop agrees');
});
