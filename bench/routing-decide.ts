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
import { scriptArgs } from '../scripts/script-args.ts';
import { CHAIN_ROOT, chainHash } from '../src/core/hash.ts';
import { makeRequest, type Request } from '../src/core/request.ts';
import { Rng } from '../src/core/rng.ts';
import { engineBlockHashes } from '../src/engine-core/prefix.ts';
import { testCluster } from '../src/policies/routing/conformance.ts';
import { createRoutingPolicy, routingPolicyNames } from '../src/policies/routing/registry.ts';

/** The budget one decision must stay well under (100,000-token prompt, 1,000 instances). */
const DECISION_BUDGET_US = 500;
/** A model the performance catalogue knows, for policies that predict time. */
const MODEL = 'llama-3.1-8b';

const USAGE = `Usage: node --import tsx bench/routing-decide.ts [options]

Microseconds per routing decision (decide) and per onRouted for every routing policy, on warm prefix
indexes, for a 100,000-token prompt at 16-token and 512-token blocks, against a naive precise
matcher measured in the same run; the target is p99 <= ${DECISION_BUDGET_US} µs.

Options:
  --instances N     instances with warm prefix indexes (default 1000)
  --decisions N     timed decisions per policy and block size (default 2000)
  --only P1,P2      these routing policies, comma-separated (default: all), e.g. --only least-request
  -h, --help        this text

Examples:
  node --import tsx bench/routing-decide.ts
  node --import tsx bench/routing-decide.ts --instances 200 --only prefix-affinity,kv-events`;

const { values } = scriptArgs('routing-decide', USAGE, () =>
  parseArgs({
    options: {
      instances: { type: 'string', default: '1000' },
      decisions: { type: 'string', default: '2000' },
      only: { type: 'string' },
    },
  }),
);
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
    maxTokens: 64,
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
/** The engine block size the simulated KV events use (vLLM's default). */
const ENGINE_BLOCK_SIZE = 16;
let naiveBaselineUs: number | undefined;

/**
 * The baseline: the straightforward precise matcher, one hash set per instance and a walk of the
 * prompt's blocks on every instance until the first miss (what a router that keeps a set of cached
 * blocks per worker does). Mean microseconds per decision on the same warm state.
 */
function naiveMatchUs(prompts: readonly Request[]): number {
  const sets: Set<number>[] = [];
  for (let i = 0; i < instances; i++) {
    const set = new Set<number>();
    for (let c = 0; c < 10; c++) for (const h of chain(16, 10_000, i * 10 + c + 1, 2000)) set.add(h);
    sets.push(set);
  }
  const rounds = Math.max(20, Math.floor(decisions / 50));
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    const hashes = (prompts[r % prompts.length] as Request).prefix.hashes;
    let best = 0;
    for (const set of sets) {
      let k = 0;
      while (k < hashes.length && set.has(hashes[k] as number)) k++;
      if (k > best) best = k;
    }
    sink += best;
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000 / rounds;
  if (sink < 0) console.log(sink);
  return us;
}

const table = new Table({
  // Plain text when piped (docs, CI logs): cli-table3 colours its borders by default.
  ...(process.stdout.isTTY === true ? {} : { style: { head: [], border: [] } }),
  head: ['policy', 'block', 'decide mean us', 'decide p99 us', 'onRouted mean us', 'verdict'],
});
for (const blockTokens of [16, 512]) {
  for (const name of only ?? routingPolicyNames()) {
    const policy = createRoutingPolicy(name);
    const rng = new Rng(1);
    // Warm: every instance holds the system prompt and ten conversations of its own. Policies that
    // learn from routing see the routes; precise ones see the engines' KV events for the same blocks.
    for (let i = 0; i < instances; i++) {
      for (let c = 0; c < 10; c++) {
        const family = i * 10 + c + 1;
        const warm = request(`w${family}`, blockTokens, 10_000, chain(blockTokens, 10_000, family, 2000));
        policy.onRouted?.(warm, `i${i}`, 0);
        if (policy.onKvEvent !== undefined) {
          const hashes = engineBlockHashes(warm.prefix, warm.inputTokens, ENGINE_BLOCK_SIZE);
          policy.onKvEvent(`i${i}`, { type: 'BlockStored', hashes, parentHash: undefined }, 0);
        }
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
    if (blockTokens === 16) naiveBaselineUs ??= naiveMatchUs(prompts);
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
if (naiveBaselineUs !== undefined) {
  console.log(
    `baseline, naive per-instance set walk (16-token blocks, same warm state): ${naiveBaselineUs.toFixed(1)} us per decision;` +
      ' ratio = baseline / policy mean in the table above. For scale, llm-d reports 2.5-3 ms added latency with precise prefix scoring on 100k-token prompts.',
  );
}
