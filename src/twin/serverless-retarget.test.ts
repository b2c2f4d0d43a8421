import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverlessFromFlags } from '../cli/sim-serverless.ts';
import { startupTimeMs } from '../model/startup.ts';
import { runTwin } from './run.ts';
import type { ServerlessModel, ServerlessSettings } from './serverless-host.ts';
import { serverlessTwinSettings } from './serverless-test-support.ts';
import type { SimResult } from './simulator.ts';

/**
 * Six fine-tunes on two H100s, 20 simulated minutes: m0 asked once a second in bursts, the rest
 * rarer. At 254 s the hold rule stops the sleepers of GPU 0 (m0's among them) while m5's sleeper
 * still holds GPU 1 alone; m0's next request, at 259.6 s, has no sleeper of its own to wake.
 */
function run(
  retarget: boolean,
  bases: readonly string[],
  edit: (models: ServerlessModel[]) => ServerlessModel[] = (m) => m,
): { r: SimResult; log: string[]; models: ServerlessModel[] } {
  const workload = {
    kind: 'multi-model',
    models: 6,
    bases,
    modelRatesRps: [1, 0.5, 0.3, 0.2, 0.1, 0.05],
    onMeanS: 60,
    offMeanS: 90,
    durationS: 1200,
    input: { kind: 'fixed', tokens: 512 },
    output: { kind: 'fixed', tokens: 64 },
  };
  const built = serverlessFromFlags(
    { serverlessPolicy: 'switchyard', gpus: 2, keepAliveS: 30, gpu: 'h100' },
    workload,
  ) as ServerlessSettings;
  const models = edit([...built.models]);
  const serverless: ServerlessSettings = { ...built, models, sleep: { retarget } };
  const log: string[] = [];
  const r = runTwin(serverlessTwinSettings(workload, serverless), undefined, undefined, (e) =>
    log.push(`${e.atMs} ${e.placement}`),
  );
  return { r, log, models };
}

/** Each re-target in a decision log: the sleeper's or instance's model, the model it now serves, when. */
function retargetsIn(log: readonly string[]): { from: string; to: string; atMs: number }[] {
  const out: { from: string; to: string; atMs: number }[] = [];
  for (const line of log) {
    const m = /^(\S+) (?:zz-)?(m\d+)@\S+ re-targeted to (m\d+) /.exec(line);
    if (m !== null) out.push({ atMs: Number(m[1]), from: m[2] as string, to: m[3] as string });
  }
  return out;
}

/** The starts in a decision log: when, which model, whether re-targeted, ready in how many ms. */
function startsIn(
  log: readonly string[],
): { atMs: number; model: string; retargeted: boolean; readyMs: number }[] {
  const out: { atMs: number; model: string; retargeted: boolean; readyMs: number }[] = [];
  for (const line of log) {
    const m =
      /^(\S+) (m\d+)@\S+ start \(.*\): (re-targeted engine, )?weights from \w+, ready in ([\d.]+) s$/.exec(
        line,
      );
    if (m === null) continue;
    out.push({
      atMs: Number(m[1]),
      model: m[2] as string,
      retargeted: m[3] !== undefined,
      readyMs: Number(m[4]) * 1000,
    });
  }
  return out;
}

const SAME = ['llama-3.1-8b'];

test('re-target: a request whose model has no sleeper takes a same-base sleeper, ready in its weights time, not an engine start', () => {
  const on = run(true, SAME);
  const off = run(false, SAME);
  const startupMs = startupTimeMs({ gpu: 'h100', model: 'llama-3.1-8b', tp: 1 });
  const s = on.r.serverless;
  assert.ok(s !== undefined);
  assert.ok(s.retargets > 0, JSON.stringify(s));
  const retargeted = startsIn(on.log).filter((x) => x.retargeted);
  assert.equal(retargeted.length, s.retargets);
  // The 8B's weights from the node's DRAM over PCIe (~0.6 s) plus the wake's 0.3 s: far below a start.
  for (const x of retargeted) assert.ok(x.readyMs < 2_000, JSON.stringify(x));
  // Without the rule the same request, at the same moment, waits for a fresh engine start.
  const first = retargeted[0] as { atMs: number; model: string; readyMs: number };
  const then = startsIn(off.log).find((x) => x.atMs === first.atMs && x.model === first.model);
  assert.ok(then !== undefined && !then.retargeted, JSON.stringify({ first, then }));
  // ~44 s of engine init (process, compile, CUDA graphs) plus its weights from DRAM.
  assert.ok(
    then.readyMs > startupMs * 0.9 && then.readyMs > 20 * first.readyMs,
    `${then.readyMs} vs ${startupMs}`,
  );
  assert.equal(off.r.serverless?.retargets, 0);
  // Fewer requests wait for a start over the run, and the books still balance: a re-target is a
  // start (in coldStarts) and a read of weights (in loadsByTier).
  assert.ok(
    (s.coldRequests ?? 0) < (off.r.serverless?.coldRequests ?? 0),
    `${s.coldRequests} vs ${off.r.serverless?.coldRequests}`,
  );
  assert.equal(
    s.loadsByTier.remote + s.loadsByTier.dram + s.loadsByTier.ssd + s.sleep.wakes,
    (on.r.coldStarts ?? 0) + s.sleep.prestarts,
  );
  assert.equal(on.r.summary.completed + on.r.summary.rejected, on.r.summary.requests);
  assert.ok((on.r.gpuHours ?? 0) <= (2 * (on.r.billedUntilS ?? 0)) / 3600 + 1e-9);
});

test('re-target: never across bases, TPs or GPU types', () => {
  // Every model its own base: nothing to re-target, the run is the one without the rule.
  const distinct = ['llama-3.1-8b', 'qwen2.5-7b', 'llama-2-7b', 'opt-13b', 'codellama-34b', 'mixtral-8x7b'];
  const a = run(true, distinct);
  assert.equal(a.r.serverless?.retargets, 0);
  assert.deepEqual(a.r.serverless, run(false, distinct).r.serverless);
  // Mixed: only pairs of one base, TP and GPU type re-target.
  const checks: [string, readonly string[], (m: ServerlessModel[]) => ServerlessModel[]][] = [
    ['bases', ['llama-3.1-8b', 'qwen2.5-7b'], (m) => m],
    // m0, which took m5's sleeper with one base, now runs at TP 2; then m5 on another GPU type.
    ['tp', SAME, (m) => m.map((x) => (x.id === 'm0' ? { ...x, tp: 2, maxInstances: 1 } : x))],
    ['gpu', SAME, (m) => m.map((x) => (x.id === 'm5' ? { ...x, gpu: 'a100-80gb' } : x))],
  ];
  for (const [what, bases, edit] of checks) {
    const { r, log, models } = run(true, bases, edit);
    const spec = new Map(models.map((m) => [m.id as string, m]));
    const seen = retargetsIn(log);
    assert.equal(seen.length, r.serverless?.retargets, what);
    for (const x of seen) {
      const from = spec.get(x.from) as ServerlessModel;
      const to = spec.get(x.to) as ServerlessModel;
      assert.ok(
        from.base === to.base && from.tp === to.tp && from.gpu === to.gpu,
        `${what}: ${JSON.stringify(x)}`,
      );
    }
    // The pair the all-same run re-targets first (m5's sleeper to m0) never pairs across the mismatch.
    if (what === 'gpu') assert.ok(!seen.some((x) => x.from === 'm5'), `${what}: ${JSON.stringify(seen)}`);
    if (what === 'tp')
      assert.ok(!seen.some((x) => x.to === 'm0' || x.from === 'm0'), `${what}: ${JSON.stringify(seen)}`);
  }
});

test('re-target: the same seed gives the same figures', () => {
  const a = run(true, SAME).r;
  const b = run(true, SAME).r;
  assert.ok((a.serverless?.retargets ?? 0) > 0);
  assert.deepEqual(a.serverless, b.serverless);
  assert.deepEqual(a.summary.ttftMs, b.summary.ttftMs);
  assert.equal(a.gpuHours, b.gpuHours);
});
