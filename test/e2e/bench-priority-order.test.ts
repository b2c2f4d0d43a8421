/**
 * End-to-end: `switchyard bench --workload FILE` with a workload that sets a priority tells a real
 * sim engine from a real Switchyard gateway by their GET /v1/models `owned_by`: pointed at the
 * engine it says, before the run, that it sends the priorities in the engine's order (lower first,
 * negated); pointed at the gateway in front of that engine it sends them as written and says
 * nothing. Every request is served either way. (src/loadgen/priority-order.test.ts checks the
 * bodies sent.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { BenchSummary } from '../../src/loadgen/types.ts';
import { runCli } from './support/cli.ts';
import { simBackend, startSims, startTestGateway, Teardown, type TestGateway } from './support/cluster.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-priority-'));
const REQUESTS = 6;

describe('bench --workload: the priority order of a real engine and a real gateway', {
  timeout: 120_000,
}, () => {
  const teardown = new Teardown();
  let engineUrl = '';
  let gw: TestGateway;
  let workload = '';

  before(async () => {
    const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
    const engine = sims.engines[0];
    assert.ok(engine !== undefined);
    engineUrl = engine.url;
    gw = await startTestGateway({ backends: [simBackend('e0', engine, false)] }, teardown);
    workload = join(dir, 'priority.yaml');
    writeFileSync(
      workload,
      stringify({
        kind: 'poisson',
        rateRps: 20,
        maxRequests: REQUESTS,
        input: { kind: 'fixed', tokens: 64 },
        output: { kind: 'fixed', tokens: 4 },
        priority: 5,
      }),
    );
  });
  after(async () => {
    await teardown.run();
    rmSync(dir, { recursive: true, force: true });
  });

  const bench = async (url: string, name: string): Promise<{ stderr: string; summary: BenchSummary }> => {
    const json = join(dir, `${name}.json`);
    const run = await runCli(
      ['bench', '--no-progress', '--url', url, '--workload', workload, '--json', json],
      60_000,
    );
    assert.equal(run.code, 0, run.stderr);
    return { stderr: run.stderr, summary: JSON.parse(readFileSync(json, 'utf8')) as BenchSummary };
  };

  it('straight at the sim engine: the priorities go in its order, and it says so', async () => {
    const { stderr, summary } = await bench(engineUrl, 'engine');
    assert.match(
      stderr,
      /is an engine \(GET \/v1\/models: owned_by 'switchyard-sim'\), not a Switchyard gateway: .*lower first \(priority p is sent as -p\)/,
    );
    assert.equal(summary.requests.completed, REQUESTS);
  });

  it('at the gateway: as written, nothing said', async () => {
    const { stderr, summary } = await bench(gw.url, 'gateway');
    assert.doesNotMatch(stderr, /priorit/);
    assert.equal(summary.requests.completed, REQUESTS);
  });
});
