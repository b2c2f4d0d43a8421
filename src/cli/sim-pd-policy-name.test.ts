/**
 * `switchyard sim --pd-policy NAME` with a name that is neither a pair policy, a routing policy type
 * nor one of the config's named policies: the error names the flag and lists the pair policies
 * (load-aware, prefix-aware) as well as the routing types. Before, the routing registry's error
 * ("unknown routing policy 'x'") named neither, so `--pd-policy load-awre` sent the user to a list
 * without load-aware in it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PD_PAIR_POLICIES } from '../policies/disagg/pair.ts';
import { routingPolicyNames } from '../policies/routing/registry.ts';
import { resolveSettings } from './sim-command.ts';
import { pdFromFlags } from './sim-pd.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const cluster = { prefillInstances: 1, decodeInstances: 15 };

describe('sim --pd-policy names', () => {
  it('refuses an unknown name, naming --pd-policy and listing pair and routing policies', () => {
    assert.throws(
      () => pdFromFlags({ ...cluster, pdPolicy: 'load-awre' }, fromCli(['pd-policy'])),
      (e: Error) => {
        assert.match(e.message, /^unknown pd-policy 'load-awre'; valid: /);
        for (const name of [...PD_PAIR_POLICIES, ...routingPolicyNames()])
          assert.ok(e.message.includes(name), name);
        assert.equal((e as { code?: string }).code, 'SY_ERR_UNKNOWN_NAME');
        return true;
      },
    );
  });

  it('takes every pair policy, every routing policy type and a config-named policy', () => {
    for (const name of [...PD_PAIR_POLICIES, ...routingPolicyNames()])
      assert.equal(pdFromFlags({ ...cluster, pdPolicy: name })?.pdPolicy, name);
    const settings = resolveSettings(
      simFlags({ ...cluster, pdPolicy: 'sticky' }),
      { policies: { sticky: { type: 'prefix-affinity', params: {} } } } as Parameters<
        typeof resolveSettings
      >[1],
      fromCli(['prefill-instances', 'decode-instances', 'pd-policy']),
    );
    assert.equal(settings.pd?.pdPolicy, 'sticky');
    assert.throws(
      () =>
        resolveSettings(
          simFlags({ ...cluster, pdPolicy: 'sticky' }),
          {} as Parameters<typeof resolveSettings>[1],
          fromCli(['prefill-instances', 'decode-instances', 'pd-policy']),
        ),
      /unknown pd-policy 'sticky'/,
    );
  });
});
