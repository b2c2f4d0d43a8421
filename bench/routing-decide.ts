/**
 * Routing decision speed: microseconds per `decide` and per `onRouted` for every routing policy
 * in the catalogue, on 1,000 instances whose prefix indexes are warm, for a 100,000-token prompt
 * (16-token blocks: 6,250 hashes; and Mooncake's 512-token blocks: 196 hashes). Not a test; run
 * with `node --import tsx bench/routing-decide.ts [--instances N] [--decisions N] [--only a,b]`.
 *
 * Warm state: a 2,000-token system prompt cached on every instance (the case that makes a
 * block-by-block walk cost blocks x instances) plus ten private 8,000-token conversations per
 * instance. The prompt extends one of those conversations, so prefix-aware policies find a deep
 * match on one instance and a shallow one on all the others.
 */
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { CHAIN_ROOT, chainHash } from '../src/core/hash.ts';
import { makeRequest, type Request } from '../src/core/request.ts';
import { Rng } from '../src/core/rng.ts';
import { testCluster } from '../src/policies/routing/conformance.ts';
import { createRoutingPolicy, routingPolicyNames } from '../src/policies/routing/registry.ts';

/** The budget one decision must stay well under (100,000-token prompt, 1,000 instances). */
const DECISION_BUDGET_US = 500;
/** A model the performance catalogue knows, for policies that predict time. */
const MODEL = 'llama-3.1-8b';

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '1000' },
    decisions: { type: 'string', default: '2000' },
    only: { type: 'string' },
  },
});
const only = values.only?.split(',');
const instances = Number(values.instances);
const decisions = Number(values.decisions);

function chain(blockTokens: number, tokens: number, family: number, sharedTokens: number): number[] {
  const out: number[] = [];
  let h = CHAIN_ROOT;
  const blocks = Math.floor(tokens / blockTokens);
  const shared = Math.floor(sharedTokens / blockTokens);
  for (let i = 0; i < blocks; i++) {
    h = chainHash(h, i < shared ? i : family * 65_537 + i);
    out.push(h);
  }
  return out;
}

function request(id: string, blockTokens: number, tokens: number, hashes: number[]): Request {
  return makeRequest({
    id,
    inputTokens: tokens,
    outputTokens: 64,
    arrivalMs: 0,
    prefix: { blockTokens, hashes },
  });
}

const view = testCluster(instances, (i) => ({
  models: [MODEL],
  inFlight: i % 7,
  waiting: i % 3,
  kvUsage: (i % 10) / 10,
}));
const table = new Table({
  head: ['policy', 'block', 'decide mean us', 'decide p99 us', 'onRouted mean us', 'verdict'],
});
for (const blockTokens of [16, 512]) {
  for (const name of only ?? routingPolicyNames()) {
    const policy = createRoutingPolicy(name);
    const rng = new Rng(1);
    // Warm: every instance holds the system prompt and ten conversations of its own.
    for (let i = 0; i < instances; i++) {
      for (let c = 0; c < 10; c++) {
        const family = i * 10 + c + 1;
        policy.onRouted?.(
          request(`w${family}`, blockTokens, 10_000, chain(blockTokens, 10_000, family, 2000)),
          `i${i}`,
          0,
        );
      }
    }
    const prompts = Array.from({ length: 16 }, (_, k) => {
      const family = ((k * 7919) % (instances * 10)) + 1;
      return request(`p${k}`, blockTokens, 100_000, chain(blockTokens, 100_000, family, 2000));
    });
    for (let r = 0; r < 200; r++) policy.decide(view, prompts[r % 16] as Request, rng);
    const times = new Float64Array(decisions);
    for (let r = 0; r < decisions; r++) {
      const t0 = process.hrtime.bigint();
      policy.decide(view, prompts[r % 16] as Request, rng);
      times[r] = Number(process.hrtime.bigint() - t0) / 1000;
    }
    times.sort();
    const mean = times.reduce((a, b) => a + b, 0) / decisions;
    const p99 = times[Math.floor(decisions * 0.99)] as number;
    const routes = 200;
    const t1 = process.hrtime.bigint();
    for (let r = 0; r < routes; r++) policy.onRouted?.(prompts[r % 16] as Request, `i${r % instances}`, 0);
    const routedUs = Number(process.hrtime.bigint() - t1) / 1000 / routes;
    table.push([
      name,
      blockTokens,
      mean.toFixed(1),
      p99.toFixed(1),
      routedUs.toFixed(1),
      p99 < DECISION_BUDGET_US ? 'ok' : `over ${DECISION_BUDGET_US} us`,
    ]);
  }
}
console.log(`${instances} instances, 100,000-token prompts, ${decisions} decisions per row`);
console.log(table.toString());
