/**
 * Numbers and booleans written as strings, as they are copied from a results table or a command
 * line ("600", "600s", "10 min", "45 ms", "5 req/s", "false"): refused, each with the value to
 * write in the field's unit, never zod's bare 'expected number, received string'.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadFidelityCase, parseFidelityCase } from './case.ts';

function caseWith(over: {
  stage?: Record<string, unknown>;
  measured?: Record<string, unknown>;
  tp?: unknown;
}) {
  return {
    name: 'written-as',
    source: { title: 'run', url: 'https://example.org/run', engine: 'vLLM v0.15.1' },
    model: 'meta-llama/Llama-2-7b-hf',
    gpu: 'H100',
    tp: over.tp ?? 1,
    workload: {
      arrival: 'constant',
      stages: [
        {
          rateRps: 5,
          durationS: 600,
          measured: { ttftMs: { mean: 30 }, saturated: false, ...over.measured },
          ...over.stage,
        },
      ],
      input: { kind: 'uniform', lo: 570, hi: 790 },
      output: { kind: 'fixed', tokens: 250 },
    },
  };
}

function problem(value: unknown): string {
  try {
    parseFidelityCase(value);
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('expected a refusal');
}

describe('values written as strings', () => {
  it('a quoted number says to write it without quotes', () => {
    assert.match(problem(caseWith({ tp: '4' })), /tp: write the number without quotes: 4$/);
    assert.match(
      problem(caseWith({ stage: { rateRps: '5' } })),
      /workload\.stages\.0\.rateRps: write the number without quotes: 5$/,
    );
  });

  it("a duration with a unit is given in the field's unit", () => {
    assert.match(
      problem(caseWith({ stage: { durationS: '600s' } })),
      /durationS: a number of seconds: write 600$/,
    );
    assert.match(
      problem(caseWith({ stage: { durationS: '10 min' } })),
      /durationS: a number of seconds: write 600$/,
    );
    assert.match(
      problem(caseWith({ measured: { ttftMs: { mean: '0.045s' } } })),
      /measured\.ttftMs\.mean: a number of ms: write 45$/,
    );
    assert.match(
      problem(caseWith({ measured: { ttftMs: { p99: '120 ms' } } })),
      /measured\.ttftMs\.p99: a number of ms: write 120$/,
    );
    assert.match(
      problem(caseWith({ stage: { rateRps: '5 req/s' } })),
      /rateRps: a number of requests per second: write 5$/,
    );
  });

  it('a quoted boolean says to write it without quotes; other text is named', () => {
    assert.match(
      problem(caseWith({ measured: { saturated: 'false' } })),
      /saturated: write false without quotes$/,
    );
    assert.match(
      problem(caseWith({ measured: { saturated: 'no' } })),
      /saturated: expected true or false, got "no"$/,
    );
    assert.match(
      problem(caseWith({ stage: { durationS: 'ten' } })),
      /durationS: expected a number, got "ten"$/,
    );
  });
});

describe('tensor parallelism under engine', () => {
  it('says where tp goes, with its value, and never to leave it out (that would run the case at TP 1)', () => {
    for (const key of ['tensor_parallel_size', '--tensor-parallel-size', 'tensorParallelSize', '-tp']) {
      const c = { ...caseWith({}), engine: { max_num_seqs: 128, [key]: 4 } };
      const message = problem(c);
      assert.match(
        message,
        new RegExp(`engine\\.${key}: tensor parallelism is the case's top-level tp: write tp: 4 `),
      );
      assert.doesNotMatch(message, /leave/);
    }
  });
});

describe('keys in the wrong place or case', () => {
  it("vLLM's options beside model and gpu say to put them under engine", () => {
    const c = { ...caseWith({}), max_num_batched_tokens: 2048, '--max-num-seqs': 128 };
    const message = problem(c);
    assert.match(message, /max_num_batched_tokens is an engine option: put it under engine/);
    assert.match(message, /--max-num-seqs is an engine option: put it under engine/);
  });

  it('Mean, as a table heads it, says to write mean', () => {
    assert.match(
      problem(caseWith({ measured: { ttftMs: { Mean: 30 } } })),
      /unknown key 'Mean'; .*\(write mean\)/,
    );
  });
});

describe('a JSON case with comments', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-case-jsonc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("says JSON takes no comments and names the line, not the YAML parser's 'implicit keys'", () => {
    const path = join(dir, 'commented.json');
    const body = JSON.stringify(caseWith({}), null, 2).split('\n');
    writeFileSync(path, [body[0], '  // exported from our benchmark', ...body.slice(1)].join('\n'));
    assert.throws(() => loadFidelityCase(path), {
      message:
        /commented\.json': JSON takes no comments, and line 2 is one \('\/\/' or '\/\*'\): delete it, or write the case as YAML/,
    });
    // Without the comment it loads.
    writeFileSync(path, body.join('\n'));
    assert.equal(loadFidelityCase(path).name, 'written-as');
  });
});
