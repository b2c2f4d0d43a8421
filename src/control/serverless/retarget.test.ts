import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArrivalHistory } from './forecast.ts';
import type { ServerlessModelView } from './policies.ts';
import { type EngineShape, retargetable, retargetSleepers, retargetTimeMs } from './retarget.ts';
import { resolveSleep } from './sleep.ts';

const shape = (model: string, over: Partial<EngineShape> = {}): EngineShape => ({
  model,
  base: 'llama-3.1-8b',
  tp: 1,
  gpu: 'h100',
  ...over,
});

/** A model's view: `gaps` arrivals a second apart ending at `lastMs`, `held` waiting, `active` instances. */
function view(
  id: string,
  over: Partial<ServerlessModelView> = {},
  gaps = 0,
  lastMs = 0,
): ServerlessModelView {
  const arrivals = new ArrivalHistory();
  for (let i = gaps; i >= 0; i--) arrivals.record(lastMs - i * 1000);
  return {
    id,
    gpus: 1,
    active: 0,
    inSystem: 0,
    held: 0,
    idleMs: 600_000,
    lastUsedMs: lastMs,
    startupMs: 45_000,
    arrivals,
    ...over,
  };
}

test('retargetable: another model of the same base, TP and GPU type only', () => {
  assert.equal(retargetable(shape('m1'), shape('m2')), true);
  assert.equal(retargetable(shape('m1'), shape('m1')), false);
  assert.equal(retargetable(shape('m1'), shape('m2', { base: 'qwen2.5-7b' })), false);
  assert.equal(retargetable(shape('m1'), shape('m2', { tp: 2 })), false);
  assert.equal(retargetable(shape('m1'), shape('m2', { gpu: 'a100-80gb' })), false);
});

test('retargetTimeMs: the weights read plus the wake fixed part and the KV re-allocation', () => {
  const c = resolveSleep();
  assert.equal(retargetTimeMs(600, c), 600 + c.wakeOverheadMs + c.kvReallocMs);
  assert.equal(retargetTimeMs(0, { wakeOverheadMs: 5, kvReallocMs: 7 }), 12);
});

test('retargetSleepers: same shape, nothing waiting, least valuable first, ties by id', () => {
  const nowMs = 600_000;
  const y = shape('y');
  const busy = view('busy', {}, 60, nowMs - 2_000); // asked every second until 2 s ago: valuable
  const cold = view('cold', {}, 4, 0); // asked a few times at the start: worth little now
  const loaded = view('loaded', { active: 1 }, 60, nowMs - 2_000); // an instance ready: its sleeper is worth 0
  const waiting = view('waiting', { held: 3 });
  const order = retargetSleepers(
    [
      { id: 'zz-busy#1', engine: shape('busy'), model: busy },
      { id: 'zz-cold#2', engine: shape('cold'), model: cold },
      { id: 'zz-loaded#4', engine: shape('loaded'), model: loaded },
      { id: 'zz-loaded#3', engine: shape('loaded'), model: loaded },
      { id: 'zz-waiting#5', engine: shape('waiting'), model: waiting },
      { id: 'zz-qwen#6', engine: shape('qwen', { base: 'qwen2.5-7b' }), model: view('qwen') },
      { id: 'zz-tp2#7', engine: shape('tp2', { tp: 2 }), model: view('tp2', { gpus: 2 }) },
    ],
    y,
    nowMs,
    2_000,
  ).map((c) => c.id);
  assert.deepEqual(order, ['zz-loaded#3', 'zz-loaded#4', 'zz-cold#2', 'zz-busy#1']);
});
