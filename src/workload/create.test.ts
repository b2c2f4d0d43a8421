import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SwitchyardError } from '../core/errors.ts';
import { NO_PREFIX, type Request } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import type { WorkloadSpecInput } from './spec.ts';

const lengths = {
  input: { kind: 'uniform', lo: 100, hi: 2000 },
  output: { kind: 'fixed', tokens: 64 },
} as const;

function take(source: Iterable<Request>, n: number): Request[] {
  const out: Request[] = [];
  for (const r of source) {
    if (out.length >= n) break;
    out.push(r);
  }
  return out;
}

function assertSorted(rs: readonly Request[]): void {
  for (let i = 1; i < rs.length; i++)
    assert.ok((rs[i] as Request).arrivalMs >= (rs[i - 1] as Request).arrivalMs);
}

const specs: Record<string, WorkloadSpecInput> = {
  poisson: { kind: 'poisson', rateRps: 20, ...lengths, maxRequests: 2000 },
  gamma: { kind: 'gamma', rateRps: 20, cv: 3, ...lengths, maxRequests: 2000 },
  constant: { kind: 'constant', rateRps: 20, ...lengths, maxRequests: 2000 },
  'poisson stages': {
    kind: 'poisson',
    stages: [
      { rateRps: 5, durationS: 100 },
      { rateRps: 40, durationS: 100 },
    ],
    ...lengths,
    maxRequests: 2000,
  },
  'system-prompts': {
    kind: 'system-prompts',
    rateRps: 20,
    groups: 8,
    prefixTokens: 1000,
    suffix: { kind: 'uniform', lo: 0, hi: 500 },
    output: { kind: 'fixed', tokens: 10 },
    maxRequests: 2000,
  },
  sessions: {
    kind: 'sessions',
    sessionRateRps: 2,
    turns: { kind: 'uniform', lo: 1, hi: 6 },
    userTokens: { kind: 'uniform', lo: 10, hi: 300 },
    output: { kind: 'uniform', lo: 10, hi: 300 },
    maxRequests: 2000,
  },
  trace: { kind: 'trace', trace: 'sample:azure-conv', maxRequests: 2000 },
};

describe('createWorkload, every kind', () => {
  for (const [name, spec] of Object.entries(specs)) {
    it(`${name}: deterministic per seed, re-iterable, sorted, ids r<index>, stops at maxRequests`, () => {
      const a = [...createWorkload(spec, new Rng(42))];
      const b = [...createWorkload(spec, new Rng(42))];
      assert.equal(a.length, 2000);
      assert.deepEqual(a, b);
      const source = createWorkload(spec, new Rng(42));
      assert.deepEqual([...source], [...source]);
      assertSorted(a);
      a.forEach((r, i) => {
        assert.equal(r.id, `r${i}`);
      });
      if (name !== 'trace') {
        const c = take(createWorkload(spec, new Rng(43)), 50);
        assert.notDeepEqual(c, a.slice(0, 50));
      }
    });
  }

  it('stops at durationS', () => {
    const rs = [...createWorkload({ kind: 'poisson', rateRps: 100, ...lengths, durationS: 10 }, new Rng(1))];
    assert.ok(rs.length > 850 && rs.length < 1150, String(rs.length));
    assert.ok(rs.every((r) => r.arrivalMs < 10_000));
  });

  it('does not advance the caller rng', () => {
    const rng = new Rng(5);
    createWorkload(specs['poisson'] as WorkloadSpecInput, rng);
    assert.equal(rng.nextUint32(), new Rng(5).nextUint32());
  });

  it('carries model, tenant, priority and SLO', () => {
    const slo = { ttftMs: 200, tpotMs: 20 };
    const [r] = take(
      createWorkload(
        {
          ...(specs['poisson'] as object),
          model: 'llama',
          tenant: 'acme',
          priority: 3,
          slo,
        } as WorkloadSpecInput,
        new Rng(1),
      ),
      1,
    );
    assert.equal(r?.model, 'llama');
    assert.equal(r?.tenant, 'acme');
    assert.equal(r?.priority, 3);
    assert.deepEqual(r?.slo, slo);
  });
});

describe('Poisson workload', () => {
  it('has the requested mean rate over many requests', () => {
    const rs = [
      ...createWorkload({ kind: 'poisson', rateRps: 250, ...lengths, maxRequests: 100_000 }, new Rng(7)),
    ];
    const rate = rs.length / ((rs.at(-1)?.arrivalMs ?? 0) / 1000);
    assert.ok(Math.abs(rate - 250) / 250 < 0.02, `rate ${rate}`);
    assert.ok(rs.every((r) => r.prefix === NO_PREFIX && r.sessionId === undefined));
  });

  it('iterates 1,000,000 requests with bounded memory', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const source = createWorkload(
      {
        kind: 'poisson',
        rateRps: 1000,
        input: { kind: 'lognormal', mean: 1000, cv: 1 },
        output: { kind: 'uniform', lo: 1, hi: 500 },
        maxRequests: 1_000_000,
      },
      new Rng(1),
    );
    gc();
    const before = process.memoryUsage().heapUsed;
    let count = 0;
    let tokens = 0;
    let growthBytes = 0;
    for (const r of source) {
      count++;
      tokens += r.inputTokens;
      if (count === 500_000) {
        gc();
        growthBytes = process.memoryUsage().heapUsed - before;
      }
    }
    assert.equal(count, 1_000_000);
    assert.ok(tokens > 0);
    // Holding the requests would take >100 MB; a lazy stream holds a few.
    assert.ok(growthBytes < 8 * 1024 * 1024, `heap grew ${growthBytes} bytes`);
    // Speed per request is measured in bench/hot-paths.ts, not asserted here.
  });
});

describe('parseWorkloadSpec', () => {
  it('fills defaults', () => {
    const s = parseWorkloadSpec({ kind: 'trace', trace: 'sample:azure-conv' });
    assert.deepEqual(s, {
      kind: 'trace',
      trace: 'sample:azure-conv',
      rateScale: 1,
      startS: 0,
      model: 'default',
      tenant: 'default',
      priority: 0,
      declaredMaxTokens: { kind: 'cap', tokens: 4096 },
    });
  });

  it('declaredMaxTokens parses each form and names the accepted ones when wrong', () => {
    const d = (text: string) =>
      parseWorkloadSpec({ kind: 'trace', trace: 'x', declaredMaxTokens: text }).declaredMaxTokens;
    assert.deepEqual(d('exact'), { kind: 'exact' });
    assert.deepEqual(d('none'), { kind: 'none' });
    assert.deepEqual(d('cap:512'), { kind: 'cap', tokens: 512 });
    assert.deepEqual(d('factor:1.5'), { kind: 'factor', factor: 1.5 });
    for (const bad of ['cap:0', 'factor:0.5', 'max', 'cap:']) {
      assert.throws(
        () => d(bad),
        (err: unknown) =>
          err instanceof SwitchyardError &&
          err.code === 'SY_ERR_INVALID_ARGUMENT' &&
          /workload\.declaredMaxTokens: expected exact, cap:N/.test(err.message),
      );
    }
  });

  it('an unknown kind lists the valid kinds', () => {
    assert.throws(
      () => parseWorkloadSpec({ kind: 'bursty' }),
      (err: unknown) =>
        err instanceof SwitchyardError &&
        err.code === 'SY_ERR_UNKNOWN_NAME' &&
        /gamma, multi-model, poisson, rate-curve, servegen, sessions, sinusoid/.test(err.message),
    );
  });

  it('rejects unknown keys, bad values and endless synthetic workloads, naming the path', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...specs['poisson'], rate: 5 }, /workload: Unrecognized key: "rate"/],
      [{ ...specs['poisson'], rateRps: -1 }, /workload\.rateRps/],
      [
        { ...specs['poisson'], input: { kind: 'uniform', lo: 5, hi: 1 } },
        /workload\.input\.hi: lo must be <= hi/,
      ],
      [{ ...specs['poisson'], input: { kind: 'zipf' } }, /workload\.input\.kind/],
      [{ kind: 'poisson', rateRps: 1, ...lengths }, /maxRequests or durationS/],
      [{ kind: 'trace', trace: 'x', format: 'csv' }, /workload\.format/],
    ];
    for (const [spec, message] of cases) {
      assert.throws(
        () => parseWorkloadSpec(spec),
        (err: unknown) =>
          err instanceof SwitchyardError &&
          err.code === 'SY_ERR_INVALID_ARGUMENT' &&
          message.test(err.message),
        String(message),
      );
    }
  });

  it('missing trace files fail at creation, not mid-run', () => {
    assert.throws(() => createWorkload({ kind: 'trace', trace: '/nonexistent/t.csv' }, new Rng(1)), {
      code: 'SY_ERR_NOT_FOUND',
    });
    const empirical = { kind: 'empirical', trace: '/nonexistent/t.csv' } as const;
    assert.throws(
      () =>
        createWorkload(
          { kind: 'poisson', rateRps: 1, input: empirical, output: empirical, maxRequests: 1 },
          new Rng(1),
        ),
      { code: 'SY_ERR_NOT_FOUND' },
    );
    assert.throws(() => createWorkload({ kind: 'trace', trace: 'sample:nope' }, new Rng(1)), {
      code: 'SY_ERR_UNKNOWN_NAME',
    });
  });
});
