/**
 * A fidelity case's value that matches no branch of a union (engine.kvStore.link) is reported from
 * the branch it came closest to, as every other config file's is (config.ts explainIssues): the
 * case parser has its own error map (written-as messages) and said only 'Invalid input'.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFidelityCase } from './case.ts';

function problem(engine: Record<string, unknown>): string {
  try {
    parseFidelityCase({
      name: 'union',
      source: { title: 'run', url: 'https://example.org/run', engine: 'vLLM v0.15.1' },
      model: 'meta-llama/Llama-2-7b-hf',
      gpu: 'H100',
      engine,
      workload: {
        arrival: 'constant',
        rateRps: 5,
        requests: 100,
        input: { kind: 'fixed', tokens: 600 },
        output: { kind: 'fixed', tokens: 250 },
      },
      measured: { ttftMs: { mean: 30 }, saturated: false },
    });
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('expected a refusal');
}

test('a kvStore link that matches neither form names what each takes', () => {
  // A misspelt link name: the names it takes.
  assert.match(
    problem({ kvStore: { kind: 'peer', link: 'ib-999' } }),
    /engine\.kvStore\.link: .*"nvlink"\|"ib-400"\|"roce-200"\|"tcp-100"/,
  );
  // An object missing a field: that field, not the whole link.
  assert.match(
    problem({ kvStore: { kind: 'peer', link: { gbps: 100 } } }),
    /engine\.kvStore\.link\.latencyUs: /,
  );
});
