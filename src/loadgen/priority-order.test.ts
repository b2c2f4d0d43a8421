/**
 * `bench --workload FILE` sends a workload's priority (Switchyard's order: higher is more
 * important) in the order its target reads it: as written to a Switchyard gateway, negated to an
 * engine that serves lower first (the built-in engines, vLLM), as --engine-priority names, and as
 * written with a warning when the target cannot be told. The recording server stands in for the
 * target's body parsing only; which server is which comes from its /v1/models `owned_by`, as
 * real ones answer (test/e2e/bench-priority-order.test.ts checks the real gateway and sim engine).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { runBench } from './bench.ts';
import { type BenchFlags, resolveBenchOptions } from './options.ts';
import { sentPriority, specSetsPriority } from './priority-order.ts';
import { startFakeServer } from './test-server.ts';
import { WORKLOAD_BENCH_FLAGS, workloadFiles } from './workload-file-test-support.ts';

const { fileOf } = workloadFiles('switchyard-priority-order-');
const BASE = WORKLOAD_BENCH_FLAGS;
const spec = (priority: number): Record<string, unknown> => ({
  kind: 'poisson',
  rateRps: 50,
  maxRequests: 4,
  input: { kind: 'fixed', tokens: 40 },
  output: { kind: 'fixed', tokens: 3 },
  priority,
});

/** Runs spec(priority) against a recording server that says `owned_by: ownedBy`; the priorities it got and the lines said. */
async function run(
  ownedBy: string | undefined,
  priority: number,
  extra: Partial<BenchFlags> = {},
): Promise<{ sent: unknown[]; lines: string[] }> {
  const server = await startFakeServer(ownedBy === undefined ? {} : { ownedBy });
  try {
    const lines: string[] = [];
    const options = resolveBenchOptions({
      ...BASE,
      url: server.url,
      workload: fileOf(spec(priority)),
      rateScale: '100',
      ...extra,
    });
    const summary = await runBench(options, { onWarning: (line) => lines.push(line) });
    assert.equal(summary.requests.completed, 4);
    return { sent: server.received.map((r) => r.body['priority']), lines };
  } finally {
    await server.close();
  }
}

test("a built-in engine or vLLM gets the workload's priority in its own order (lower first), with a line saying so", async () => {
  for (const owner of ['switchyard-sim', 'switchyard-llama', 'vllm']) {
    const { sent, lines } = await run(owner, 5);
    assert.deepEqual(sent, [-5, -5, -5, -5], owner);
    assert.equal(lines.length, 1, owner);
    assert.match(lines[0] as string, new RegExp(`is an engine \\(GET /v1/models: owned_by '${owner}'\\)`));
    assert.match(lines[0] as string, /priority p is sent as -p/);
    assert.equal(/scheduling-policy priority/.test(lines[0] as string), owner === 'vllm');
  }
  // A priority-0 workload sends no field and says nothing.
  assert.deepEqual(await run('switchyard-sim', 0), {
    sent: [undefined, undefined, undefined, undefined],
    lines: [],
  });
});

test('a Switchyard gateway gets it as written, without a line', async () => {
  assert.deepEqual(await run('switchyard', 5), { sent: [5, 5, 5, 5], lines: [] });
  assert.deepEqual(await run('switchyard', -2), { sent: [-2, -2, -2, -2], lines: [] });
});

test('a target that cannot be told gets it as written, with a warning naming --engine-priority', async () => {
  for (const owner of [undefined, 'sglang']) {
    const { sent, lines } = await run(owner, 5);
    assert.deepEqual(sent, [5, 5, 5, 5]);
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, /cannot tell how .* orders priorities.*--engine-priority/);
  }
});

test('--engine-priority names the order: it wins over owned_by, and says nothing', async () => {
  assert.deepEqual(await run('switchyard', 5, { enginePriority: 'lower-first' }), {
    sent: [-5, -5, -5, -5],
    lines: [],
  });
  assert.deepEqual(await run('vllm', 5, { enginePriority: 'gateway' }), { sent: [5, 5, 5, 5], lines: [] });
  // SGLang's order: higher first, and 0 sent (a request without priority is ranked last there).
  assert.deepEqual((await run(undefined, 0, { enginePriority: 'higher-first' })).sent, [0, 0, 0, 0]);
  assert.deepEqual((await run(undefined, 5, { enginePriority: 'higher-first' })).sent, [5, 5, 5, 5]);
  assert.deepEqual((await run('vllm', 5, { enginePriority: 'none' })).sent, [
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
});

test('--engine-priority: an unknown order or a run without --workload FILE is refused naming the flag', () => {
  const refused = (flags: Partial<BenchFlags>, code: string): void =>
    assert.throws(
      () => resolveBenchOptions({ ...BASE, ...flags }),
      (e: unknown) => e instanceof SwitchyardError && e.code === code && /engine-priority/.test(e.message),
    );
  refused({ workload: fileOf(spec(1)), enginePriority: 'lowest' }, 'SY_ERR_UNKNOWN_NAME');
  refused({ workload: 'poisson', enginePriority: 'lower-first' }, 'SY_ERR_INVALID_ARGUMENT');
});

test('sentPriority and specSetsPriority', () => {
  assert.equal(sentPriority('gateway', undefined), undefined);
  assert.equal(sentPriority('lower-first', 3), -3);
  assert.equal(sentPriority('lower-first', undefined), undefined);
  assert.equal(sentPriority('none', 3), undefined);
  assert.equal(specSetsPriority({ kind: 'poisson', priority: 0 }), false);
  assert.equal(
    specSetsPriority({ kind: 'mix', parts: [{ spec: { priority: 0 } }, { spec: { priority: -1 } }] }),
    true,
  );
});
