/**
 * `bench --workload FILE` sends a twin request's tenant and priority the way the gateway reads them:
 * the tenant as that tenant's API key (Authorization: Bearer, `--tenant-key NAME=KEY`), the priority
 * as the body's `priority` (src/gateway/request-build.ts). The twin's defaults (tenant `default`,
 * priority 0) send nothing new.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { runBench } from './bench.ts';
import { type BenchFlags, parseTenantKeys, resolveBenchOptions } from './options.ts';
import { startFakeServer } from './test-server.ts';
import { WORKLOAD_BENCH_FLAGS, workloadFiles } from './workload-file-test-support.ts';

const { fileOf } = workloadFiles('switchyard-workload-tenant-');
const BASE = WORKLOAD_BENCH_FLAGS;
const spec = (extra: Record<string, unknown>): Record<string, unknown> => ({
  kind: 'poisson',
  rateRps: 50,
  maxRequests: 12,
  input: { kind: 'fixed', tokens: 40 },
  output: { kind: 'fixed', tokens: 3 },
  ...extra,
});

test("a workload's tenant goes as its API key and its priority as the body's priority", async () => {
  const server = await startFakeServer();
  try {
    const run = async (doc: Record<string, unknown>, extra: Partial<BenchFlags>) => {
      server.received.length = 0;
      const options = resolveBenchOptions({
        ...BASE,
        url: server.url,
        workload: fileOf(doc),
        rateScale: '100',
        ...extra,
      });
      const summary = await runBench(options);
      assert.deepEqual(summary.requests, { scheduled: 12, sent: 12, completed: 12, failed: 0 });
      return server.received;
    };
    const gold = await run(spec({ tenant: 'gold', priority: 3 }), {
      apiKey: 'run-key',
      tenantKey: 'gold=key-gold,silver=key-silver',
    });
    assert.equal(gold.length, 12);
    for (const got of gold) {
      assert.equal(got.authorization, 'Bearer key-gold', "the tenant's key, not the run's");
      assert.equal(got.body['priority'], 3);
    }
    // The twin's defaults: the run's key (the gateway's `default` tenant without one), no priority field.
    const plain = await run(spec({}), { apiKey: 'run-key' });
    for (const got of plain) {
      assert.equal(got.authorization, 'Bearer run-key');
      assert.equal('priority' in got.body, false);
    }
    // A negative priority (a lower online band) is sent as it is; the gateway clamps it by its rule.
    const low = await run(spec({ priority: -2 }), {});
    for (const got of low) {
      assert.equal(got.body['priority'], -2);
      assert.equal(got.authorization, undefined);
    }
  } finally {
    await server.close();
  }
});

test('a workload tenant without a key, and bad or misplaced --tenant-key values, are refused naming the flag', () => {
  const refused = (flags: Partial<BenchFlags>, message: RegExp): void =>
    assert.throws(
      () => resolveBenchOptions({ ...BASE, ...flags }),
      (e: unknown) =>
        e instanceof SwitchyardError &&
        e.code === 'SY_ERR_INVALID_ARGUMENT' &&
        e.details?.['param'] === '--tenant-key' &&
        message.test(e.message),
    );
  refused({ workload: fileOf(spec({ tenant: 'gold' })) }, /tenant 'gold'.*--tenant-key gold=KEY/);
  refused({ workload: fileOf(spec({ tenant: 'gold' })), tenantKey: 'silver=k' }, /tenant 'gold'/);
  refused({ workload: 'poisson', tenantKey: 'a=k' }, /only with --workload FILE/);
  for (const bad of ['a', '=k', 'a=', 'a=k,a=j', 'a=k,,b=j'])
    refused({ workload: fileOf(spec({})), tenantKey: bad }, /NAME=KEY/);
  assert.deepEqual(
    [...parseTenantKeys(' a = k1 ,b=k=2')],
    [
      ['a', 'k1'],
      ['b', 'k=2'],
    ],
  );
});
