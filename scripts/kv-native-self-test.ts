/**
 * The self-test scripts/build-kv-native.ts runs (in a child process, so a wrong build cannot take the
 * build down with it) before it keeps an addon:
 *
 *   node --import tsx scripts/kv-native-self-test.ts ADDON.node [model.gguf]
 *
 * On the tiny model: a prompt is evaluated on one context; its sequence state is taken both with
 * node-llama-cpp's saveStateToFile and with the addon (llama_state_seq_get_data); the file's state
 * part must be the buffer byte for byte. The buffer is then set on a second context's sequence
 * (llama_state_seq_set_data), and so is the file (loadStateFromFile) on another, and both continue
 * with the same seed: their tokens must be the ones a single context gives when it evaluates the
 * whole prompt itself. Prints one JSON line; exits 1 on any difference.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, type LlamaContext, type LlamaContextSequence, type Token } from 'node-llama-cpp';
import { openKvNative } from '../src/engine-servers/llama/kv-native.ts';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../src/engine-servers/llama/tiny-gguf.ts';

const addonPath = process.argv[2];
if (addonPath === undefined) {
  console.error('usage: kv-native-self-test.ts ADDON.node [model.gguf]');
  process.exit(2);
}
const modelPath = process.argv[3] ?? ensureTinyLlamaGguf(TINY_LLAMA_DEFAULT_PATH);
const GENERATED = 24;
const SEED = 1234;

async function generate(sequence: LlamaContextSequence, tokens: Token[]): Promise<Token[]> {
  const out: Token[] = [];
  const generator = sequence.evaluate(tokens, { temperature: 1, topP: 1, seed: SEED });
  for await (const token of generator) {
    out.push(token);
    if (out.length >= GENERATED) break;
  }
  await generator.return();
  return out;
}

const llama = await getLlama({
  gpu: false,
  build: 'never',
  skipDownload: true,
  progressLogs: false,
  maxThreads: 1,
});
const native = openKvNative(addonPath);
const model = await llama.loadModel({ modelPath });
const contextOptions = { contextSize: 1024, sequences: 1 };
const contexts = await Promise.all([1, 2, 3, 4, 5].map(() => model.createContext(contextOptions)));
const [a, b, c, d, e] = contexts as [LlamaContext, LlamaContext, LlamaContext, LlamaContext, LlamaContext];
const text = 'The quick brown fox jumps over the lazy dog, again and again, near the river bank. '.repeat(6);
const prompt = model.tokenize(text);
const head = prompt.slice(0, -1);
const last = prompt.slice(-1);
const dir = mkdtempSync(join(tmpdir(), 'kv-native-self-test-'));
try {
  const source = a.getSequence();
  await source.evaluateWithoutGeneratingNewTokens(head);
  const file = join(dir, 'state.kv');
  const { fileSize } = await source.saveStateToFile(file);
  const saved = await native.saveSequenceState(source);
  const fileBytes = readFileSync(file);
  // The buffer is laid out as the file: the same bytes.
  const sameBytes =
    saved.bytes === fileSize && Buffer.compare(fileBytes, saved.buffer.subarray(0, saved.bytes)) === 0;
  const sameTokens = saved.tokens === head.length;

  const same = (x: readonly Token[], y: readonly Token[]): boolean =>
    x.length === y.length && x.every((t, i) => t === y[i]);
  const single = await generate(d.getSequence(), prompt);
  const fromBuffer = b.getSequence();
  await native.loadSequenceState(fromBuffer, saved.buffer, saved.bytes);
  const heldTokens = same(fromBuffer.contextTokens, head);
  // The buffer's bytes are put back after the load (its 8 bytes before the state are lent to it).
  const restored = Buffer.compare(fileBytes, saved.buffer.subarray(0, saved.bytes)) === 0;
  const viaBuffer = await generate(fromBuffer, last);
  const fromFile = c.getSequence();
  await fromFile.loadStateFromFile(file, { acceptRisk: true });
  const viaFile = await generate(fromFile, last);
  // A file's bytes set through the buffer API (a file-path prefill, a buffer-path decode).
  const crossed = e.getSequence();
  await native.loadSequenceState(crossed, fileBytes, fileBytes.byteLength);
  const viaFileBytes = await generate(crossed, last);

  const ok =
    sameBytes &&
    sameTokens &&
    heldTokens &&
    restored &&
    same(viaBuffer, single) &&
    same(viaFile, single) &&
    same(viaFileBytes, single);
  console.log(
    JSON.stringify({
      ok,
      promptTokens: prompt.length,
      stateBytes: saved.bytes,
      fileBytes: fileSize,
      sameBytes,
      sameTokens,
      heldTokens,
      restored,
      single: single.join(','),
      viaBuffer: viaBuffer.join(','),
      viaFile: viaFile.join(','),
      viaFileBytes: viaFileBytes.join(','),
    }),
  );
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
  await Promise.all(contexts.map((x) => x.dispose()));
  await model.dispose();
  await llama.dispose();
}
