import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { TEXT_BLOCK_CHARS, textPrefixChain } from '../core/text-prefix.ts';
import { readTrace } from '../workload/traces/read.ts';
import { tracePlan } from './plan.ts';
import { BLOCK_CHARS, PromptSynth, wordText } from './prompts.ts';
import type { PlannedRequest } from './types.ts';

function planned(
  index: number,
  inputTokens: number,
  hashIds: number[] = [],
  group?: number,
  prefixTokens = 0,
) {
  return {
    index,
    atMs: 0,
    inputTokens,
    outputTokens: 1,
    hashIds,
    group,
    prefixTokens,
  } satisfies PlannedRequest;
}

function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Leading gateway-chain hashes (64-character blocks) two texts share. */
function sharedChain(a: string, b: string): number {
  const x = textPrefixChain(a).hashes;
  const y = textPrefixChain(b).hashes;
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return i;
}

test('a block is exactly 2,048 characters, a whole number of 64-character gateway blocks', () => {
  assert.equal(BLOCK_CHARS, 2048);
  assert.equal(BLOCK_CHARS % TEXT_BLOCK_CHARS, 0);
  const synth = new PromptSynth(7);
  for (const id of [0, 1, 42, 123_456, 2 ** 31]) {
    const text = synth.blockText(id);
    assert.equal(text.length, BLOCK_CHARS, `block ${id}`);
    assert.ok(text.endsWith('\n'));
  }
});

test('blocks are a function of (seed, id): stable, distinct across ids and seeds', () => {
  const a = new PromptSynth(1);
  const b = new PromptSynth(1);
  const c = new PromptSynth(2);
  assert.equal(a.blockText(5), b.blockText(5));
  assert.notEqual(a.blockText(5), a.blockText(6));
  assert.notEqual(a.blockText(5), c.blockText(5));
  // Different ids differ within their first gateway block, so they never look shared.
  assert.ok(commonPrefix(a.blockText(5), a.blockText(6)) < TEXT_BLOCK_CHARS);
});

test('wordText hits the length exactly for every size', () => {
  const synth = new PromptSynth(3);
  for (let chars = 0; chars < 300; chars++) {
    assert.equal(synth.uniqueText(9, chars).length, chars);
  }
  assert.equal(wordText(new Rng(1), 'x', 0), '');
  assert.equal(wordText(new Rng(1), 'a long tag', 4), 'a l\n');
});

test('requests sharing leading hash ids share an identical text prefix, block for block', () => {
  const synth = new PromptSynth(11);
  const a = synth.promptFor(planned(0, 4 * 512, [0, 1, 2, 3]));
  const b = synth.promptFor(planned(1, 4 * 512, [0, 1, 2, 9]));
  const c = synth.promptFor(planned(2, 4 * 512, [0, 7, 2, 3]));
  assert.equal(a.slice(0, 3 * BLOCK_CHARS), b.slice(0, 3 * BLOCK_CHARS));
  const ab = commonPrefix(a, b);
  assert.ok(ab >= 3 * BLOCK_CHARS && ab < 3 * BLOCK_CHARS + TEXT_BLOCK_CHARS, `shared ${ab}`);
  const ac = commonPrefix(a, c);
  assert.ok(ac >= BLOCK_CHARS && ac < BLOCK_CHARS + TEXT_BLOCK_CHARS, `shared ${ac}`);
  // The gateway's text chain sees exactly the shared blocks: 32 hashes per 512-token block.
  assert.equal(sharedChain(a, b), 3 * (BLOCK_CHARS / TEXT_BLOCK_CHARS));
  assert.equal(sharedChain(a, c), BLOCK_CHARS / TEXT_BLOCK_CHARS);
});

test('prompt length is input tokens x 4 characters: partial last block, short input, unique remainder', () => {
  const synth = new PromptSynth(5);
  const cases: [number, number[]][] = [
    [6758, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]], // last block partial, as in Mooncake
    [1000, [0, 1, 2, 3]], // ids cover more than the input
    [3000, [0, 1]], // a unique remainder after the ids
    [1, [4]],
    [700, []],
  ];
  for (const [tokens, ids] of cases) {
    const text = synth.promptFor(planned(3, tokens, ids));
    assert.equal(text.length, tokens * 4, `${tokens} tokens over ${ids.length} ids`);
  }
  // A partial last block is the start of that id's block, so equal partial ids stay shared.
  const p = synth.promptFor(planned(4, 512 + 100, [0, 8]));
  assert.equal(p.slice(BLOCK_CHARS), synth.blockText(8).slice(0, 400));
  // The remainder after the ids is unique to the request.
  const r1 = synth.promptFor(planned(5, 1024 + 256, [0, 1]));
  const r2 = synth.promptFor(planned(6, 1024 + 256, [0, 1]));
  assert.equal(commonPrefix(r1, r2) < 2 * BLOCK_CHARS + TEXT_BLOCK_CHARS, true);
  assert.equal(r1.slice(0, 2 * BLOCK_CHARS), r2.slice(0, 2 * BLOCK_CHARS));
});

test('group prefixes: same group shares P tokens, other groups share nothing', () => {
  const synth = new PromptSynth(9);
  const P = 1000;
  const a = synth.promptFor(planned(0, P + 200, [], 2, P));
  const b = synth.promptFor(planned(1, P + 50, [], 2, P));
  const c = synth.promptFor(planned(2, P + 200, [], 3, P));
  assert.equal(a.length, (P + 200) * 4);
  assert.equal(b.length, (P + 50) * 4);
  const ab = commonPrefix(a, b);
  assert.ok(ab >= P * 4 && ab < P * 4 + TEXT_BLOCK_CHARS, `shared ${ab}`);
  assert.ok(commonPrefix(a, c) < TEXT_BLOCK_CHARS);
  assert.equal(sharedChain(a, c), 0);
});

test('the Mooncake sample: shared leading hash ids give shared text, different ones none', () => {
  const trace = readTrace('sample:mooncake-conversation');
  const plan = tracePlan(trace, { rateScale: 1, requests: 120, durationS: undefined });
  const synth = new PromptSynth(1, trace.blockTokens);
  const requests = [...plan.requests];
  const texts = requests.map((r) => synth.promptFor(r));
  let pairsSharing = 0;
  for (let i = 0; i < requests.length; i++) {
    const ri = requests[i] as PlannedRequest;
    assert.equal((texts[i] as string).length, ri.inputTokens * 4);
    for (let j = i + 1; j < Math.min(requests.length, i + 40); j++) {
      const rj = requests[j] as PlannedRequest;
      let k = 0;
      while (k < ri.hashIds.length && k < rj.hashIds.length && ri.hashIds[k] === rj.hashIds[k]) k++;
      // Full blocks only: a shared id whose block is cut short in either request shares less.
      let fullShared = 0;
      while (fullShared < k && (fullShared + 1) * 512 <= Math.min(ri.inputTokens, rj.inputTokens))
        fullShared++;
      const chain = sharedChain(texts[i] as string, texts[j] as string);
      assert.ok(chain >= fullShared * 32, `requests ${i} and ${j}: ${chain} < ${fullShared * 32}`);
      assert.ok(chain < (k + 1) * 32, `requests ${i} and ${j} share more than their ids: ${chain}`);
      if (fullShared > 0) pairsSharing++;
    }
  }
  assert.ok(pairsSharing > 100, `the sample shares prefixes (${pairsSharing} pairs)`);
});

test('Azure prompts are unique from their first gateway block', () => {
  const trace = readTrace('sample:azure-conv');
  const plan = tracePlan(trace, { rateScale: 1, requests: 200, durationS: undefined });
  const synth = new PromptSynth(1, trace.blockTokens);
  const firsts = new Set<number>();
  for (const r of plan.requests) {
    assert.equal(r.hashIds.length, 0);
    const text = synth.promptFor(r);
    assert.equal(text.length, r.inputTokens * 4);
    const chain = textPrefixChain(text).hashes;
    if (chain.length > 0) firsts.add(chain[0] as number);
    else firsts.add(-r.index - 1);
  }
  assert.equal(firsts.size, 200);
});
