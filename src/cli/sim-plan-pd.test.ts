/**
 * `sim --plan-pd` from its flags: `--tp` given fixes the TP degree planned (the one a disaggregated
 * run can then use), a budget below one TP group per side is refused naming `--gpus`, and the flags
 * of a disaggregated run, which the plan would ignore, are refused naming each.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerSimCommand } from './sim-command.ts';
import { type PlanPdFlags, planPdFromFlags } from './sim-plan-pd.ts';
import { fromCli } from './sim-test-support.ts';

const BASE: PlanPdFlags = {
  planPd: true,
  gpus: 8,
  gpu: 'h100',
  model: 'llama-3.1-8b',
  tp: 1,
  inputTokens: 4096,
  outputTokens: 256,
  sloTtftMs: 1000,
  sloTpotMs: 12,
};

describe('sim --plan-pd flags', () => {
  it('plans at --tp N only when --tp is given, and over every TP degree when it is not', () => {
    // This workload's free plan mixes TP degrees (decode at TP 2, docs/disaggregation.md).
    const free = planPdFromFlags(BASE);
    assert.notEqual(free.split.decode.tp, 1);
    const fixed = planPdFromFlags(BASE, fromCli(['tp']));
    assert.equal(fixed.split.prefill.tp, 1);
    assert.equal(fixed.split.decode.tp, 1);
    assert.equal(fixed.colocated?.tp, 1);
    const four = planPdFromFlags({ ...BASE, tp: 4 }, fromCli(['tp']));
    assert.deepEqual([four.split.prefill.tp, four.split.decode.tp], [4, 4]);
  });

  it('refuses --gpus below one prefill and one decode instance of --tp, naming --gpus', () => {
    for (const gpus of [2, 6])
      assert.throws(() => planPdFromFlags({ ...BASE, gpus, tp: 4 }, fromCli(['tp'])), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: new RegExp(`invalid gpus '${gpus}': expected at least 8 GPUs for TP 4`),
      });
  });

  it('plans the output the engine generates: the true length cut at --declared-max-tokens, as the run does', () => {
    // The twin generates min(true, cap) tokens (cap:4096 by default); a plan for the uncut 8000 would
    // size decode for twice the tokens any request of the run produces.
    const long = planPdFromFlags({ ...BASE, outputTokens: 8000 });
    const atCap = planPdFromFlags({ ...BASE, outputTokens: 4096 });
    assert.deepEqual(long.split, atCap.split);
    const uncut = planPdFromFlags({ ...BASE, outputTokens: 8000, declaredMaxTokens: 'none' });
    assert.ok(
      uncut.split.goodputRps < atCap.split.goodputRps,
      `${uncut.split.goodputRps} < ${atCap.split.goodputRps}`,
    );
    const cut = planPdFromFlags({ ...BASE, outputTokens: 8000, declaredMaxTokens: 'cap:256' });
    assert.deepEqual(cut.split, planPdFromFlags(BASE).split);
  });

  it("plans a trace's rows with the output the run generates (rows past the cap cut to it)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-plan-pd-'));
    try {
      const rows = (out: number) =>
        Array.from({ length: 20 }, (_, i) =>
          JSON.stringify({ timestamp: i * 100, input_length: 4096, output_length: i % 4 === 0 ? out : 256 }),
        );
      const huge = join(dir, 'huge.jsonl');
      writeFileSync(huge, `${rows(200_000).join('\n')}\n`);
      const capped = join(dir, 'capped.jsonl');
      writeFileSync(capped, `${rows(4096).join('\n')}\n`);
      const { inputTokens: _in, outputTokens: _out, ...trace } = BASE;
      assert.deepEqual(
        planPdFromFlags({ ...trace, trace: huge }).split,
        planPdFromFlags({ ...trace, trace: capped }).split,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const runFlags: [string, Partial<PlanPdFlags>][] = [
    ['prefill-instances', { prefillInstances: 3 }],
    ['decode-instances', { decodeInstances: 5 }],
    ['pd-policy', { pdPolicy: 'no-such-policy' }],
    ['pd-params', { pdParams: '{}' }],
    ['pd-conditional', { pdConditional: 'dynamo' }],
  ];
  for (const [flag, extra] of runFlags)
    it(`refuses --${flag}, which only a disaggregated run reads`, () => {
      assert.throws(() => planPdFromFlags({ ...BASE, ...extra }), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: new RegExp(`invalid ${flag} .*no --${flag} with --plan-pd`),
      });
    });

  it('refuses a --tp the model cannot split into as a run does, not as a capacity shortfall', () => {
    assert.throws(() => planPdFromFlags({ ...BASE, tp: 3 }, fromCli(['tp'])), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /invalid tp '3': expected a divisor of llama-3.1-8b's 32 attention heads/,
    });
  });
});

/** `sim ...args` through the real command, its stdout captured; rejects with the action's error. */
async function sim(args: readonly string[]): Promise<string> {
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  registerSimCommand(program);
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['sim', ...args], { from: 'user' });
  } finally {
    process.stdout.write = write;
  }
  return out;
}

describe('sim --plan-pd refuses the flags it does not read', () => {
  const PLAN = ['--plan-pd', '--gpus', '8', '--no-progress'];
  // Each was dropped without a word: the plan printed as if planned for it.
  const ignored: [string, string[]][] = [
    ['stages', ['--stages', '5:60,10:60']],
    ['cv', ['--cv', '3']],
    ['requests', ['--trace', 'sample:azure-conv', '--requests', '10']],
    ['rate-scale', ['--trace', 'sample:azure-conv', '--rate-scale', '4']],
    ['compare', ['--compare', 'random,round-robin']],
    ['goodput', ['--goodput']],
    ['autoscaler', ['--autoscaler', 'kpa']],
    ['kv-store', ['--kv-store', 'nvlink']],
    ['instances', ['--instances', '3']],
    ['policy', ['--policy', 'random']],
  ];
  for (const [flag, args] of ignored)
    it(`refuses --${flag}, naming it`, async () => {
      await assert.rejects(sim([...PLAN, ...args]), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: new RegExp(
          `invalid ${flag} '.*': expected no --${flag} with --plan-pd, which does not read it`,
        ),
      });
    });

  it('refuses --workload other than poisson, the arrivals it plans for, and takes poisson', async () => {
    await assert.rejects(sim([...PLAN, '--workload', 'constant']), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /invalid workload 'constant': expected poisson or no --workload with --plan-pd/,
    });
    const plain = await sim(PLAN);
    assert.match(plain, /^P\/D plan: /);
    assert.equal(await sim([...PLAN, '--workload', 'poisson', '--seed', '7', '--no-prefix-caching']), plain);
  });
});
