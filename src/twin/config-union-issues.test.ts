/**
 * A config value that matches no branch of a union (a fault entry, a KV link, the uniform-or-groups
 * cluster) was reported as "Invalid input" and nothing else: `faults.0: Invalid input` for a
 * missing `forS`, `cluster: Invalid input` for `instances: '4'`. The message now names the key and
 * what is wrong with it, from the branch the value came closest to.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { parseWithSchema, simConfigFileSchema } from './config.ts';

function problem(value: unknown): string {
  try {
    parseWithSchema(simConfigFileSchema, value, 'config file');
  } catch (e) {
    assert.ok(e instanceof SwitchyardError);
    assert.equal(e.code, 'SY_ERR_INVALID_CONFIG');
    return e.message;
  }
  assert.fail('accepted');
}

test('a union in a config file names the bad key and what is wrong with it', () => {
  assert.equal(
    problem({ faults: [{ kind: 'crash', instance: 'i0', atS: 5 }] }),
    'config file: faults.0.forS: Invalid input: expected number, received undefined',
  );
  assert.match(
    problem({ faults: [{ kind: 'crush', instance: 'i0', atS: 5, forS: 5 }] }),
    /faults\.0\.kind: Invalid option: expected one of "crash"\|"stall"\|"slow-scrape"$/,
  );
  assert.equal(
    problem({ cluster: { instances: '4' } }),
    'config file: cluster.instances: Invalid input: expected number, received string',
  );
  assert.match(problem({ cluster: { instances: 2.5 } }), /cluster\.instances: Invalid input: expected int/);
  assert.match(problem({ cluster: [1, 2] }), /cluster: Invalid input: expected object, received array$/);
  assert.equal(
    problem({ engine: { kvStore: { kind: 'peer', link: 'rdma' } } }),
    'config file: engine.kvStore.link: Invalid option: expected one of "nvlink"|"ib-400"|"roce-200"|"tcp-100", or expected object, received string',
  );
  assert.match(
    problem({ engine: { kvStore: { kind: 'peer', link: { gbps: 100 } } } }),
    /engine\.kvStore\.link\.latencyUs: Invalid input: expected number/,
  );
});

test('a GPU budget that holds no instance is refused naming cluster.gpuBudget', () => {
  const cluster = (gpuBudget: number, tp: number) => ({
    cluster: {
      nodes: [{ id: 'n1', gpu: 'h100', gpus: 4 }],
      gpuBudget,
      models: [{ id: 'llama-3.1-8b', tp, autoscaler: { name: 'kpa', maxInstances: 2 } }],
    },
  });
  // Before, gpuBudget: 0 ran and rejected all 388 requests of a 120 s multi-model load, silently.
  assert.match(
    problem(cluster(0, 1)),
    /cluster\.gpuBudget: 0 GPUs hold no instance \(the smallest model's TP is 1\)/,
  );
  assert.match(
    problem(cluster(1, 2)),
    /cluster\.gpuBudget: 1 GPUs hold no instance \(the smallest model's TP is 2\)/,
  );
  parseWithSchema(simConfigFileSchema, cluster(2, 2), 'config file');
});
