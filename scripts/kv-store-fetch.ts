/**
 * Fetching a prefix held elsewhere (engine.kvStore, src/twin/kv-store.ts) on the Mooncake
 * conversation sample: 8 H100s of Llama-3.1-8B, three policies, no store and a peer store over each
 * link, through the `switchyard sim` command line. Prints the table in docs/disaggregation.md
 * ("Fetching a prefix held elsewhere").
 *
 *   node --import tsx scripts/kv-store-fetch.ts [--rate-scale 2] [--links roce-200,tcp-100]
 *
 * "No store" runs with a store whose minTokens exceeds every prompt: it never fetches, runs exactly
 * as no store (src/twin/kv-store.test.ts checks it) and counts the prompt tokens computed.
 *
 * P/D (Mooncake's own design: prefill instances fetch from each other), one run per pair policy:
 *
 *   node --import tsx scripts/kv-store-fetch.ts --pd 4,4 [--policies mooncake,load-aware,prefix-aware]
 *
 * adds the both-SLOs-met share under TTFT 3 s / TPOT 20 ms (over every request, refusals as misses).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { scriptArgs } from './script-args.ts';

const USAGE = `Usage: node --import tsx scripts/kv-store-fetch.ts [options]

Fetching a prefix held elsewhere on the Mooncake conversation sample (8 H100s of Llama-3.1-8B):
no store against a peer store over each link, through switchyard sim. Prints the tables in
docs/disaggregation.md ("Fetching a prefix held elsewhere").

Options:
  --rate-scale X   the trace's arrivals sped up X times (default 1), e.g. --rate-scale 2
  --links LIST     the store's links, comma-separated (default roce-200,tcp-100)
  --policies LIST  routing policies, or with --pd pair policies, comma-separated (default
                   mooncake,least-request,kv-cost; with --pd mooncake,load-aware,prefix-aware)
  --pd P,D         a P/D cluster of P prefill and D decode instances, one run per pair policy,
                   adding the share meeting TTFT 3 s and TPOT 20 ms (default: none), e.g. --pd 4,4
  -h, --help       this text

Examples:
  node --import tsx scripts/kv-store-fetch.ts --rate-scale 2
  node --import tsx scripts/kv-store-fetch.ts --pd 4,4 --links roce-200`;

const { values: args } = scriptArgs('kv-store-fetch', USAGE, () =>
  parseArgs({
    options: {
      'rate-scale': { type: 'string', default: '1' },
      links: { type: 'string', default: 'roce-200,tcp-100' },
      policies: { type: 'string' },
      /** `P,D`: a P/D cluster of P prefill and D decode instances, the policies being pair policies. */
      pd: { type: 'string' },
    },
  }),
);
const PD = args.pd?.split(',').map(Number);
const POLICIES = (
  args.policies ?? (PD === undefined ? 'mooncake,least-request,kv-cost' : 'mooncake,load-aware,prefix-aware')
).split(',');
const dir = mkdtempSync(join(tmpdir(), 'kv-store-fetch-'));

interface Row {
  ttftMs: { p50: number; p99: number };
  rejected: number;
  completed: number;
  sloAttainment?: { both: number };
  kvStore: { fetches: number; fetchMsMean: number; promptTokens: number; promptTokensComputed: number };
}

/** One `sim --compare` run; `store` a link name, or undefined for no store. */
function run(store: string | undefined): Record<string, Row> {
  const config = join(dir, `${store ?? 'none'}.yaml`);
  // A link's store fetches from minTokens = one block (the default); "none" never fetches.
  const kvStore =
    store === undefined
      ? '{ kind: peer, link: roce-200, minTokens: 10000000 }'
      : `{ kind: peer, link: ${store} }`;
  writeFileSync(config, `engine:\n  kvStore: ${kvStore}\n`);
  const common = ['sim', '--trace', 'sample:mooncake-conversation', '--rate-scale', args['rate-scale']];
  if (PD === undefined) {
    const json = join(dir, `${store ?? 'none'}.json`);
    sim([...common, '--instances', '8', '--compare', POLICIES.join(','), '--config', config, '--json', json]);
    return JSON.parse(readFileSync(json, 'utf8')).policies as Record<string, Row>;
  }
  // A pair policy takes no --compare: one run each.
  const rows: Record<string, Row> = {};
  for (const policy of POLICIES) {
    const json = join(dir, `${store ?? 'none'}-${policy}.json`);
    sim([
      ...common,
      '--prefill-instances',
      String(PD[0]),
      '--decode-instances',
      String(PD[1]),
      '--pd-policy',
      policy,
      '--slo-ttft-ms',
      '3000',
      '--slo-tpot-ms',
      '20',
      '--config',
      config,
      '--json',
      json,
    ]);
    rows[policy] = JSON.parse(readFileSync(json, 'utf8')) as Row;
  }
  return rows;
}

function sim(argv: string[]): void {
  execFileSync(process.execPath, ['bin/switchyard.mjs', ...argv, '--no-progress'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

const fmt = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits });
const stores: (string | undefined)[] = [undefined, ...args.links.split(',')];
const results = stores.map((s) => ({ store: s ?? 'none', rows: run(s) }));
rmSync(dir, { recursive: true, force: true });
console.log(`rate scale ${args['rate-scale']}${PD === undefined ? '' : `, ${PD[0]}P+${PD[1]}D`}`);
console.log(
  '| policy | store | TTFT p50 ms | TTFT p99 ms | rejected | prompt tokens computed | fetches | fetch mean ms |' +
    (PD === undefined ? '' : ' both SLOs met |'),
);
console.log(`|---|---|---|---|---|---|---|---|${PD === undefined ? '' : '---|'}`);
for (const policy of POLICIES) {
  for (const { store, rows } of results) {
    const r = rows[policy] as Row;
    const computed = r.kvStore.promptTokensComputed / r.kvStore.promptTokens;
    console.log(
      `| ${policy} | ${store} | ${fmt(r.ttftMs.p50)} | ${fmt(r.ttftMs.p99)} | ${r.rejected} | ` +
        `${fmt(r.kvStore.promptTokensComputed / 1e6, 2)} M (${fmt(100 * computed, 1)}%) | ` +
        `${store === 'none' ? '-' : fmt(r.kvStore.fetches)} | ${store === 'none' ? '-' : fmt(r.kvStore.fetchMsMean, 1)} |` +
        (r.sloAttainment === undefined || PD === undefined
          ? ''
          : ` ${fmt(100 * r.sloAttainment.both, 1)}% |`),
    );
  }
}
