import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { HealthState } from './health.ts';
import { backoffMs, isConnectError, statusFailure } from './retry.ts';

describe('retry rules', () => {
  it('backs off exponentially with jitter in [0.5, 1) of the capped delay', () => {
    const config = { retryBackoffBaseMs: 10, retryBackoffMaxMs: 100 };
    const rng = new Rng(7);
    for (let attempt = 0; attempt < 8; attempt++) {
      const cap = Math.min(100, 10 * 2 ** attempt);
      for (let k = 0; k < 50; k++) {
        const d = backoffMs(attempt, config, rng);
        assert.ok(d >= cap * 0.5 && d < cap, `attempt ${attempt}: ${d} not in [${cap / 2}, ${cap})`);
      }
    }
    assert.equal(backoffMs(1000, config, rng) < 100, true);
  });

  it('is deterministic for a seed', () => {
    const config = { retryBackoffBaseMs: 20, retryBackoffMaxMs: 1000 };
    const a = new Rng(3);
    const b = new Rng(3);
    for (let i = 0; i < 10; i++) assert.equal(backoffMs(i, config, a), backoffMs(i, config, b));
  });

  it('classifies statuses', () => {
    assert.equal(statusFailure(200), undefined);
    assert.equal(statusFailure(400), undefined);
    assert.equal(statusFailure(404), undefined);
    assert.equal(statusFailure(429), 'status-429');
    assert.equal(statusFailure(500), 'status-5xx');
    assert.equal(statusFailure(503), 'status-5xx');
  });

  it('recognises connection errors, also as a cause', () => {
    assert.equal(isConnectError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), true);
    assert.equal(
      isConnectError(
        new Error('outer', { cause: Object.assign(new Error('in'), { code: 'UND_ERR_SOCKET' }) }),
      ),
      true,
    );
    assert.equal(isConnectError(new Error('plain')), false);
    assert.equal(isConnectError(Object.assign(new Error('x'), { code: 'UND_ERR_ABORTED' })), false);
    assert.equal(isConnectError(null), false);
  });
});

describe('HealthState', () => {
  it('ejects after failuresToEject consecutive failures and re-admits after successesToReadmit', () => {
    const h = new HealthState({ failuresToEject: 3, successesToReadmit: 2 });
    assert.equal(h.succeed(), false); // it has answered once: re-admission now needs the full run
    assert.equal(h.fail(), false);
    assert.equal(h.fail(), false);
    assert.equal(h.succeed(), false); // resets the failure run
    assert.equal(h.fail(), false);
    assert.equal(h.fail(), false);
    assert.equal(h.healthy, true);
    assert.equal(h.fail(), true);
    assert.equal(h.healthy, false);
    assert.equal(h.fail(), false); // already out: no second ejection
    assert.equal(h.succeed(), false);
    assert.equal(h.fail(), false); // a failure resets the success run
    assert.equal(h.succeed(), false);
    assert.equal(h.succeed(), true);
    assert.equal(h.healthy, true);
  });

  it('admits an instance that never answered at its first success', () => {
    const h = new HealthState({ failuresToEject: 2, successesToReadmit: 5 });
    h.fail();
    assert.equal(h.fail(), true);
    assert.equal(h.healthy, false);
    assert.equal(h.succeed(), true);
    assert.equal(h.healthy, true);
  });
});
