/**
 * `sim --pd-params`: parsed and checked by the pair's own schema (the gateway's check of
 * `pd.params`), refused without a pair policy, and carried to the pair policy the twin builds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';
import { checkPairPolicy } from '../policies/disagg/pair.ts';
import { runTwin, type TwinSettings } from '../twin/run.ts';
import { registerSimCommand, resolveSettings } from './sim-command.ts';
import { type PdFlags, pdFromFlags } from './sim-pd.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const cluster = { prefillInstances: 2, decodeInstances: 2 };

describe('sim P/D flags a run would ignore', () => {
  it('refuses --link on a colocated run, naming the flag', () => {
    assert.throws(() => pdFromFlags({ link: 'tcp-100' }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message:
        /invalid link 'tcp-100': expected only with --prefill-instances and --decode-instances, or with --plan-pd/,
    });
  });

  it('refuses --pd-layerwise on a colocated run, and carries it into a disaggregated one', () => {
    assert.throws(() => pdFromFlags({ pdLayerwise: true }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /invalid pd-layerwise 'true': expected only with --prefill-instances and --decode-instances/,
    });
    assert.equal(pdFromFlags({ ...cluster, pdLayerwise: true })?.layerwise, true);
    // Without the flag the settings carry none, as before.
    assert.equal('layerwise' in (pdFromFlags(cluster) ?? {}), false);
  });

  it('refuses --instances given with P and D, and takes its default silently', () => {
    assert.throws(() => pdFromFlags({ ...cluster, instances: 4 }, fromCli(['instances'])), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /invalid instances '4': expected no --instances .* the cluster is their 2 \+ 2 instances/,
    });
    assert.equal(pdFromFlags({ ...cluster, instances: 4 })?.prefillInstances, 2);
  });
});

describe('sim --pd-params', () => {
  it('parses a JSON object for a pair policy and carries it in the P/D settings', () => {
    const pd = pdFromFlags({
      ...cluster,
      pdPolicy: 'mooncake',
      pdParams: '{"decodeAt":"arrival","tpotSloMs":50}',
    });
    assert.deepEqual(pd?.pdParams, { decodeAt: 'arrival', tpotSloMs: 50 });
    // Without the flag the settings carry none: the pair runs with its defaults, as before.
    assert.equal('pdParams' in (pdFromFlags({ ...cluster, pdPolicy: 'mooncake' }) ?? {}), false);
  });

  const refused: [string, PdFlags, RegExp][] = [
    [
      'an unknown key, named',
      { ...cluster, pdPolicy: 'mooncake', pdParams: '{"decodeat":"arrival"}' },
      /"decodeat"; valid: .*decodeAt/,
    ],
    [
      'a wrong value, named',
      { ...cluster, pdPolicy: 'mooncake', pdParams: '{"decodeAt":"soon"}' },
      /decodeAt: .*"arrival"\|"prefill-end"/,
    ],
    [
      'a wrong type, named',
      { ...cluster, pdPolicy: 'load-aware', pdParams: '{"kvUsageWeight":"1"}' },
      /kvUsageWeight: .*expected number/,
    ],
    [
      'a pair without parameters given one',
      { ...cluster, pdPolicy: 'round-robin', pdParams: '{"x":1}' },
      /"x"; valid: \(none\)/,
    ],
    [
      'text that is not JSON',
      { ...cluster, pdPolicy: 'mooncake', pdParams: '{decodeAt:1}' },
      /pd-params .*a JSON object/,
    ],
    [
      'JSON that is not an object',
      { ...cluster, pdPolicy: 'mooncake', pdParams: '["arrival"]' },
      /pd-params .*a JSON object/,
    ],
    [
      'a routing policy (decode side only)',
      { ...cluster, pdPolicy: 'least-kv', pdParams: '{}' },
      /only with --pd-policy naming a pair policy.*'least-kv'/,
    ],
    [
      'no --pd-policy (the default is a routing policy)',
      { ...cluster, pdParams: '{}' },
      /'least-request' \(the default\)/,
    ],
    [
      'a colocated run',
      { pdParams: '{}' },
      /pd-params .*only with --prefill-instances and --decode-instances/,
    ],
  ];
  for (const [what, flags, message] of refused)
    it(`refuses ${what} with SY_ERR_INVALID_ARGUMENT`, () => {
      assert.throws(() => pdFromFlags(flags), { code: 'SY_ERR_INVALID_ARGUMENT', message });
    });

  it('names the key exactly as the gateway does: one validator for both hosts', () => {
    const params = { decodeAt: 'soon' };
    let gateway = '';
    try {
      checkPairPolicy('mooncake', params);
    } catch (error) {
      gateway = (error as Error).message;
    }
    assert.match(gateway, /^P\/D pair policy 'mooncake': decodeAt: /);
    assert.throws(() => pdFromFlags({ ...cluster, pdPolicy: 'mooncake', pdParams: JSON.stringify(params) }), {
      message: `invalid --pd-params: ${gateway}`,
    });
  });
});

/**
 * A 2 prefill + 2 decode run of 200 3,000-token prompts at 40 req/s under `--pd-policy mooncake`
 * and a TPOT SLO of 8 ms, which the decode pool meets for some requests and not for others.
 */
function mooncakeSettings(pdParams?: string): TwinSettings {
  const extra = {
    workload: 'poisson',
    rate: 40,
    requests: 200,
    inputTokens: 3000,
    outputTokens: 100,
    sloTpotMs: 8,
    prefillInstances: 2,
    decodeInstances: 2,
    pdPolicy: 'mooncake',
    ...(pdParams !== undefined ? { pdParams } : {}),
  };
  return resolveSettings(simFlags(extra), {}, fromCli(Object.keys(extra)));
}

/** Requests the prefill instances (i0, i1: the first two) were given. */
function prefilled(settings: TwinSettings): { prefilled: number; completed: number; rejected: number } {
  const s = runTwin(settings).summary;
  const prefilledCount = s.perInstance.slice(0, 2).reduce((n, x) => n + x.requests, 0);
  return { prefilled: prefilledCount, completed: s.completed, rejected: s.rejected };
}

describe('--pd-params reaches the pair policy the twin runs', () => {
  it("mooncake's decodeAt: arrival moves the decode pick (and its refusals) before the prefill", () => {
    const late = prefilled(mooncakeSettings());
    const early = prefilled(mooncakeSettings('{"decodeAt":"arrival"}'));
    // By default the decode side decides at the prefill's end: every request was prefilled, refused
    // ones included.
    assert.ok(late.rejected > 0 && late.completed > 0, `default: ${JSON.stringify(late)}`);
    assert.equal(late.prefilled, 200);
    // At arrival a decode refusal comes first: the prefill pool sees only the accepted requests.
    assert.ok(early.rejected > 0 && early.completed > 0, `arrival: ${JSON.stringify(early)}`);
    assert.equal(early.completed + early.rejected, 200);
    assert.equal(early.prefilled, early.completed);
    // Naming the default changes nothing.
    assert.deepEqual(prefilled(mooncakeSettings('{"decodeAt":"prefill-end"}')), late);
  });

  it('runTwin checks P/D params itself: with the shared validator, and never on a routing policy', () => {
    const base = mooncakeSettings();
    const pd = base.pd as NonNullable<TwinSettings['pd']>;
    assert.throws(() => runTwin({ ...base, pd: { ...pd, pdParams: { decodeAt: 'soon' } } }), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: /P\/D pair policy 'mooncake': decodeAt: /,
    });
    assert.throws(() => runTwin({ ...base, pd: { ...pd, pdPolicy: 'least-kv', pdParams: {} } }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /pd-params .*a pair policy .*not 'least-kv'/,
    });
  });
});

describe('sim --kv-release-timeout-ms', () => {
  it('carries the timeout into the P/D settings the twin runs with', () => {
    const extra = { ...cluster, kvReleaseTimeoutMs: 5_000 };
    const settings = resolveSettings(simFlags(extra), {}, fromCli(Object.keys(extra)));
    assert.equal(settings.pd?.kvReleaseTimeoutMs, 5_000);
    // Unset, the field stays absent: the twin then uses the shared default.
    const plain = resolveSettings(simFlags(cluster), {}, fromCli(Object.keys(cluster)));
    assert.equal(plain.pd !== undefined && 'kvReleaseTimeoutMs' in plain.pd, false);
  });

  it('is refused on a colocated run, naming the flag', () => {
    assert.throws(() => pdFromFlags({ kvReleaseTimeoutMs: 5_000 }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message:
        /invalid kv-release-timeout-ms '5000': expected only with --prefill-instances and --decode-instances/,
    });
  });

  for (const bad of ['0', '-5', '1.5', 'soon'])
    it(`refuses '${bad}' on the command line: a positive integer of ms`, async () => {
      const program = new Command()
        .exitOverride()
        .configureOutput({ writeErr: () => {}, writeOut: () => {} });
      registerSimCommand(program);
      await assert.rejects(
        program.parseAsync(['sim', ...CLUSTER_ARGS, '--kv-release-timeout-ms', bad], { from: 'user' }),
        { message: new RegExp(`option '--kv-release-timeout-ms <ms>' argument '${bad}' is invalid`) },
      );
    });

  it('--help explains it, with the shared default', () => {
    const program = new Command();
    registerSimCommand(program);
    // Commander wraps help lines: compare with the whitespace collapsed.
    const help = (program.commands.find((c) => c.name() === 'sim')?.helpInformation() ?? '').replace(
      /\s+/g,
      ' ',
    );
    assert.match(
      help,
      /--kv-release-timeout-ms <ms> with a disaggregated run: a prefill instance holds the KV/,
    );
    assert.match(help, new RegExp(`a positive integer, default ${PD_KV_RELEASE_TIMEOUT_MS_DEFAULT}\\b`));
  });
});

const CLUSTER_ARGS = ['--prefill-instances', '2', '--decode-instances', '2'];
