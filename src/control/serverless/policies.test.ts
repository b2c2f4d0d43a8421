import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { ArrivalHistory } from './forecast.ts';
import {
  createServerlessPolicy,
  keepValue,
  pausedInBurst,
  type ServerlessModelView,
  type VictimCandidate,
} from './policies.ts';

const STARTUP_MS = 40_000;
const TICK_MS = 2000;

function view(
  id: string,
  arrivals: ArrivalHistory,
  nowMs: number,
  over: Partial<ServerlessModelView> = {},
): ServerlessModelView {
  const last = arrivals.lastArrivalMs ?? Number.NEGATIVE_INFINITY;
  return {
    id,
    gpus: 1,
    active: 0,
    inSystem: 0,
    held: 0,
    idleMs: Math.max(0, nowMs - last),
    lastUsedMs: last,
    startupMs: STARTUP_MS,
    arrivals,
    ...over,
  };
}

/**
 * One model asked every `periodMs`, each request served within a tick; the policy decides every
 * tick and a start it asks for is ready STARTUP_MS later. Returns, per arrival, whether an instance
 * was ready for it (warm), and the starts made with no request in the system (pre-warms).
 */
function periodic(
  policyName: string,
  periodMs: number,
  periods: number,
): { warm: boolean[]; prewarms: number } {
  const policy = createServerlessPolicy(policyName, { keepAliveMs: 60_000, intervalMs: TICK_MS });
  const arrivals = new ArrivalHistory();
  let startedAtMs: number | undefined;
  let prewarms = 0;
  const warm: boolean[] = [];
  for (let t = 0; t <= periods * periodMs; t += TICK_MS) {
    const arriving = t > 0 && t % periodMs === 0;
    if (arriving) {
      warm.push(startedAtMs !== undefined && t - startedAtMs >= STARTUP_MS);
      arrivals.record(t);
    }
    const m = view('m', arrivals, t, {
      active: startedAtMs === undefined ? 0 : 1,
      inSystem: arriving ? 1 : 0,
    });
    const [want] = policy.plan([m], t);
    if (want === 0) startedAtMs = undefined;
    else if (startedAtMs === undefined) {
      startedAtMs = t;
      if (!arriving) prewarms++;
    }
  }
  return { warm, prewarms };
}

test('switchyard pre-warms a periodic model so its requests find an instance ready', () => {
  const { warm, prewarms } = periodic('switchyard', 300_000, 14);
  // Cold while the history is short; once it holds enough periods to trust, every request is warm,
  // each instance pre-warmed and released after its request.
  assert.equal(warm[0], false);
  assert.deepEqual(warm.slice(-5), [true, true, true, true, true]);
  assert.ok(prewarms >= 5, `${prewarms} pre-warms`);
});

test('the fixed keep-alive never pre-warms: a request every 5 minutes is always cold', () => {
  for (const name of ['keep-alive', 'serverlessllm']) {
    const { warm, prewarms } = periodic(name, 300_000, 12);
    assert.equal(prewarms, 0, name);
    assert.ok(
      warm.every((w) => !w),
      name,
    );
  }
});

test('the forecast: a periodic model is likely just before its period, unlikely half-way', () => {
  const h = new ArrivalHistory();
  for (let k = 1; k <= 10; k++) h.record(k * 300_000);
  const last = 10 * 300_000;
  assert.ok(h.chanceWithin(last + 255_000, 50_000) > 0.8);
  assert.ok(h.chanceWithin(last + 100_000, 50_000) < 0.2);
  assert.equal(new ArrivalHistory().chanceWithin(0, 50_000), 0);
});

/** A model asked every `gapMs` for `n` requests, ending at `endMs`. */
function history(gapMs: number, n: number, endMs: number): ArrivalHistory {
  const h = new ArrivalHistory();
  for (let k = n - 1; k >= 0; k--) h.record(endMs - k * gapMs);
  return h;
}

test('cost-aware eviction takes the cheap victim; LRU takes the least recently used', () => {
  const nowMs = 3_600_000;
  // Popular: a request every 20 s until 70 s ago. Rare: one every 20 min, the last 65 s ago.
  const popular = view('popular', history(20_000, 60, nowMs - 70_000), nowMs, { active: 1 });
  const rare = view('rare', history(1_200_000, 3, nowMs - 65_000), nowMs, { active: 1 });
  assert.ok(keepValue(popular, nowMs, TICK_MS) > keepValue(rare, nowMs, TICK_MS));
  const candidates: VictimCandidate[] = [
    { instanceId: 'popular@n1#1', node: 'n1', gpus: 1, model: popular },
    { instanceId: 'rare@n1#2', node: 'n1', gpus: 1, model: rare },
  ];
  const waiting = view('new', history(5_000, 10, nowMs), nowMs, { held: 3, inSystem: 3 });
  const switchyard = createServerlessPolicy('switchyard').victims(candidates, waiting, nowMs);
  assert.equal(switchyard[0]?.instanceId, 'rare@n1#2');
  // ServerlessLLM's LRU stops the popular one: its last request is older.
  const lru = createServerlessPolicy('serverlessllm').victims(candidates, waiting, nowMs);
  assert.equal(lru[0]?.instanceId, 'popular@n1#1');
  // The fixed keep-alive stops nothing.
  assert.deepEqual(createServerlessPolicy('keep-alive').victims(candidates, waiting, nowMs), []);
});

test('switchyard does not stop an instance pausing within a burst, nor one worth more than a pre-warm', () => {
  const nowMs = 1_000_000;
  const busy = view('busy', history(1000, 64, nowMs - 2000), nowMs, { active: 1 });
  assert.ok(pausedInBurst(busy, 60_000));
  const candidates: VictimCandidate[] = [{ instanceId: 'busy@n1#1', node: 'n1', gpus: 1, model: busy }];
  const waiting = view('new', history(5_000, 10, nowMs), nowMs, { held: 1, inSystem: 1 });
  assert.deepEqual(createServerlessPolicy('switchyard').victims(candidates, waiting, nowMs), []);
  // A pre-warm (nothing held) of a rarely used model never stops a valuable idle one.
  const valuable = view('valuable', history(20_000, 60, nowMs - 30_000), nowMs, { active: 1 });
  const prewarm = view('rare', history(1_200_000, 3, nowMs - 1_000_000), nowMs);
  const offered = [{ instanceId: 'valuable@n1#1', node: 'n1', gpus: 1, model: valuable }];
  assert.deepEqual(createServerlessPolicy('switchyard').victims(offered, prewarm, nowMs), []);
});

test('plans are deterministic: the same calls give the same answers', () => {
  const a = periodic('switchyard', 120_000, 20);
  const b = periodic('switchyard', 120_000, 20);
  assert.deepEqual(a, b);
});

test('an unknown policy name lists the valid ones; bad parameters are refused', () => {
  assert.throws(
    () => createServerlessPolicy('lru'),
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME' && /switchyard/.test(e.message),
  );
  assert.throws(() => createServerlessPolicy('switchyard', { keepValueMin: -1 }), SwitchyardError);
  assert.throws(() => createServerlessPolicy('keep-alive', { maxReplicas: 0 }), SwitchyardError);
});
