/**
 * Every routing policy in the catalogue, over the two hosts' real views of one situation: the twin's
 * (`SimInstance` over engine cores) and the live gateway's (`LiveView` fed scraped vLLM pages). The
 * plain-object suite lives with the policies (src/policies/routing/conformance.ts); this one needs
 * both hosts, so it sits outside src/ where importing them breaks no layer rule.
 */
import { createRoutingPolicy, routingPolicyNames } from '../../src/policies/routing/registry.ts';
import { runViewConformance } from './views.ts';

for (const name of routingPolicyNames()) {
  runViewConformance(name, () => createRoutingPolicy(name));
}
