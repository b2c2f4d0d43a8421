import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatControlLine } from '../../cli/sim-autoscaler.ts';
import type { SimResult } from '../simulator.ts';
import { renderHtmlReport } from './html.ts';
import { gpuBudget, poolFigures, sharedGpus } from './pool.ts';
import { controlReport } from './replicas.ts';
import { sampleReportData } from './sample.ts';
import { formatSummaryTable } from './table.ts';

/**
 * A multi-model cluster under a GPU budget (examples/multi-model.yaml: two 4-GPU nodes, at most 6
 * GPUs held): the text and HTML summaries show the budget beside the nodes' GPUs, and the billed
 * GPU-seconds against what the budget gives, not all 8 GPUs. The engines' request preemptions and
 * the instances a model lost to a higher priority are named apart.
 */

const NODES = { placement: { nodes: [{ gpus: 4 }, { gpus: 4 }], gpuBudget: 6 } };

function budgetRun() {
  const base = sampleReportData({ instances: 14 });
  const summary = { ...base.summary, simulatedSeconds: 606, gpuSeconds: 8484, preemptions: 98 };
  return { base, summary };
}

test('a GPU budget shows in the header and bounds the GPU-seconds the pool could give', () => {
  assert.equal(sharedGpus(NODES), 8);
  assert.equal(gpuBudget(NODES), 6);
  assert.equal(gpuBudget({ placement: { nodes: [{ gpus: 8 }] } }), undefined);
  const { summary } = budgetRun();
  const pool = poolFigures({ gpuHours: 0.909, summary }, sharedGpus(NODES), gpuBudget(NODES));
  assert.deepEqual(pool, { gpuHours: 0.909, gpus: 8, shared: true, budget: 6 });
  const text = formatSummaryTable(summary, { pool });
  const header = text.split('\n')[0] ?? '';
  assert.ok(header.endsWith('· pool of 14 instance slots on 8 GPUs, budget 6 GPUs'), header);
  // 0.909 GPU-hours = 3,272 GPU-seconds; the budget's 6 GPUs for 606 s give 3,636 (all 8: 4,848).
  assert.ok(
    text.includes(
      'GPU-seconds billed 3,272 (of 3,636 that a budget of 6 of the 8 GPUs gives in 606.0 s) · pool ceiling 8,484',
    ),
    text,
  );
  // Without a budget: the nodes' GPUs, as before.
  const unbudgeted = formatSummaryTable(summary, { pool: poolFigures({ gpuHours: 0.909, summary }, 8) });
  assert.ok(unbudgeted.includes('(of 4,848 that 8 GPUs give in 606.0 s)'), unbudgeted);
  assert.ok(unbudgeted.split('\n')[0]?.endsWith('on 8 GPUs'));
});

test('the HTML report shows the budget too', () => {
  const { base, summary } = budgetRun();
  const result = { summary, gpuHours: 0.909, coldStarts: 13, instancesOverTime: [] } as unknown as SimResult;
  const report = { ...base, summary, ...controlReport(result, 'm0:slo-planner', 8, 6) };
  assert.equal(report.control?.gpuBudget, 6);
  const html = renderHtmlReport([report]);
  assert.ok(html.includes('pool of 14 instance slots on 8 GPUs, budget 6 GPUs'), 'header');
  assert.ok(html.includes('of 3,636 on a budget of 6 of the 8 GPUs; pool ceiling 8,484'), 'GPU-seconds card');
});

test("the engines' request preemptions and a model's instances preempted are named apart", () => {
  const { summary } = budgetRun();
  const text = formatSummaryTable(summary);
  assert.match(text, /· request preemptions 98/);
  assert.doesNotMatch(text, /· preemptions /);
  assert.match(text, /│ req preempt │/);
  const html = renderHtmlReport([{ ...sampleReportData({ instances: 2 }), summary }]);
  assert.ok(html.includes('request preemptions'));
  const model = {
    model: 'm2',
    base: 'llama-3.1-8b',
    priority: 1,
    autoscaler: 'kpa',
    gpuHours: 0.136,
    coldStarts: 5,
    startupMs: 47_000,
    requests: 642,
    completed: 557,
    rejected: 85,
    sloAttainment: 0,
    preempted: 2,
    shortTicks: 165,
    instancesOverTime: [],
  };
  const line = formatControlLine({
    gpuHours: 0.909,
    instancesOverTime: [],
    models: [model],
  } as unknown as SimResult);
  assert.match(line, /m2 \(llama-3\.1-8b, priority 1, kpa\): .*2 instances preempted for higher priority/);
  // A serverless run's model (every one at priority 0): its evictions are not priority preemptions.
  const serverless = formatControlLine({
    gpuHours: 0.909,
    instancesOverTime: [],
    models: [{ ...model, priority: 0, autoscaler: 'switchyard', preempted: 7, evicted: 7, coldRequests: 9 }],
  } as unknown as SimResult);
  assert.match(
    serverless,
    /m2 \(llama-3\.1-8b, priority 0, switchyard\): .*7 idle instances stopped for another model/,
  );
  assert.doesNotMatch(serverless, /higher priority/);
});
