import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { keepAliveMsOf, ModelBuffer, type ModelBufferLimits } from './model-buffer.ts';

const LIMITS: ModelBufferLimits = {
  perModelMax: 3,
  totalMax: 100,
  waitMs: 1000,
  keepAliveMsDefault: 300_000,
  keepAliveMsMax: 3_600_000,
};

/** A host on a hand-moved clock whose timers the test fires. */
function harness(limits: ModelBufferLimits = LIMITS) {
  let nowMs = 0;
  const released: string[] = [];
  const rejected: { item: string; code: string; retryAfterMs: number }[] = [];
  const wakes: [string, number][] = [];
  const timers: { atMs: number; fn: () => void; cancelled: boolean }[] = [];
  const buffer = new ModelBuffer<string>(['a', 'b'], limits, {
    nowMs: () => nowMs,
    release: (item) => released.push(item),
    reject: (item, error: SwitchyardError, retryAfterMs) =>
      rejected.push({ item, code: error.code, retryAfterMs }),
    wake: (model, waiting) => wakes.push([model, waiting]),
    schedule: (delayMs, fn) => {
      const t = { atMs: nowMs + delayMs, fn, cancelled: false };
      timers.push(t);
      return () => {
        t.cancelled = true;
      };
    },
  });
  const advance = (toMs: number): void => {
    nowMs = toMs;
    for (const t of [...timers])
      if (!t.cancelled && t.atMs <= nowMs) {
        t.cancelled = true;
        t.fn();
      }
  };
  return { buffer, released, rejected, wakes, advance };
}

describe('ModelBuffer', () => {
  it('fails the held requests of the models picked, keeping the others (a drain)', () => {
    const h = harness();
    h.buffer.hold('a', 'a1');
    h.buffer.hold('b', 'b1');
    h.buffer.hold('a', 'a2');
    const asked: string[] = [];
    const n = h.buffer.failWhere(
      (m) => {
        asked.push(m);
        return m === 'a';
      },
      new SwitchyardError('SY_ERR_DRAINING', 'shutting down'),
      1000,
    );
    assert.equal(n, 2);
    assert.deepEqual(asked, ['a', 'b'], 'only models holding requests are asked');
    assert.deepEqual(
      h.rejected.map((r) => `${r.item} ${r.code}`),
      ['a1 SY_ERR_DRAINING', 'a2 SY_ERR_DRAINING'],
    );
    assert.equal(h.buffer.waiting('b'), 1);
    assert.equal(h.buffer.stats.failed, 2);
  });

  it('holds per model, wakes on each hold, and releases in arrival order once the model is in service', () => {
    const h = harness();
    assert.ok(h.buffer.hold('a', 'a1'));
    assert.ok(h.buffer.hold('b', 'b1'));
    assert.ok(h.buffer.hold('a', 'a2'));
    assert.deepEqual(h.wakes, [
      ['a', 1],
      ['b', 1],
      ['a', 2],
    ]);
    assert.equal(h.buffer.waiting('a'), 2);
    assert.equal(h.buffer.size, 3);
    assert.equal(
      h.buffer.releaseWhere((m) => m === 'a'),
      2,
    );
    assert.deepEqual(h.released, ['a1', 'a2']);
    assert.equal(h.buffer.waiting('a'), 0);
    assert.equal(h.buffer.waiting('b'), 1);
    assert.equal(h.buffer.stats.released, 2);
  });

  it('refuses past the per-model bound with 429 SY_ERR_SCALE_BUFFER_FULL and Retry-After', () => {
    const h = harness();
    for (const item of ['a1', 'a2', 'a3']) assert.ok(h.buffer.hold('a', item));
    assert.equal(h.buffer.hold('a', 'a4'), false);
    assert.deepEqual(
      h.rejected.map((r) => [r.item, r.code]),
      [['a4', 'SY_ERR_SCALE_BUFFER_FULL']],
    );
    assert.ok((h.rejected[0]?.retryAfterMs ?? 0) > 0);
    // Another model's bound is its own.
    assert.ok(h.buffer.hold('b', 'b1'));
    assert.equal(h.buffer.stats.overflowed, 1);
    assert.equal(h.buffer.stats.held, 4);
  });

  it('refuses past the bound on all models together, naming it, and holds again once one leaves', () => {
    const h = harness({ ...LIMITS, totalMax: 4 });
    for (const item of ['a1', 'a2', 'a3']) assert.ok(h.buffer.hold('a', item));
    assert.ok(h.buffer.hold('b', 'b1'));
    // Model b holds 1 of its 3, but the gateway holds 4 of 4.
    assert.equal(h.buffer.hold('b', 'b2'), false);
    assert.deepEqual(
      h.rejected.map((r) => [r.item, r.code]),
      [['b2', 'SY_ERR_SCALE_BUFFER_FULL']],
    );
    assert.ok((h.rejected[0]?.retryAfterMs ?? 0) > 0);
    assert.equal(h.buffer.stats.overflowed, 1);
    h.buffer.releaseWhere((m) => m === 'a');
    assert.ok(h.buffer.hold('b', 'b3'));
    assert.equal(h.buffer.size, 2);
  });

  it('names the bound a refusal met', () => {
    const errors: string[] = [];
    const make = (totalMax: number) =>
      new ModelBuffer<string>(
        ['a', 'b'],
        { ...LIMITS, perModelMax: 1, totalMax },
        {
          nowMs: () => 0,
          release: () => {},
          reject: (_item, error) => errors.push(error.message),
          wake: () => {},
          schedule: () => () => {},
        },
      );
    const perModel = make(10);
    perModel.hold('a', 'a1');
    perModel.hold('a', 'a2');
    const total = make(1);
    total.hold('a', 'a1');
    total.hold('b', 'b1');
    assert.match(errors[0] ?? '', /limits\.scaleFromZeroBufferMax 1\b/);
    assert.match(errors[1] ?? '', /holds 1 requests .*limits\.scaleFromZeroHeldMax 1\b/);
    assert.throws(() => make(0), /totalMax 0/);
  });

  it('answers a request that waited past waitMs with 503 SY_ERR_COLD_START_TIMEOUT, and only those', () => {
    const h = harness();
    h.buffer.hold('a', 'a1');
    h.advance(600);
    h.buffer.hold('a', 'a2');
    h.advance(1000);
    assert.deepEqual(
      h.rejected.map((r) => [r.item, r.code]),
      [['a1', 'SY_ERR_COLD_START_TIMEOUT']],
    );
    assert.equal(h.buffer.waiting('a'), 1);
    h.advance(1600);
    assert.deepEqual(
      h.rejected.map((r) => r.item),
      ['a1', 'a2'],
    );
    assert.equal(h.buffer.stats.expired, 2);
  });

  it('fails a model whose engine failed to start, and drops a request whose client left', () => {
    const h = harness();
    h.buffer.hold('a', 'a1');
    h.buffer.hold('a', 'a2');
    h.buffer.hold('b', 'b1');
    assert.ok(h.buffer.remove('a', 'a1'));
    assert.equal(h.buffer.remove('a', 'a1'), false);
    assert.equal(h.buffer.fail('a', 'exited (code 2) before it was ready'), 1);
    assert.deepEqual(
      h.rejected.map((r) => [r.item, r.code]),
      [['a2', 'SY_ERR_COLD_START_FAILED']],
    );
    assert.equal(h.buffer.waiting('b'), 1);
    const s = h.buffer.stats;
    assert.deepEqual([s.held, s.abandoned, s.failed], [3, 1, 1]);
    // Every request held is accounted for once it left.
    h.buffer.releaseWhere(() => true);
    assert.equal(s.held, s.released + s.expired + s.failed + s.abandoned);
  });

  it("keeps each model's keep-alive from its latest request, default when absent", () => {
    const h = harness();
    const body = (o: unknown) => Buffer.from(JSON.stringify({ model: 'a', prompt: 'x', ...(o as object) }));
    assert.equal(h.buffer.keepAliveMs('a'), 300_000);
    h.buffer.noteRequest('a', body({ keep_alive: '2s' }));
    assert.equal(h.buffer.keepAliveMs('a'), 2000);
    assert.equal(h.buffer.keepAliveMs('b'), 300_000);
    assert.throws(() => h.buffer.noteRequest('a', body({ keep_alive: '2 weeks' })), /keep_alive/);
    assert.equal(h.buffer.keepAliveMs('a'), 2000, 'a bad value changes nothing');
    h.buffer.noteRequest('a', body({}));
    assert.equal(h.buffer.keepAliveMs('a'), 300_000);
  });
});

describe('keepAliveMsOf', () => {
  const of = (v: unknown) => keepAliveMsOf(Buffer.from(JSON.stringify({ keep_alive: v })), 3_600_000);
  it('reads seconds, durations and negatives as Ollama does, bounded by the max', () => {
    assert.equal(keepAliveMsOf(Buffer.from('{"model":"a"}'), 1000), undefined);
    assert.equal(of(null), undefined);
    assert.equal(of(30), 30_000);
    assert.equal(of(0), 0);
    assert.equal(of('500ms'), 500);
    assert.equal(of('90s'), 90_000);
    assert.equal(of('5m'), 300_000);
    assert.equal(of('1h'), 3_600_000);
    assert.equal(of('12'), 12_000);
    assert.equal(of(-1), 3_600_000);
    assert.equal(of('-1m'), 3_600_000);
  });
  it('refuses what is not a duration, or more than the max, naming the field', () => {
    for (const bad of ['2h', '5 minutes', true, { s: 1 }, 3601]) {
      assert.throws(
        () => of(bad),
        (e: SwitchyardError) => e.code === 'SY_ERR_INVALID_ARGUMENT' && e.details?.['param'] === 'keep_alive',
        String(bad),
      );
    }
  });
  it('names a number too large for a double as it was sent, not as null', () => {
    for (const [text, shown] of [
      ['{"keep_alive": 1e999}', '1e999'],
      ['{"keep_alive":-2E400,"model":"a"}', '-2E400'],
      ['{"keep_alive":5,"keep_alive":1e999}', '1e999'],
    ]) {
      assert.throws(
        () => keepAliveMsOf(Buffer.from(text as string), 3_600_000),
        (e: SwitchyardError) =>
          e.details?.['param'] === 'keep_alive' && e.message.startsWith(`invalid keep_alive ${shown}:`),
        text,
      );
    }
  });
});
