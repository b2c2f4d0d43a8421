import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LlamaModel } from 'node-llama-cpp';
import { parseCompletionBody } from '../../core/openai-api.ts';
import type { FinishReason, GenerationUsage } from '../backend.ts';
import type { VllmSampling } from '../vllm-extras.ts';
import {
  firstStop,
  heldBackLength,
  LlamaBackend,
  LlamaRuntime,
  llamaSeed,
  loadModelAndContext,
  modelContextMax,
  pickSlot,
} from './llama-backend.ts';
import {
  ensureSizedLlamaGguf,
  ensureTinyLlamaGguf,
  sizedLlamaShape,
  TINY_LLAMA_SHAPE,
  writeLlamaGguf,
} from './tiny-gguf.ts';

describe('stop strings', () => {
  test('heldBackLength keeps the longest suffix that may start a stop string', () => {
    assert.equal(heldBackLength('hello wor', ['world']), 3);
    assert.equal(heldBackLength('hello', ['world']), 0);
    assert.equal(heldBackLength('abc##', ['###', 'c#']), 2);
    assert.equal(heldBackLength('x', []), 0);
    assert.equal(heldBackLength('xa', ['ab']), 1);
    // Only proper prefixes are held: a whole stop string is firstStop's to find.
    assert.equal(heldBackLength('ab', ['ab']), 0);
  });

  test('firstStop finds the earliest of several stop strings, and which', () => {
    assert.deepEqual(firstStop('one two three', ['three', 'two']), { at: 4, stop: 'two' });
    assert.equal(firstStop('one two', ['four']), undefined);
    assert.equal(firstStop('abc', ['']), undefined);
  });
});

describe('pickSlot', () => {
  const slot = (busy: boolean, releasedAt: number, shared: number) => ({ busy, releasedAt, shared });
  const by = (s: { shared: number }) => s.shared;

  test('takes the longest shared prefix when it reaches reuseMin', () => {
    const slots = [slot(false, 1, 20), slot(false, 2, 40), slot(true, 0, 90)];
    assert.equal(pickSlot(slots, by, 16)?.slot, slots[1]);
  });

  test('ties go to the least recently used', () => {
    const slots = [slot(false, 5, 30), slot(false, 3, 30)];
    assert.equal(pickSlot(slots, by, 16)?.slot, slots[1]);
  });

  test('a short match does not evict a cached prefix while an older slot is free', () => {
    const slots = [slot(false, 7, 1), slot(false, 0, 0)];
    const pick = pickSlot(slots, by, 16);
    assert.equal(pick?.slot, slots[1]);
    assert.equal(pick?.shared, 0);
  });

  test('undefined when every slot is busy', () => {
    assert.equal(pickSlot([slot(true, 0, 50)], by, 16), undefined);
  });
});

interface Outcome {
  text: string;
  chunks: number;
  tokens: number;
  reason: FinishReason | 'error';
  /** The stop string or token id the backend names (vLLM's stop_reason). */
  stopReason?: string | number | undefined;
  usage: GenerationUsage | undefined;
  error: (Error & { status?: number; code?: string }) | undefined;
}

/** Runs one generation to its end. `onChunk` sees each chunk (to abort mid-way). */
function run(
  backend: LlamaBackend,
  body: Record<string, unknown>,
  options: {
    kind?: 'chat' | 'completion';
    signal?: AbortSignal;
    onChunk?: (text: string) => void;
    sampling?: VllmSampling;
  } = {},
): Promise<Outcome> {
  const kind = options.kind ?? 'completion';
  const request = parseCompletionBody(kind, { model: backend.modelId, ...body });
  const out: Outcome = {
    text: '',
    chunks: 0,
    tokens: 0,
    reason: 'error',
    usage: undefined,
    error: undefined,
  };
  return new Promise((resolve) => {
    backend.generate(
      {
        id: `t${Math.random()}`,
        request,
        signal: options.signal ?? new AbortController().signal,
        ...(options.sampling === undefined ? {} : { sampling: options.sampling }),
      },
      {
        onText(text, tokens) {
          out.text += text;
          out.tokens += tokens;
          out.chunks++;
          options.onChunk?.(text);
        },
        onFinish(reason, usage, stopReason) {
          out.reason = reason;
          out.stopReason = stopReason;
          out.usage = usage;
          resolve(out);
        },
        onError(error) {
          out.error = error;
          resolve(out);
        },
      },
    );
  });
}

const LONG =
  'Switchyard routes each request to the engine that already holds its prefix, so the prompt is not ' +
  'computed twice. This paragraph is the shared system prompt of several requests in this test. ';

describe('LlamaBackend on the tiny model', { timeout: 120_000 }, () => {
  let dir: string;
  let backend: LlamaBackend;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sy-llama-'));
    const modelPath = ensureTinyLlamaGguf(join(dir, 'tiny.gguf'));
    backend = await LlamaBackend.open({ modelPath, sequences: 2, maxWaiting: 2, contextSize: 512 });
  });

  after(async () => {
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a completion generates max_tokens tokens with usage', async () => {
    assert.equal(backend.modelId, 'tiny');
    const out = await run(backend, { prompt: 'Hello there, model.', max_tokens: 12, temperature: 0 });
    assert.equal(out.error, undefined);
    assert.equal(out.reason, 'length');
    assert.equal(out.usage?.completionTokens, 12);
    assert.equal(out.tokens, 12);
    assert.ok(out.text.length > 0);
    assert.ok((out.usage?.promptTokens ?? 0) > 5);
  });

  test('a prompt extending a cached one reuses its tokens', async () => {
    const before = backend.signals();
    const first = await run(backend, { prompt: LONG, max_tokens: 4, temperature: 0 });
    const second = await run(backend, { prompt: `${LONG}And one more line.`, max_tokens: 4, temperature: 0 });
    assert.equal(first.usage?.cachedTokens, 0);
    // Every token of the first prompt is still in the sequence's KV.
    assert.equal(second.usage?.cachedTokens, first.usage?.promptTokens);
    const after = backend.signals();
    assert.equal(after.prefixHitsTokens - before.prefixHitsTokens, second.usage?.cachedTokens);
    assert.equal(
      after.prefixQueriesTokens - before.prefixQueriesTokens,
      (first.usage?.promptTokens ?? 0) + (second.usage?.promptTokens ?? 0),
    );
  });

  test('the same seed gives the same text; greedy is deterministic too', async () => {
    const body = { prompt: 'Tell me a story.', max_tokens: 16, temperature: 1, seed: 42 };
    const a = await run(backend, body);
    const b = await run(backend, body);
    assert.equal(a.text, b.text);
    const g1 = await run(backend, { prompt: 'Greedy.', max_tokens: 10, temperature: 0 });
    const g2 = await run(backend, { prompt: 'Greedy.', max_tokens: 10, temperature: 0 });
    assert.equal(g1.text, g2.text);
  });

  test("top_k absent samples from every token, as vLLM's default (not node-llama-cpp's 40)", async () => {
    const body = { prompt: 'Tell me a story.', max_tokens: 48, temperature: 1.5, seed: 3 };
    const absent = await run(backend, body);
    const all = await run(backend, body, { sampling: { topK: 0 } });
    const top40 = await run(backend, body, { sampling: { topK: 40 } });
    assert.notEqual(all.text, top40.text, 'the seed must sample past the 40 likeliest tokens');
    assert.equal(absent.text, all.text);
  });

  test('a stop string ends the text before it, with finish reason stop', async () => {
    const body = { prompt: 'Count: one two three', max_tokens: 24, temperature: 1, seed: 7 };
    const free = await run(backend, body);
    assert.ok(
      free.text.length >= 8,
      `text too short to pick a stop string from: ${JSON.stringify(free.text)}`,
    );
    const stop = free.text.slice(5, 7);
    const expected = free.text.slice(0, free.text.indexOf(stop));
    const stopped = await run(backend, { ...body, stop: [stop, 'never-appears-here'] });
    assert.equal(stopped.reason, 'stop');
    assert.equal(stopped.stopReason, stop, 'the matched stop string is named, as vLLM names it');
    assert.equal(stopped.text, expected);
    assert.ok((stopped.usage?.completionTokens ?? 0) < 24);
  });

  test('a chat request generates after the canonical rendering', async () => {
    const out = await run(
      backend,
      { messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, temperature: 0 },
      { kind: 'chat' },
    );
    assert.equal(out.reason, 'length');
    assert.equal(out.usage?.completionTokens, 5);
  });

  test('token-id prompts are used as given; ids outside the vocabulary are refused', async () => {
    const ok = await run(backend, { prompt: [72, 101, 108, 108, 111], max_tokens: 3, temperature: 0 });
    assert.equal(ok.usage?.promptTokens, 5);
    const bad = await run(backend, { prompt: [1, 99_999], max_tokens: 3 });
    assert.equal(bad.error?.code, 'SY_ERR_INVALID_ARGUMENT');
  });

  test('a prompt plus max_tokens past the context is refused with 400', async () => {
    const out = await run(backend, { prompt: 'x', max_tokens: 100_000 });
    assert.equal(out.error?.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(out.error?.status, 400);
    assert.equal((out.error as { details?: { param?: string } }).details?.param, 'max_tokens');
  });

  test("the context 400 names the chat client's max_completion_tokens, not max_tokens", async () => {
    const body = { messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 100_000 };
    const out = await run(backend, body, { kind: 'chat' });
    assert.equal(out.error?.status, 400);
    assert.equal((out.error as { details?: { param?: string } }).details?.param, 'max_completion_tokens');
    assert.match(out.error?.message ?? '', /plus max_completion_tokens 100000 exceed the context/);
  });

  test('an abort ends the generation early with finish reason abort', async () => {
    const controller = new AbortController();
    const out = await run(
      backend,
      { prompt: 'Abort me.', max_tokens: 400, temperature: 1 },
      { signal: controller.signal, onChunk: () => controller.abort() },
    );
    assert.equal(out.reason, 'abort');
    assert.ok((out.usage?.completionTokens ?? 400) < 400);
  });

  test('more requests than sequences wait, past the bound they are refused, all others complete', async () => {
    const peak = { running: 0, waiting: 0 };
    const runs = [0, 1, 2, 3].map((i) =>
      run(backend, { prompt: `Request number ${i} of four.`, max_tokens: 40, temperature: 1, seed: i }),
    );
    const s = backend.signals();
    peak.running = Math.max(peak.running, s.running);
    peak.waiting = Math.max(peak.waiting, s.waiting);
    const refused = await run(backend, { prompt: 'one too many', max_tokens: 4 });
    const outs = await Promise.all(runs);
    assert.equal(peak.running, 2);
    assert.equal(peak.waiting, 2);
    assert.equal(refused.error?.code, 'SY_ERR_OVERLOADED');
    for (const out of outs) {
      assert.equal(out.reason, 'length');
      assert.equal(out.usage?.completionTokens, 40);
    }
    assert.equal(backend.signals().running, 0);
  });
});

describe('LlamaBackend.open', { timeout: 60_000 }, () => {
  let dir: string;
  let good: Buffer;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sy-llama-bad-'));
    good = readFileSync(ensureTinyLlamaGguf(join(dir, 'tiny.gguf')));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const opening = async (name: string, bytes: Buffer | string | undefined) => {
    const path = join(dir, name);
    if (bytes !== undefined) writeFileSync(path, bytes);
    const lines: string[] = [];
    let error: (Error & { code?: string; param?: string }) | undefined;
    try {
      await (await LlamaBackend.open({ modelPath: path, log: (l) => lines.push(l) })).close();
    } catch (e) {
      error = e as Error;
    }
    return { error, lines };
  };

  test('a missing file, a non-GGUF file and a header with impossible counts fail before loading', async () => {
    for (const [name, bytes, why] of [
      ['missing.gguf', undefined, /ENOENT/],
      ['text.gguf', 'GGUF not really', /no GGUF header/],
      ['cut.gguf', good.subarray(0, 100), /do not fit in 100 bytes/],
    ] as const) {
      const { error } = await opening(name, bytes);
      assert.equal(error?.code, 'SY_ERR_INVALID_ARGUMENT', name);
      assert.match(error?.message ?? '', new RegExp(`${name}.*expected a GGUF model file`));
      assert.match(error?.message ?? '', why);
    }
  });

  test('a truncated model fails with one invalid-argument error naming it', async () => {
    // (That nothing else is printed is checked on a fresh process in test/e2e/engine-llama.test.ts:
    // llama.cpp's log hook is per process, and this process has loaded a model before.)
    const { error } = await opening('half.gguf', good.subarray(0, good.length >> 1));
    assert.equal(error?.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(error?.message ?? '', /half\.gguf could not be loaded: /);
  });
});

describe('LlamaBackend on a sized random-weight model', { timeout: 120_000 }, () => {
  test('a wider, deeper model loads, generates printable text, and marks its start-up stages', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-llama-sized-'));
    const backend = await LlamaBackend.open({
      modelPath: ensureSizedLlamaGguf(join(dir, 'sized.gguf'), sizedLlamaShape(6e6)),
      sequences: 1,
      contextSize: 256,
    });
    try {
      const out = await run(backend, { prompt: 'Hello there, model.', max_tokens: 24, seed: 5 });
      assert.equal(out.reason, 'length');
      assert.equal(out.usage?.completionTokens, 24);
      assert.match(out.text, /^[\x20-\x7e]+$/, JSON.stringify(out.text));
      const report = backend.startupReport();
      // Not listening (no server here): stages up to the context, and the first token.
      assert.deepEqual(Object.keys(report.stageEndS), ['binding', 'weights', 'context']);
      assert.ok((report.stageEndS.context ?? 0) <= (report.firstTokenS ?? 0));
      assert.equal(report.readyS, undefined);
      assert.match(backend.extraMetricsText(), /switchyard:engine_startup_first_token_seconds\{/);
    } finally {
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a wake whose context cannot be created', { timeout: 60_000 }, () => {
  test('frees the model it loaded and passes the error on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-llama-wake-'));
    const runtime = await LlamaRuntime.start({ log: () => {} });
    try {
      const modelPath = ensureTinyLlamaGguf(join(dir, 'tiny.gguf'));
      let loaded: LlamaModel | undefined;
      let failContext = true;
      // The real loader, noting the model it hands out. The first model's context creation fails as
      // an out-of-memory one does (a real 2^30-token context takes the allocator 30 s to refuse on
      // this machine, and over a minute under load); disposing it stays the real runtime's.
      const llama = {
        loadModel: async (options: Parameters<typeof runtime.llama.loadModel>[0]) => {
          loaded = await runtime.llama.loadModel(options);
          if (failContext) {
            failContext = false;
            loaded.createContext = async () => {
              throw new Error('std::bad_alloc: no memory for the context');
            };
          }
          return loaded;
        },
      };
      const error = await loadModelAndContext(llama, {
        loadOptions: { modelPath, gpuLayers: 0 },
        contextOptions: { contextSize: 256 },
      }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(error instanceof Error, 'the wake fails');
      assert.equal(loaded?.disposed, true, 'the model loaded for it is freed');
      // A context that fits comes up on a fresh load, the model kept.
      const ok = await loadModelAndContext(llama, {
        loadOptions: { modelPath, gpuLayers: 0 },
        contextOptions: { contextSize: 256 },
      });
      assert.equal(ok.model.disposed, false);
      await ok.context.dispose();
      await ok.model.dispose();
    } finally {
      await runtime.llama.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('modelContextMax', () => {
  test('is the training context without scaling, or with a type or factor that extends nothing', () => {
    assert.equal(modelContextMax(4096, undefined), 4096);
    assert.equal(modelContextMax(4096, {}), 4096);
    assert.equal(modelContextMax(4096, { scaling: { type: 'none', factor: 4 } }), 4096);
    assert.equal(modelContextMax(4096, { scaling: { type: 'longrope', factor: 4 } }), 4096);
    assert.equal(modelContextMax(4096, { scaling: { type: 'yarn', factor: 1 } }), 4096);
  });

  test("reaches the factor times the training context (YaRN: its original context's)", () => {
    assert.equal(
      modelContextMax(32_768, { scaling: { type: 'yarn', factor: 4, original_context_length: 32_768 } }),
      131_072,
    );
    assert.equal(modelContextMax(4096, { scaling: { type: 'yarn', factor: 2 } }), 8192);
    assert.equal(modelContextMax(2048, { scaling: { type: 'linear', factor: 2 } }), 4096);
    // A factor with no type is linear in llama.cpp, as is the older scale_linear key.
    assert.equal(modelContextMax(2048, { scaling: { factor: 4 } }), 8192);
    assert.equal(modelContextMax(2048, { scale_linear: 2 }), 4096);
  });
});

describe('ignore_eos on a model whose greedy answer is end-of-generation at once', {
  timeout: 120_000,
}, () => {
  let dir: string;
  let backend: LlamaBackend;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sy-llama-eos-'));
    const modelPath = join(dir, 'eos.gguf');
    writeLlamaGguf(modelPath, { ...TINY_LLAMA_SHAPE, eosBias: 20 });
    backend = await LlamaBackend.open({ modelPath, sequences: 1, maxWaiting: 2, contextSize: 256 });
  });

  after(async () => {
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('without it the generation ends at the EOS token; with it, it runs to max_tokens', async () => {
    const body = { prompt: 'Hello there, model.', max_tokens: 8, temperature: 0 };
    const ended = await run(backend, body);
    assert.equal(ended.error, undefined);
    assert.equal(ended.reason, 'stop');
    assert.equal(ended.stopReason, undefined, 'an EOS end names no stop string');
    assert.equal(ended.usage?.completionTokens, 0);
    const ignored = await run(backend, body, { sampling: { ignoreEos: true } });
    assert.equal(ignored.error, undefined);
    assert.equal(ignored.reason, 'length');
    assert.equal(ignored.usage?.completionTokens, 8);
    assert.equal(ignored.tokens, 8, 'every generated token is reported, EOS ones too');
    // As vLLM streams them: the EOS token's text is "" (special tokens are not rendered, vLLM's
    // skip_special_tokens default), and each token is still its own delta, so a streaming client
    // sees one empty-content chunk per EOS token, each counted in usage (vLLM drops a delta only
    // when it has neither text nor token ids, serving_chat.py / serving_completion.py).
    assert.equal(ignored.text, '');
    assert.equal(ignored.chunks, 8, 'one delta per generated token, EOS ones included');
    // Sampled, too: every step may draw the EOS token and the generation goes on.
    const sampled = await run(
      backend,
      { ...body, temperature: 1, seed: 5, max_tokens: 32 },
      { sampling: { ignoreEos: true } },
    );
    assert.equal(sampled.usage?.completionTokens, 32);
  });
});

test('llamaSeed: every safe integer maps into [0, 2^32 - 2], negatives apart, 0xFFFFFFFF never', () => {
  assert.equal(llamaSeed(0), 0);
  assert.equal(llamaSeed(7), 7);
  assert.equal(llamaSeed(-1), 2 ** 32 - 2);
  assert.equal(llamaSeed(-2), 2 ** 32 - 3);
  assert.equal(llamaSeed(2 ** 32 - 1), 0);
  for (const seed of [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 32, -(2 ** 40) + 3]) {
    const s = llamaSeed(seed);
    assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32 - 1, `${seed} -> ${s}`);
  }
});
