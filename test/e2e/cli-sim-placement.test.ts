/**
 * `switchyard sim --config examples/multi-model.yaml`: the real CLI runs three models, each with its
 * own autoscaler, placed on two nodes under a GPU budget; placement lines land in the decision log
 * in time order with the routing lines, and the JSON has each model's figures.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-placement-'));
const EXAMPLE = join(import.meta.dirname, '..', '..', 'examples', 'multi-model.yaml');

interface ModelJson {
  model: string;
  base: string;
  priority: number;
  gpuHours: number;
  coldStarts: number;
  requests: number;
  completed: number;
  rejected: number;
  preempted: number;
  instancesOverTime: { ready: number; starting: number; draining: number }[];
}

describe('sim with a multi-model cluster', () => {
  it('places three models under the budget, the lowest priority yields, and the run is reproducible', async () => {
    const runs = await Promise.all(
      ['a', 'b'].map((tag) =>
        runCli([
          'sim',
          '--config',
          EXAMPLE,
          '--no-progress',
          '--json',
          join(dir, `${tag}.json`),
          '--decision-log',
          join(dir, `${tag}.jsonl`),
        ]),
      ),
    );
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    assert.match(runs[0]?.stdout ?? '', /m2 \(llama-3\.1-8b, priority 1, kpa\): .* preempted/);
    const log = readFileSync(join(dir, 'a.jsonl'), 'utf8');
    assert.equal(log, readFileSync(join(dir, 'b.jsonl'), 'utf8'), 'the same seed gives the same log');
    const lines = log
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { atMs: number; placement?: string; request?: string });
    // Placement and routing lines interleave in time order.
    for (let i = 1; i < lines.length; i++) {
      assert.ok((lines[i]?.atMs ?? 0) >= (lines[i - 1]?.atMs ?? 0), `line ${i} goes back in time`);
    }
    const placements = lines.filter((l) => l.placement !== undefined).map((l) => l.placement as string);
    assert.ok(placements.some((p) => /^m0#\d+ -> node-\d gpus \d/.test(p)));
    assert.ok(
      placements.some((p) => /^m2#\d+ evicted: m0 \(priority 10\) needs 1 GPUs, m2 \(priority 1\)/.test(p)),
      placements.join('\n'),
    );
    assert.ok(lines.some((l) => l.request !== undefined));

    const json = JSON.parse(readFileSync(join(dir, 'a.json'), 'utf8')) as {
      requests: number;
      gpuHours: number;
      models: ModelJson[];
      placementLog: { atMs: number; placement: string }[];
    };
    assert.deepEqual(
      json.models.map((m) => [m.model, m.base, m.priority]),
      [
        ['m0', 'llama-3.1-8b', 10],
        ['m1', 'qwen2.5-7b', 5],
        ['m2', 'llama-3.1-8b', 1],
      ],
    );
    assert.deepEqual(
      json.placementLog.map((e) => e.placement),
      placements,
    );
    const [m0, , m2] = json.models;
    assert.equal(m0?.preempted, 0, 'the highest priority is never preempted');
    assert.ok((m2?.preempted ?? 0) > 0, 'the lowest priority yields');
    // Every request of every model is answered, and the totals are the models' sums.
    assert.equal(
      json.models.reduce((n, m) => n + m.requests, 0),
      json.requests,
    );
    for (const m of json.models) assert.equal(m.completed + m.rejected, m.requests, m.model);
    const gpuHours = json.models.reduce((n, m) => n + m.gpuHours, 0);
    assert.ok(Math.abs(gpuHours - json.gpuHours) < 1e-5, `${gpuHours} vs ${json.gpuHours}`);
    // The budget of 6 GPUs holds at every tick (pending instances hold none).
    const ticks = json.models[0]?.instancesOverTime.length ?? 0;
    for (let t = 0; t < ticks; t++) {
      const held = json.models.reduce((n, m) => {
        const p = m.instancesOverTime[t];
        return n + (p === undefined ? 0 : p.ready + p.starting + p.draining);
      }, 0);
      assert.ok(held <= 6, `tick ${t}: ${held} GPUs held`);
    }
  });

  it('refuses a bad multi-model cluster naming the field, and the single-pool flags beside it', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      [
        'cluster:',
        '  nodes: [{ id: n1, gpu: h100, gpus: 8 }]',
        '  models:',
        '    - { id: chat, autoscaler: { name: kpa, maxInstances: 2 } }',
        '    - { id: m1, base: llama-3.1-8b, gpu: l4, autoscaler: { name: nope, maxInstances: 2 } }',
        '',
      ].join('\n'),
    );
    const run = await runCli(['sim', '--config', bad, '--no-progress']);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /cluster\.models\.0\.id: 'chat' is not a catalogue model: give a base/);
    assert.match(run.stderr, /cluster\.models\.1\.gpu: no node has 'l4' GPUs; present: h100/);
    assert.match(run.stderr, /cluster\.models\.1\.autoscaler\.name: unknown autoscaler 'nope'; valid: /);
    assert.match(run.stderr, /SY_ERR_INVALID_CONFIG/);
    const flags = await runCli(['sim', '--config', EXAMPLE, '--autoscaler', 'kpa', '--no-progress']);
    assert.equal(flags.code, 2, flags.stderr);
    assert.match(flags.stderr, /autoscaler.*not with a multi-model cluster/);
  });
});
