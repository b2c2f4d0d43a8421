/**
 * End-to-end: the llama P/D engines' two ways of saving and loading a KV state, as real child
 * processes on the tiny model. With the KV-state addon built (`npm run build:kv-native`, run by
 * npm's install hook), an engine saves with llama.cpp's llama_state_seq_get_data into a buffer the
 * KV server sends from, and a decode sets the buffer it received with _set_data (no file at either
 * end); with SWITCHYARD_KV_NATIVE=0 an engine uses files (node-llama-cpp's saveStateToFile and
 * loadStateFromFile). The bytes on the wire are the same, so all four pairings must give one
 * engine's tokens (greedy and seeded) with all but the last prompt token from the transferred KV,
 * and each engine's /pd/stats says which API it used. Without the addon (no compiler) the buffer
 * engines report 'file' with the reason, and the pairings still give the same tokens.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadKvNative } from '../../src/engine-servers/llama/kv-native.ts';
import { kvStateBytesMax, kvStateShape } from '../../src/engine-servers/llama/pd.ts';
import { TINY_LLAMA_SHAPE } from '../../src/engine-servers/llama/tiny-gguf.ts';
import {
  LLAMA_MODEL,
  type LlamaEngine,
  llamaCompletion,
  llamaPdStats,
  startLlamaEngine,
  stopLlamaEngines,
  tinyLlamaModel,
  vllmPdCompletion,
} from './support/llama.ts';

/** Starts an engine with SWITCHYARD_KV_NATIVE=0 (files), restoring the environment after the spawn. */
function startFileEngine(args: string[]): Promise<LlamaEngine> {
  const before = process.env.SWITCHYARD_KV_NATIVE;
  process.env.SWITCHYARD_KV_NATIVE = '0';
  try {
    return startLlamaEngine(args); // spawns synchronously, before its first await
  } finally {
    if (before === undefined) delete process.env.SWITCHYARD_KV_NATIVE;
    else process.env.SWITCHYARD_KV_NATIVE = before;
  }
}

/** Whether this checkout has the addon (then the buffer engines must use it). */
const built = (() => {
  const got = loadKvNative();
  return got.ok ? undefined : got.reason;
})();

let single: LlamaEngine;
let prefillBuffer: LlamaEngine;
let decodeBuffer: LlamaEngine;
let prefillFile: LlamaEngine;
let decodeFile: LlamaEngine;

before(async () => {
  const model = tinyLlamaModel();
  const fileArgs = (role: string) => ['--model', model, '--pd-role', role];
  [single, prefillBuffer, decodeBuffer, prefillFile, decodeFile] = await Promise.all([
    startLlamaEngine(['--model', model]),
    startLlamaEngine(['--model', model, '--pd-role', 'prefill']),
    startLlamaEngine(['--model', model, '--pd-role', 'decode']),
    startFileEngine(fileArgs('prefill')),
    startFileEngine(fileArgs('decode')),
  ]);
});

after(async () => {
  await stopLlamaEngines([single, prefillBuffer, decodeBuffer, prefillFile, decodeFile]);
});

const PROMPT = 'The quick brown fox jumps over the lazy dog near the river bank. '.repeat(10);
const SAMPLINGS = [{ temperature: 0 }, { temperature: 0.9, seed: 11 }];

test('each engine says which state API it uses (/pd/stats)', async () => {
  for (const e of [prefillFile, decodeFile]) {
    const stats = await llamaPdStats(e);
    assert.equal(stats.kvStateApi, 'file');
    assert.match(String(stats.kvStateApiReason), /SWITCHYARD_KV_NATIVE=0/);
  }
  for (const e of [prefillBuffer, decodeBuffer]) {
    const stats = await llamaPdStats(e);
    if (built === undefined) assert.equal(stats.kvStateApi, 'buffer', JSON.stringify(stats));
    else {
      assert.equal(stats.kvStateApi, 'file');
      assert.ok(String(stats.kvStateApiReason).length > 0);
    }
  }
});

test('buffer and file engines pair every way, each with one engine tokens, from the transferred KV', async () => {
  const pairs: [string, LlamaEngine, LlamaEngine][] = [
    ['buffer -> buffer', prefillBuffer, decodeBuffer],
    ['file -> file', prefillFile, decodeFile],
    ['buffer -> file', prefillBuffer, decodeFile],
    ['file -> buffer', prefillFile, decodeBuffer],
  ];
  for (const sampling of SAMPLINGS) {
    const request = { prompt: PROMPT, max_tokens: 20, ...sampling };
    const alone = await llamaCompletion(single.url, request);
    for (const [name, prefill, decode] of pairs) {
      const { decode: second } = await vllmPdCompletion(prefill, decode, request);
      assert.equal(second.text, alone.text, `${name}, ${JSON.stringify(sampling)}`);
      assert.equal(second.usage.completion_tokens, 20);
      assert.equal(
        second.usage.prompt_tokens_details.cached_tokens,
        alone.usage.prompt_tokens - 1,
        `${name}: all but the last prompt token came from the transferred state`,
      );
    }
  }
  const stats = await Promise.all([prefillBuffer, decodeBuffer, prefillFile, decodeFile].map(llamaPdStats));
  const [pb, db, pf, df] = stats as [
    Awaited<ReturnType<typeof llamaPdStats>>,
    Awaited<ReturnType<typeof llamaPdStats>>,
    Awaited<ReturnType<typeof llamaPdStats>>,
    Awaited<ReturnType<typeof llamaPdStats>>,
  ];
  assert.equal(pb.exported, 2 * SAMPLINGS.length);
  assert.equal(pf.exported, 2 * SAMPLINGS.length);
  assert.equal(db.imported, 2 * SAMPLINGS.length);
  assert.equal(df.imported, 2 * SAMPLINGS.length);
  for (const s of stats) {
    assert.equal(s.localPrefills, 0);
    assert.equal(s.bufferApiFailures, 0);
  }
  assert.equal(pb.server?.releasedCollected, 2 * SAMPLINGS.length);
});

test('buffer engines reserve one full sequence state at start and move every state through it', async () => {
  // The tiny model's KV shape, and the engines' context per sequence (as a too-long request names it).
  const shape = kvStateShape({
    block_count: TINY_LLAMA_SHAPE.blockCount,
    embedding_length: TINY_LLAMA_SHAPE.embeddingLength,
    attention: { head_count: TINY_LLAMA_SHAPE.headCount, head_count_kv: TINY_LLAMA_SHAPE.headCountKv },
  });
  assert.ok(shape !== undefined);
  const tooLong = await fetch(`${decodeBuffer.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: LLAMA_MODEL, prompt: 'hello', max_tokens: 1_000_000 }),
  });
  assert.equal(tooLong.status, 400);
  const contextSize = Number(/the context of (\d+) tokens per sequence/.exec(await tooLong.text())?.[1]);
  assert.ok(contextSize > 0);
  const [pb, db, pf, df] = await Promise.all(
    [prefillBuffer, decodeBuffer, prefillFile, decodeFile].map(llamaPdStats),
  );
  for (const s of [pb, db]) {
    assert.equal(s?.stateBufferReservedBytes, built === undefined ? kvStateBytesMax(shape, contextSize) : 0);
    // The transfers of the test before, one at a time: each side's reserved buffer served them all.
    if (built === undefined) assert.equal(s?.stateBuffersAllocated, 0, JSON.stringify(s));
  }
  for (const s of [pf, df]) assert.equal(s?.stateBufferReservedBytes, 0, 'files: nothing reserved');
  // A real state is within the bound the reservation is sized by, and near it.
  const { prefill } = await vllmPdCompletion(prefillBuffer, decodeBuffer, { prompt: PROMPT, max_tokens: 2 });
  const after = await llamaPdStats(decodeBuffer);
  const bytes = after.importedBytes - (db?.importedBytes ?? 0);
  const bound = kvStateBytesMax(shape, prefill.usage.prompt_tokens);
  assert.ok(bytes <= bound && bound - bytes < 256, `a ${bytes}-byte state, bound ${bound}`);
});
