import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { loadOf } from '../load.ts';
import { createPowerOfTwo } from './power-of-two.ts';

for (const load of ['in-flight', 'waiting', 'kv'] as const) {
  runRoutingConformance(`power-of-two (load ${load})`, () => createPowerOfTwo({ load }));
}

const request = makeRequest({ id: 'a', inputTokens: 8, maxTokens: 1, arrivalMs: 0 });

test('power-of-two: never picks the worse of its two samples', () => {
  // Replays the policy's own draws with a twin generator and checks the choice against both samples.
  for (const load of ['in-flight', 'waiting', 'kv'] as const) {
    const view = testCluster(10, (i) => ({
      inFlight: (i * 7) % 10,
      waiting: (i * 3) % 10,
      kvUsage: ((i * 9) % 10) / 10,
      healthy: i !== 4,
    }));
    const eligible = view.instances.filter((x) => x.healthy);
    const policy = createPowerOfTwo({ load });
    const rng = new Rng(11);
    const twin = new Rng(11);
    for (let r = 0; r < 500; r++) {
      const d = policy.decide(view, request, rng);
      const first = twin.int(eligible.length);
      let second = twin.int(eligible.length - 1);
      if (second >= first) second++;
      const a = eligible[first];
      const b = eligible[second];
      assert.ok(a && b && a !== b);
      assert.equal(d.kind, 'route');
      if (d.kind !== 'route') continue;
      assert.ok(d.instanceId === a.id || d.instanceId === b.id, 'picked outside its two samples');
      const picked = d.instanceId === a.id ? a : b;
      const other = picked === a ? b : a;
      assert.ok(loadOf(picked, load) <= loadOf(other, load), `${load}: picked the worse sample`);
    }
  }
});

test('power-of-two: the two samples are distinct (two instances: always the less loaded)', () => {
  const view = testCluster(2, (i) => ({ inFlight: [5, 1][i] ?? 0 }));
  const policy = createPowerOfTwo();
  const rng = new Rng(3);
  for (let r = 0; r < 100; r++)
    assert.deepEqual(policy.decide(view, request, rng), { kind: 'route', instanceId: 'i1' });
});

test('power-of-two: spreads over the pool, and the most loaded instance is never chosen', () => {
  const view = testCluster(8, (i) => ({ inFlight: i }));
  const policy = createPowerOfTwo();
  const rng = new Rng(5);
  const counts = new Array<number>(8).fill(0);
  for (let r = 0; r < 4000; r++) {
    const d = policy.decide(view, request, rng);
    if (d.kind === 'route') {
      const i = Number(d.instanceId.slice(1));
      counts[i] = (counts[i] as number) + 1;
    }
  }
  assert.equal(counts[7], 0);
  // P(pick i) = 2 (7 - i) / 56 for 8 instances with distinct loads.
  for (let i = 0; i < 7; i++) {
    const expected = (4000 * 2 * (7 - i)) / 56;
    assert.ok(
      Math.abs((counts[i] as number) - expected) < 0.2 * expected + 20,
      `instance ${i}: ${counts[i]}`,
    );
  }
});
