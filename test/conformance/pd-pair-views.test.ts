/**
 * Every side of every P/D pair policy over the two hosts' real views of one situation (the twin's
 * `SimInstance`s and the gateway's `LiveView`): each side is a routing policy and must decide the
 * same on both, as the catalogue's policies do (routing-views.test.ts).
 */
import { createPairPolicy, PD_PAIR_POLICIES } from '../../src/policies/disagg/pair.ts';
import { defaultPolicyContext } from '../../src/policies/routing/registry.ts';
import { runViewConformance } from './views.ts';

for (const name of PD_PAIR_POLICIES) {
  for (const side of ['prefill', 'decode'] as const) {
    runViewConformance(
      `pair ${name} (${side} side)`,
      () => createPairPolicy(name, {}, defaultPolicyContext())[side],
    );
  }
}
