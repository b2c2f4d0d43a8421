import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SimResult } from '../simulator.ts';
import { formatBatchJobs } from './batch.ts';
import { renderHtmlReport } from './html.ts';
import { poolFigures, sharedGpus } from './pool.ts';
import { type ControlledReportData, controlReport } from './replicas.ts';
import { sampleReportData } from './sample.ts';
import { formatSummaryTable } from './table.ts';
import type { BatchJobSummary, SimSummary } from './types.ts';

/**
 * A serverless run's shape (`sim --workload multi-model --models 32 --gpus 8 --serverless-policy
 * switchyard`): 128 pool slots on 8 GPUs, the summary's gpuSeconds every slot for the whole run.
 */
function serverlessSummary(): SimSummary {
  const base = sampleReportData({ instances: 128 }).summary;
  return { ...base, simulatedSeconds: 1805.73, gpuSeconds: 231_133 };
}

const BATCH: BatchJobSummary = {
  id: 'batch',
  status: 'completed',
  total: 20_000,
  completed: 20_000,
  failed: 0,
  expired: 0,
  submittedS: 0,
  deadlineS: 3600,
  finishedS: 2204.09,
  withinWindow: true,
};

test('a pool run names its slots and GPUs, and prints GPU-seconds billed beside the ceiling', () => {
  const summary = serverlessSummary();
  const pool = poolFigures({ gpuHours: 4.01198, summary }, 8);
  const text = formatSummaryTable(summary, { pool });
  const header = text.split('\n')[0] ?? '';
  assert.ok(header.endsWith('· pool of 128 instance slots on 8 GPUs'), header);
  assert.ok(!header.includes('128 instances'), header);
  // 4.01198 GPU-hours = 14,443 GPU-seconds; 8 GPUs for 1,805.7 s give 14,446.
  assert.ok(
    text.includes(
      'GPU-seconds billed 14,443 (of 14,446 that 8 GPUs give in 1,805.7 s) · pool ceiling 231,133 (all 128 slots for the whole run)',
    ),
    text,
  );
  assert.ok(!text.includes('GPU-seconds 231,133'), 'the ceiling is never printed as the cost');
  assert.ok(text.includes('… 112 more instance slots'));
});

test('an autoscaler pool: its slots own their GPUs, so no shared-GPU figure', () => {
  const base = sampleReportData({ instances: 8 }).summary;
  const summary = { ...base, simulatedSeconds: 1199.7, gpuSeconds: 9597.6 };
  const pool = poolFigures({ gpuHours: 0.431, summary });
  assert.deepEqual(pool, { gpuHours: 0.431, gpus: 8, shared: false });
  const text = formatSummaryTable(summary, { pool });
  assert.ok(text.split('\n')[0]?.endsWith('· pool of 8 instance slots on 8 GPUs'));
  assert.ok(
    text.includes('GPU-seconds billed 1,552 · pool ceiling 9,598 (all 8 slots for the whole run)'),
    text,
  );
});

test('a fixed cluster prints as before: N instances and GPU-seconds', () => {
  const { summary } = sampleReportData({ instances: 4 });
  assert.equal(poolFigures({ summary }), undefined);
  const text = formatSummaryTable(summary, { pool: undefined });
  assert.ok(text.split('\n')[0]?.endsWith('· 4 instances'));
  assert.ok(text.includes(' · GPU-seconds 2,400\n'), text);
  assert.ok(!text.includes('billed') && !text.includes('batch job') && !text.includes('online requests'));
});

test('sharedGpus: the nodes of a serverless or multi-model run, none otherwise', () => {
  assert.equal(sharedGpus({ serverless: { nodes: [{ gpus: 8 }, { gpus: 8 }, { gpus: 4 }] } }), 20);
  assert.equal(sharedGpus({ placement: { nodes: [{ gpus: 8 }] } }), 8);
  assert.equal(sharedGpus({}), undefined);
});

test('a batch job gets its own line under the online counts', () => {
  const { summary } = sampleReportData({ instances: 4 });
  const lines = formatSummaryTable({ ...summary, batchJobs: [BATCH] }).split('\n');
  assert.ok(lines[1]?.startsWith('online requests 5,000 · completed'), lines[1]);
  assert.equal(
    lines[2],
    'batch job batch: completed · 20,000 of 20,000 done, 0 failed, 0 expired · finished at 2,204.1 s, deadline 3,600 s',
  );
});

test('batch lines: expired and unfinished jobs, a submission time, and a bound on the lines', () => {
  const expired: BatchJobSummary = {
    ...BATCH,
    id: 'nightly',
    status: 'expired',
    completed: 18_000,
    expired: 2000,
    submittedS: 60,
    deadlineS: 3660,
    finishedS: 3660,
    withinWindow: false,
  };
  const open: BatchJobSummary = { ...BATCH, status: 'in_progress', completed: 500, finishedS: -1 };
  assert.deepEqual(formatBatchJobs([expired, open]), [
    'batch job nightly: expired · 18,000 of 20,000 done, 0 failed, 2,000 expired · submitted at 60 s, finished at 3,660 s, deadline 3,660 s',
    'batch job batch: in progress at the end of the run · 500 of 20,000 done, 0 failed, 0 expired · requests still open, deadline 3,600 s',
  ]);
  const many = Array.from({ length: 10 }, (_, i) => ({ ...BATCH, id: `j${i}` }));
  const lines = formatBatchJobs(many);
  assert.equal(lines.length, 9);
  assert.equal(lines[8], "… 2 more batch jobs (all in the JSON's batchJobs)");
  assert.deepEqual(formatBatchJobs(undefined), []);
});

test('HTML: a pool run names its slots and GPUs and bills GPU-seconds; a batch job gets a table', () => {
  const summary = { ...serverlessSummary(), batchJobs: [BATCH] };
  const run: ControlledReportData = {
    ...sampleReportData({ instances: 128 }),
    summary,
    control: {
      autoscaler: 'm00:switchyard',
      gpuHours: 4.01198,
      coldStarts: 1952,
      instancesOverTime: [],
      gpus: 8,
      sharedGpus: true,
    },
  };
  const html = renderHtmlReport([run]);
  assert.ok(html.includes('<li>instances <b>pool of 128 instance slots on 8 GPUs</b></li>'), 'header');
  assert.ok(html.includes('<div class="k">GPU-seconds billed</div><div class="v">14,443</div>'), 'card');
  assert.ok(html.includes('of 14,446 on 8 GPUs; pool ceiling 231,133 (all 128 slots, whole run)'), 'ceiling');
  assert.ok(html.includes('<h3>Batch jobs</h3>'));
  assert.ok(
    html.includes(
      '<tr><td>batch</td><td class="l">completed</td><td>20,000</td><td>20,000</td><td>0</td><td>0</td>' +
        '<td>0 s</td><td>2,204.1 s</td><td>3,600 s</td></tr>',
    ),
    'batch row',
  );
  assert.ok(html.includes('of 5,000 online requests'));

  const plain = renderHtmlReport([sampleReportData({ instances: 4 })]);
  assert.ok(plain.includes('<li>instances <b>4 instances</b></li>'));
  assert.ok(plain.includes('<div class="k">GPU-seconds</div><div class="v">2,400</div>'));
  assert.ok(!plain.includes('Batch jobs') && !plain.includes('billed'));
});

test('controlReport carries the GPUs: shared nodes when given, else the slots own', () => {
  const { summary, ...rest } = sampleReportData({ instances: 4 });
  const result = {
    summary,
    report: { summary, ...rest },
    gpuHours: 0.5,
    coldStarts: 1,
  } as unknown as SimResult;
  assert.equal(controlReport(result, 'kpa').control?.gpus, 4);
  assert.equal(controlReport(result, 'kpa').control?.sharedGpus, false);
  assert.equal(controlReport(result, 'x', 2).control?.gpus, 2);
  assert.equal(controlReport(result, 'x', 2).control?.sharedGpus, true);
});
