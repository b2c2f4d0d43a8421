/**
 * `bench --workload FILE`: the plan built from a workload file is the twin's request stream for the
 * same seed, request for request (arrival times, lengths, prefix chains, models, sessions), for every
 * workload kind; prompts write a chain as text so shared chains share text and the gateway's own text
 * chain shares exactly the blocks the twin's chain shares.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile, resolveSettings } from '../cli/sim-command.ts';
import { fromCli, simFlags } from '../cli/sim-test-support.ts';
import { SwitchyardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { textPrefixChain } from '../core/text-prefix.ts';
import { runTwin } from '../twin/run.ts';
import { createWorkload } from '../workload/create.ts';
import type { WorkloadSpecInput } from '../workload/spec.ts';
import type { TwinRequest } from '../workload/types.ts';
import { buildPlan, OWN_MODELS, runBench } from './bench.ts';
import { type BenchFlags, resolveBenchOptions } from './options.ts';
import { PLAN_COUNT_MAX } from './plan.ts';
import { formatBenchReport } from './report.ts';
import { startFakeServer } from './test-server.ts';
import type { PlannedRequest } from './types.ts';
import { WORKLOAD_BENCH_FLAGS, workloadFiles } from './workload-file-test-support.ts';

const { dir, fileOf } = workloadFiles('switchyard-workload-plan-');
const BASE = WORKLOAD_BENCH_FLAGS;

function planOf(path: string, extra: Partial<BenchFlags> = {}): PlannedRequest[] {
  const options = resolveBenchOptions({ ...BASE, workload: path, ...extra });
  return [...buildPlan(options).plan.requests];
}

/** The twin's stream, drawn as runTwinSpec draws it. */
function twinOf(spec: WorkloadSpecInput, seed: number): TwinRequest[] {
  return [...createWorkload(spec, new Rng(seed).fork('workload'))];
}

/** Checks the plan against the twin's stream, request for request. */
function assertSame(plan: readonly PlannedRequest[], twin: readonly TwinRequest[], n: number): void {
  assert.ok(twin.length >= n, `the twin's stream has ${twin.length} requests, fewer than ${n}`);
  assert.equal(plan.length, twin.length);
  for (let i = 0; i < n; i++) {
    const p = plan[i] as PlannedRequest;
    const r = twin[i] as TwinRequest;
    const where = `request ${i}`;
    assert.equal(p.index, i, where);
    assert.equal(`r${p.index}`, r.id, where);
    assert.equal(p.atMs, r.arrivalMs, where);
    assert.equal(p.inputTokens, Math.max(1, r.inputTokens), where);
    assert.equal(p.outputTokens, Math.max(1, r.trueOutputTokens), where);
    assert.deepEqual(p.hashIds, r.prefix.hashes, where);
    if (r.prefix.hashes.length > 0) assert.equal(p.blockTokens, r.prefix.blockTokens, where);
    assert.equal(p.model, r.model === 'default' ? undefined : r.model, where);
    assert.equal(p.sessionId, r.sessionId, where);
  }
}

const LENGTHS = {
  input: { kind: 'lognormal', mean: 600, cv: 0.6, max: 4000 },
  output: { kind: 'uniform', lo: 1, hi: 200 },
} as const;

/** One spec per workload kind the twin takes, small enough to walk whole. */
const SPECS: Record<string, WorkloadSpecInput> = {
  poisson: { kind: 'poisson', rateRps: 20, maxRequests: 300, ...LENGTHS },
  gamma: { kind: 'gamma', rateRps: 20, cv: 3, durationS: 15, ...LENGTHS },
  constant: {
    kind: 'constant',
    stages: [
      { rateRps: 5, durationS: 10 },
      { rateRps: 30, durationS: 10 },
    ],
    ...LENGTHS,
  },
  'system-prompts': {
    kind: 'system-prompts',
    rateRps: 30,
    groups: 6,
    prefixTokens: 520,
    suffix: { kind: 'uniform', lo: 10, hi: 300 },
    output: { kind: 'fixed', tokens: 32 },
    maxRequests: 300,
  },
  sessions: {
    kind: 'sessions',
    sessionRateRps: 3,
    turns: { kind: 'uniform', lo: 2, hi: 6 },
    userTokens: { kind: 'uniform', lo: 20, hi: 200 },
    output: { kind: 'uniform', lo: 10, hi: 120 },
    thinkTimeMeanS: 4,
    systemPromptTokens: 256,
    maxRequests: 300,
  },
  trace: { kind: 'trace', trace: 'sample:mooncake-conversation', rateScale: 2, maxRequests: 300 },
  'trace (azure)': { kind: 'trace', trace: 'sample:azure-conv', maxRequests: 300 },
  sinusoid: { kind: 'sinusoid', rateMinRps: 1, rateMaxRps: 30, periodS: 20, durationS: 40, ...LENGTHS },
  'rate-curve': {
    kind: 'rate-curve',
    points: [
      { timeS: 0, rateRps: 2 },
      { timeS: 10, rateRps: 40 },
      { timeS: 20, rateRps: 5 },
    ],
    ...LENGTHS,
  },
  bursts: { kind: 'bursts', baseRateRps: 2, burstRateRps: 50, burstS: 2, gapS: 5, durationS: 30, ...LENGTHS },
  servegen: {
    kind: 'servegen',
    file: 'sample:servegen-m-small-day2',
    rateScale: 0.02,
    startH: 18,
    durationS: 60,
    ...LENGTHS,
  },
  'multi-model': {
    kind: 'multi-model',
    models: 12,
    rateRps: 30,
    onMeanS: 20,
    offMeanS: 5,
    durationS: 30,
    ...LENGTHS,
  },
  'multi-model (servegen)': {
    kind: 'multi-model',
    models: 4,
    rateRps: 20,
    source: 'servegen',
    startH: 18,
    durationS: 30,
    ...LENGTHS,
  },
};

for (const [name, spec] of Object.entries(SPECS)) {
  test(`${name}: the bench plan is the twin's request stream for the same seed`, () => {
    for (const seed of [1, 42]) {
      const plan = planOf(fileOf(spec), { seed: String(seed) });
      assertSame(plan, twinOf(spec, seed), Math.min(plan.length, 200));
      assert.ok(plan.length >= 50, `${plan.length} requests`);
    }
  });
}

test('kinds with models, prefixes and sessions carry them through (the comparisons above are not vacuous)', () => {
  const mm = planOf(fileOf(SPECS['multi-model']));
  assert.ok(new Set(mm.map((p) => p.model)).size >= 5, 'multi-model: several served ids');
  assert.ok(mm.every((p) => p.model !== undefined && /^m\d\d$/.test(p.model)));
  const sp = planOf(fileOf(SPECS['system-prompts']));
  assert.ok(sp.every((p) => p.hashIds.length >= 32 && p.blockTokens === 16));
  const firsts = new Set(sp.map((p) => p.hashIds[0]));
  assert.ok(firsts.size >= 3 && firsts.size <= 6, `${firsts.size} groups`);
  const sessions = planOf(fileOf(SPECS.sessions));
  const ids = new Set(sessions.map((p) => p.sessionId));
  assert.ok(ids.size >= 20 && ids.size < sessions.length, `${ids.size} sessions`);
  const poisson = planOf(fileOf(SPECS.poisson));
  assert.ok(
    poisson.every((p) => p.model === undefined && p.hashIds.length === 0 && p.sessionId === undefined),
  );
});

test('--rate-scale, --requests and --duration cut and speed up the plan, as for a trace', () => {
  const spec = SPECS.sinusoid as WorkloadSpecInput;
  const path = fileOf(spec);
  const twin = twinOf(spec, 1);
  const fast = planOf(path, { rateScale: '4' });
  assert.equal(fast.length, twin.length);
  for (const [i, p] of fast.entries()) assert.equal(p.atMs, (twin[i] as TwinRequest).arrivalMs / 4);
  assert.equal(planOf(path, { requests: '25' }).length, 25);
  const cut = planOf(path, { rateScale: '2', duration: '5' });
  assert.ok(cut.length > 0 && cut.every((p) => p.atMs < 5000));
  assert.ok((twin[cut.length] as TwinRequest).arrivalMs / 2 >= 5000, 'stops at the first arrival past 5 s');
});

test('the plan is lazy and re-iterable; its total is counted without keeping the requests', () => {
  // A 24-hour ServeGen day at full scale: far too many to hold, counted lazily.
  const day = resolveBenchOptions({
    ...BASE,
    workload: fileOf({
      kind: 'servegen',
      file: 'sample:servegen-m-small-day2',
      durationS: 86_400,
      input: { kind: 'fixed', tokens: 100 },
      output: { kind: 'fixed', tokens: 10 },
    }),
    requests: '1000',
  });
  const { plan } = buildPlan(day);
  assert.equal(plan.total, 1000);
  const first = plan.requests[Symbol.iterator]().next();
  assert.equal(first.done, false);
  const a = [...plan.requests].slice(0, 5);
  const b = [...plan.requests].slice(0, 5);
  assert.deepEqual(a, b);
  assert.ok(PLAN_COUNT_MAX >= 1_000_000);
});

test('a sim config with a workload: block is accepted; its seed is the run seed unless --seed', () => {
  const spec = SPECS.sessions as WorkloadSpecInput;
  const config = fileOf({ seed: 9, policy: 'least-request', cluster: { instances: 2 }, workload: spec });
  const options = resolveBenchOptions({ ...BASE, workload: config });
  assert.equal(options.seed, 9);
  assert.equal(options.source.kind === 'workload' && options.source.file.form, 'sim-config');
  assertSame(planOf(config), twinOf(spec, 9), 200);
  assertSame(planOf(config, { seed: '3' }), twinOf(spec, 3), 200);
  // JSON works too (YAML's subset).
  assertSame(planOf(fileOf(spec, 'json')), twinOf(spec, 1), 200);
});

test("the plan's arrivals are the ones `switchyard sim --config` routes, decision for decision", () => {
  for (const spec of [SPECS.sinusoid, SPECS.sessions] as WorkloadSpecInput[]) {
    const config = fileOf({ seed: 5, cluster: { instances: 2 }, workload: spec });
    const settings = resolveSettings(simFlags({ seed: 5 }), loadConfigFile(config), fromCli([]));
    const decided: { id: string; atMs: number }[] = [];
    runTwin(settings, undefined, (e) => decided.push({ id: e.requestId, atMs: e.atMs }));
    const plan = planOf(config);
    assert.equal(decided.length, plan.length);
    const byId = new Map(decided.map((d) => [d.id, d.atMs]));
    for (const p of plan) assert.equal(byId.get(`r${p.index}`), p.atMs, `r${p.index}`);
  }
});

/** Characters two strings share from their start. */
function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Leading entries two lists share. */
function commonLead(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

test('prompts: the same chain gives the same text, different chains differ, as the gateway hashes them', () => {
  for (const name of ['system-prompts', 'sessions']) {
    const path = fileOf(SPECS[name]);
    const options = resolveBenchOptions({ ...BASE, workload: path });
    const { plan, prompts } = buildPlan(options);
    const items = [...plan.requests].slice(0, 120);
    const texts = items.map((p) => prompts.promptFor(p));
    let shared = 0;
    let apart = 0;
    for (let i = 0; i < items.length; i++) {
      const a = items[i] as PlannedRequest;
      assert.equal((texts[i] as string).length, a.inputTokens * 4, 'four characters per token');
      for (let j = i + 1; j < items.length; j++) {
        const b = items[j] as PlannedRequest;
        const blocks = commonLead(a.hashIds, b.hashIds);
        const chars = commonPrefix(texts[i] as string, texts[j] as string);
        // The shared blocks are shared text, and the first block apart differs.
        assert.ok(chars >= blocks * 64, `${name} ${i}/${j}: ${chars} chars for ${blocks} blocks`);
        if (blocks < a.hashIds.length && blocks < b.hashIds.length) assert.ok(chars < (blocks + 1) * 64);
        // The gateway's text chain (64-character blocks) shares exactly the twin's blocks.
        const live = commonLead(
          textPrefixChain(texts[i] as string).hashes,
          textPrefixChain(texts[j] as string).hashes,
        );
        assert.equal(live, blocks, `${name} ${i}/${j}: live ${live} blocks, twin ${blocks}`);
        // Sessions all share the system prompt's 16 blocks; a turn shares more with its own session.
        if (blocks > (name === 'sessions' ? 16 : 0)) shared++;
        else apart++;
      }
    }
    assert.ok(shared > 100 && apart > 100, `${name}: ${shared} pairs share a prefix, ${apart} do not`);
  }
});

test('bad workload files fail naming the key (the workload schema), the file and the flag', () => {
  const fails = (flags: Partial<BenchFlags>, code: string, pattern: RegExp): void => {
    assert.throws(
      () => resolveBenchOptions({ ...BASE, ...flags }),
      (e: unknown) => {
        assert.ok(e instanceof SwitchyardError, String(e));
        assert.equal(e.code, code);
        assert.match(e.message, pattern);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      },
    );
  };
  const sinusoid = SPECS.sinusoid as Record<string, unknown>;
  fails(
    { workload: fileOf({ ...sinusoid, rateMaxRps: -1 }) },
    'SY_ERR_INVALID_ARGUMENT',
    /^--workload '.*\.yaml': invalid workload spec: workload\.rateMaxRps: /,
  );
  fails(
    { workload: fileOf({ ...sinusoid, periodSeconds: 3 }) },
    'SY_ERR_INVALID_ARGUMENT',
    /workload: Unrecognized key.*periodSeconds/,
  );
  fails(
    { workload: fileOf({ ...sinusoid, kind: 'sine' }) },
    'SY_ERR_UNKNOWN_NAME',
    /unknown workload kind 'sine'/,
  );
  fails(
    { workload: fileOf({ seed: 1, workload: { ...sinusoid, durationS: undefined } }) },
    'SY_ERR_INVALID_ARGUMENT',
    /workload\.maxRequests: set maxRequests or durationS/,
  );
  fails({ workload: fileOf({ seed: 'x', workload: sinusoid }) }, 'SY_ERR_INVALID_CONFIG', /seed/);
  fails({ workload: fileOf({ rate: 3 }) }, 'SY_ERR_INVALID_CONFIG', /expected the twin's workload block/);
  fails(
    { workload: join(dir, 'missing.yaml') },
    'SY_ERR_NOT_FOUND',
    /--workload takes poisson, gamma, constant or a file/,
  );
  fails(
    { workload: 'sinusoid' },
    'SY_ERR_UNKNOWN_NAME',
    /unknown --workload 'sinusoid'; valid: poisson, gamma, constant, or a workload file/,
  );
  fails(
    { workload: fileOf(sinusoid), rate: '5' },
    'SY_ERR_INVALID_ARGUMENT',
    /invalid --rate '5': not used with --workload FILE/,
  );
  fails({ workload: fileOf(sinusoid), inputTokens: '5' }, 'SY_ERR_INVALID_ARGUMENT', /--input-tokens/);
  fails(
    { workload: fileOf(SPECS['multi-model']), model: 'x' },
    'SY_ERR_INVALID_ARGUMENT',
    /invalid --model 'x': a multi-model workload names its models \(m00\.\.m11\)/,
  );
  // Servegen and trace files are read when the plan is built, before anything is sent.
  const missingTrace = resolveBenchOptions({
    ...BASE,
    workload: fileOf({ kind: 'trace', trace: join(dir, 'none.jsonl') }),
  });
  assert.throws(
    () => buildPlan(missingTrace),
    (e: unknown) => e instanceof SwitchyardError,
  );
});

test("sent: each body asks for the twin's model, max_tokens and session, with the plan's prompt", async () => {
  const server = await startFakeServer();
  try {
    for (const name of ['sessions', 'multi-model']) {
      server.received.length = 0;
      const spec = SPECS[name] as WorkloadSpecInput;
      const options = resolveBenchOptions({
        ...BASE,
        url: server.url,
        workload: fileOf(spec),
        rateScale: '1000',
        requests: '80',
      });
      const { plan, prompts } = buildPlan(options);
      const expected = new Map<string, PlannedRequest>();
      for (const p of plan.requests) expected.set(prompts.promptFor(p), p);
      assert.equal(expected.size, 80, 'every prompt is its own');
      const summary = await runBench(options);
      assert.deepEqual(summary.requests, { scheduled: 80, sent: 80, completed: 80, failed: 0 });
      assert.equal(server.received.length, 80);
      const twin = twinOf(spec, 1).slice(0, 80);
      for (const got of server.received) {
        const p = expected.get(got.body['prompt'] as string);
        assert.ok(p !== undefined, 'a prompt of the plan');
        const r = twin[p.index] as TwinRequest;
        assert.equal(got.body['model'], r.model === 'default' ? 'fake-model' : r.model);
        assert.equal(got.body['max_tokens'], Math.max(1, r.trueOutputTokens));
        assert.equal(got.body['ignore_eos'], true);
        assert.equal(got.sessionId, r.sessionId);
      }
      if (name === 'multi-model') {
        assert.equal(summary.model, OWN_MODELS);
        const perModel: Record<string, { requests: number; completed: number; failed: number }> = {};
        for (const r of twin) {
          const c = perModel[r.model] ?? { requests: 0, completed: 0, failed: 0 };
          perModel[r.model] = { requests: c.requests + 1, completed: c.completed + 1, failed: 0 };
        }
        assert.deepEqual(summary.models, perModel);
        assert.ok(Object.keys(perModel).length >= 4);
        assert.match(formatBenchReport(summary), /^models m\d\d \d+ · /m);
      } else {
        assert.equal(summary.model, 'fake-model');
        assert.equal(summary.models, undefined);
        assert.ok(new Set(server.received.map((r) => r.sessionId)).size >= 10);
      }
      assert.match(
        formatBenchReport(summary),
        new RegExp(`workload ${name} from .*w\\d+\\.yaml at x1000 · `),
      );
    }
  } finally {
    await server.close();
  }
});
