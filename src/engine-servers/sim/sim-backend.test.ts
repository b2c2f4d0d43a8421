import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import type { KvEvent } from '../../core/kv-events.ts';
import { parseCompletionBody } from '../../core/openai-api.ts';
import { textPrefixChain } from '../../core/text-prefix.ts';
import { engineBlockHashes } from '../../engine-core/prefix.ts';
import { gpuSpec } from '../../model/gpus.ts';
import { kvBlocksThatFit } from '../../model/kv.ts';
import { modelSpec } from '../../model/models.ts';
import { perfModelFor } from '../../model/perf.ts';
import type { PerfModel } from '../../model/types.ts';
import type { FinishReason, GenerationSink, GenerationUsage } from '../backend.ts';
import { parseResponsesBody } from '../responses.ts';
import { fillerToken, findStopCut, SimBackend, type SimBackendOptions } from './sim-backend.ts';

const MODEL = 'sim-test';

/** The catalogue's model with every step lasting `stepMs`. */
function fixedStepPerf(stepMs: number): PerfModel {
  const base = perfModelFor('h100', 'llama-3.1-8b', 1);
  return {
    gpu: base.gpu,
    model: base.model,
    tp: base.tp,
    stepTimeMs: () => stepMs,
    prefillTimeMs: () => stepMs,
    decodeStepTimeMs: () => stepMs,
    kvBytesPerToken: () => base.kvBytesPerToken(),
    weightBytes: () => base.weightBytes(),
  };
}

function backend(options: Partial<SimBackendOptions> = {}): SimBackend {
  return new SimBackend({
    modelId: MODEL,
    gpu: 'h100',
    model: 'llama-3.1-8b',
    tp: 1,
    timeScale: 0.05,
    ...options,
  });
}

interface Outcome {
  text: string;
  chunks: number;
  tokens: number;
  reason?: FinishReason;
  usage?: GenerationUsage;
  error?: Error & { status?: number };
  firstTextMs?: number;
  endMs: number;
}

/** Runs one generation to its end. */
function generate(
  b: SimBackend,
  prompt: string,
  maxTokens: number,
  signal: AbortSignal = new AbortController().signal,
  onText?: (o: Outcome) => void,
  extra: Record<string, unknown> = {},
): Promise<Outcome> {
  const request = parseCompletionBody('completion', {
    model: MODEL,
    prompt,
    ...(maxTokens > 0 ? { max_tokens: maxTokens } : {}),
    ...extra,
  });
  return new Promise((resolve) => {
    const o: Outcome = { text: '', chunks: 0, tokens: 0, endMs: 0 };
    const sink: GenerationSink = {
      onText(text, tokens) {
        o.firstTextMs ??= performance.now();
        o.text += text;
        o.chunks++;
        o.tokens += tokens;
        onText?.(o);
      },
      onFinish(reason, usage) {
        o.reason = reason;
        o.usage = usage;
        o.endMs = performance.now();
        resolve(o);
      },
      onError(error) {
        o.error = error;
        o.endMs = performance.now();
        resolve(o);
      },
    };
    b.generate({ id: `r${Math.random()}`, request, signal }, sink);
  });
}

test("unset batch limits take vllm serve's defaults for --gpu (they size the KV); explicit flags win", () => {
  const blocks = (gpu: string, engine: SimBackendOptions['engine'] = {}) =>
    backend({ gpu, engine }).engine.kvBlocksTotal;
  const fit = (gpu: string, maxNumSeqs: number, maxNumBatchedTokens: number) =>
    kvBlocksThatFit(gpuSpec(gpu), modelSpec('llama-3.1-8b'), 1, 0.9, 16, { maxNumSeqs, maxNumBatchedTokens });
  assert.equal(blocks('h100'), fit('h100', 1024, 8192));
  assert.equal(blocks('a100-80gb'), fit('a100-80gb', 256, 2048));
  assert.equal(blocks('h100', { maxNumSeqs: 256 }), fit('h100', 256, 8192));
  // The 1024-sequence sampler warm-up leaves less KV than 256 sequences do: the default is not a no-op.
  assert.ok(blocks('h100') < blocks('h100', { maxNumSeqs: 256 }));
});

test('a generation streams exactly max_tokens deterministic tokens, one per step, and ends with length', async () => {
  const b = backend();
  const prompt = 'x'.repeat(400);
  const o = await generate(b, prompt, 12);
  assert.equal(o.reason, 'length');
  assert.equal(o.tokens, 12);
  assert.equal(o.chunks, 12, 'one delivery per decode step');
  assert.deepEqual(o.usage, { promptTokens: 100, completionTokens: 12, cachedTokens: 0 });
  // The filler is a function of the request id: 12 words, each from the vocabulary.
  const words = o.text.split(' ').slice(1);
  assert.equal(words.length, 12);
  assert.equal(fillerToken(7, 3), fillerToken(7, 3));
  const s = b.signals();
  assert.equal(s.running, 0);
  assert.equal(s.waiting, 0);
  assert.equal(s.generationTokensTotal, 12);
  assert.equal(s.promptTokensTotal, 100);
  b.engine.checkInvariants();
  await b.close();
});

test('a shared prefix is served from the cache and reported as cached tokens and prefix hits', async () => {
  const events: KvEvent[] = [];
  const b = backend({
    kvEvents: {
      publish: (batch, _ts, blockSize) => {
        assert.equal(blockSize, 16);
        events.push(...batch);
      },
    },
  });
  const shared = 'The quick brown fox jumps over the lazy dog. '.repeat(40);
  const first = await generate(b, `${shared} first question`, 4);
  assert.equal(first.usage?.cachedTokens, 0);
  const second = await generate(b, `${shared} another question entirely`, 4);
  const sharedBlocks = Math.floor(shared.length / 64);
  assert.ok(second.usage!.cachedTokens >= (sharedBlocks - 1) * 16, `cached ${second.usage?.cachedTokens}`);
  const s = b.signals();
  assert.equal(s.prefixHitsTokens, second.usage!.cachedTokens);
  assert.equal(s.prefixQueriesTokens, first.usage!.promptTokens + second.usage!.promptTokens);
  // The first request's stored blocks are the engine hashes of its text prefix chain, in order.
  const firstPrompt = `${shared} first question`;
  const expected = engineBlockHashes(textPrefixChain(firstPrompt), Math.ceil(firstPrompt.length / 4), 16);
  const stored = events.flatMap((e) => (e.type === 'BlockStored' ? e.hashes : []));
  assert.deepEqual(stored.slice(0, expected.length), expected);
  await b.close();
});

test('steps take the modelled time scaled by timeScale, and an idle engine takes no steps', async () => {
  const b = backend({ perf: fixedStepPerf(20), timeScale: 0.5 });
  const start = performance.now();
  const o = await generate(b, 'hello world', 10);
  const wallMs = o.endMs - start;
  // Ten steps of 20 model ms at half speed: at least 100 ms of wall time.
  assert.ok(wallMs >= 95, `took ${wallMs} ms`);
  const steps = b.engine.steps;
  assert.equal(steps, 10);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(b.engine.steps, steps, 'no steps while idle');
  await b.close();
});

test('concurrent requests share steps: the batch takes about as long as one', async () => {
  const b = backend({ perf: fixedStepPerf(10), timeScale: 1 });
  const start = performance.now();
  const all = await Promise.all(Array.from({ length: 8 }, (_, i) => generate(b, `prompt ${i}`, 20)));
  for (const o of all) assert.equal(o.tokens, 20);
  // 20 steps of 10 ms for all eight together, not 160 steps.
  assert.equal(b.engine.steps, 20);
  assert.ok(performance.now() - start >= 190);
  await b.close();
});

test('an abort frees the sequence and ends it with abort', async () => {
  const b = backend({ perf: fixedStepPerf(5), timeScale: 1 });
  const controller = new AbortController();
  const o = await generate(b, 'abort me please', 1000, controller.signal, (p) => {
    if (p.tokens === 3) controller.abort();
  });
  assert.equal(o.reason, 'abort');
  assert.equal(o.usage?.completionTokens, 3);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(b.signals().running, 0);
  assert.equal(b.signals().kvUsage, 0);
  b.engine.checkInvariants();
  // The engine goes on serving.
  const next = await generate(b, 'after', 3);
  assert.equal(next.tokens, 3);
  await b.close();
});

test('a request whose KV can never fit is refused with 400 naming max_tokens', async () => {
  const b = backend({ engine: { numGpuBlocksOverride: 4 } });
  const o = await generate(b, 'x'.repeat(200), 100);
  assert.equal(o.error?.status, 400);
  assert.match(o.error!.message, /max_tokens/);
  assert.equal(b.signals().waiting, 0);
  await b.close();
});

test('the KV-capacity 400 names the limit field the client sent: max_completion_tokens, max_output_tokens, max_tokens', async () => {
  const b = backend({ engine: { numGpuBlocksOverride: 4 } });
  const prompt = 'x'.repeat(200);
  const refusal = (request: ReturnType<typeof parseCompletionBody>) =>
    new Promise<(Error & { details?: { param?: string } }) | undefined>((resolve) => {
      b.generate(
        { id: `kv${Math.random()}`, request, signal: new AbortController().signal },
        { onText() {}, onFinish: () => resolve(undefined), onError: (error) => resolve(error) },
      );
    });
  const chat = (body: Record<string, unknown>) =>
    parseCompletionBody('chat', { model: MODEL, messages: [{ role: 'user', content: prompt }], ...body });
  const cases: [ReturnType<typeof parseCompletionBody>, string][] = [
    [chat({ max_completion_tokens: 100 }), 'max_completion_tokens'],
    [chat({ max_completion_tokens: 100, max_tokens: 5 }), 'max_completion_tokens'],
    [chat({ max_tokens: 100 }), 'max_tokens'],
    [parseResponsesBody({ model: MODEL, input: prompt, max_output_tokens: 100 }), 'max_output_tokens'],
    [parseCompletionBody('completion', { model: MODEL, prompt, max_tokens: 100 }), 'max_tokens'],
  ];
  for (const [request, field] of cases) {
    const error = await refusal(request);
    assert.equal((error as { status?: number } | undefined)?.status, 400, field);
    assert.equal(error?.details?.param, field);
    assert.match(error!.message, new RegExp(`^invalid ${field} '100'`));
  }
  assert.equal(b.signals().waiting, 0);
  await b.close();
});

test('close ends pending generations with an error and refuses new ones', async () => {
  const b = backend({ perf: fixedStepPerf(50), timeScale: 1 });
  const pending = generate(b, 'long', 1000);
  await new Promise((r) => setTimeout(r, 20));
  await b.close();
  const o = await pending;
  assert.equal(o.error?.status, 503);
  const late = await generate(b, 'late', 2);
  assert.equal(late.error?.status, 503);
});

test('an invalid time scale is refused', () => {
  assert.throws(() => backend({ timeScale: 0 }), /timeScale/);
  assert.throws(() => backend({ gpu: 'nope' }), /unknown gpu 'nope'/);
});

const never = new AbortController().signal;

test('a stop string cuts the text before it, ends with stop, and the core models only the tokens up to it', async () => {
  const b = backend();
  const full = await generate(b, 'stop me', 64, never, undefined, { seed: 5 });
  assert.equal(full.reason, 'length');
  // A stop string spanning filler tokens 10 and 11 (the filler is the same for the same seed).
  const words = full.text.split(' ').slice(1);
  const stop = ` ${words[10]} ${words[11]}`;
  const at = full.text.indexOf(stop);
  const o = await generate(b, 'stop me', 64, never, undefined, { seed: 5, stop: ['never-there', stop] });
  assert.equal(o.reason, 'stop');
  assert.equal(o.text, full.text.slice(0, at));
  assert.ok(!o.text.includes(stop));
  assert.ok((o.usage?.completionTokens ?? 0) <= 12, `tokens up to the stop: ${o.usage?.completionTokens}`);
  assert.equal(o.usage?.completionTokens, o.tokens);
  assert.equal(b.signals().generationTokensTotal, 64 + o.tokens);
  b.engine.checkInvariants();
  await b.close();
});

test('findStopCut finds a stop string across token boundaries and ignores empty ones', () => {
  let text = '';
  for (let i = 0; i < 50; i++) text += fillerToken(9, i);
  const stop = text.slice(37, 45);
  const cut = findStopCut(9, 50, ['', stop]);
  assert.equal(cut?.chars, text.indexOf(stop));
  assert.equal(cut?.stop, stop, 'the stop string matched (vLLM stop_reason)');
  let upTo = '';
  for (let i = 0; i < (cut?.tokens ?? 0); i++) upTo += fillerToken(9, i);
  assert.ok(
    upTo.includes(stop) && !upTo.slice(0, -fillerToken(9, (cut?.tokens ?? 1) - 1).length).includes(stop),
  );
  assert.equal(findStopCut(9, 50, ['']), undefined);
  assert.equal(findStopCut(9, 50, ['not a filler word']), undefined);
});

test('findStopCut with minTokens (vLLM min_tokens) ignores stops that end before that many tokens', () => {
  let text = '';
  const ends: number[] = [];
  for (let i = 0; i < 80; i++) {
    text += fillerToken(9, i);
    ends.push(text.length);
  }
  // A one-character stop that occurs early and again later.
  const stop = text[ends[0] as number] as string;
  const first = findStopCut(9, 80, [stop]);
  assert.ok(first !== undefined && first.tokens < 20, JSON.stringify(first));
  const min = first.tokens + 3;
  const held = findStopCut(9, 80, [stop], min);
  assert.ok(
    held !== undefined && held.tokens > min,
    `the stop waits for min_tokens: ${held?.tokens} > ${min}`,
  );
  // The cut is the first occurrence ending within a token past min_tokens, not an earlier one.
  assert.equal(held.chars, text.indexOf(stop, (ends[min - 1] as number) - stop.length + 1));
  assert.deepEqual(findStopCut(9, 80, [stop], 0), first, 'minTokens 0 changes nothing');
  assert.equal(findStopCut(9, 10, [stop], 10), undefined, 'min_tokens = max_tokens: no stop can end it');
});

test('the same seed or temperature 0 gives the same text; without them each request differs', async () => {
  const b = backend();
  const run = (extra: Record<string, unknown>, prompt = 'same prompt') =>
    generate(b, prompt, 16, never, undefined, extra).then((o) => o.text);
  const [s1, s2, s3, t1, t2, r1, r2] = await Promise.all([
    run({ seed: 42 }),
    run({ seed: 42 }),
    run({ seed: 43 }),
    run({ temperature: 0 }),
    run({ temperature: 0 }),
    run({}),
    run({}),
  ]);
  assert.equal(s1, s2);
  assert.notEqual(s1, s3);
  assert.equal(t1, t2);
  assert.notEqual(r1, r2);
  assert.notEqual(await run({ seed: 42 }, 'another prompt'), s1, 'the prompt is part of the seed');
  await b.close();
});

test("a prompt plus max_tokens past the model's context length is refused with 400; without max_tokens the output fits", async () => {
  const b = backend();
  const prompt = 'x'.repeat(187_500 * 4);
  const o = await generate(b, prompt, 200_000);
  assert.equal(o.error?.status, 400);
  assert.match(
    o.error?.message ?? '',
    /maximum context length is 131072 tokens.*387500 \(187500 in the prompt, 200000/,
  );
  assert.equal((o.error as { details?: { param?: string } }).details?.param, 'prompt');
  const near = await generate(b, 'x'.repeat(131_000 * 4), 100);
  assert.equal(near.error?.status, 400);
  assert.equal((near.error as { details?: { param?: string } }).details?.param, 'max_tokens');
  // No max_tokens: what the context leaves (72 tokens), not the default 256.
  const fits = await generate(b, 'x'.repeat(131_000 * 4), 0);
  assert.equal(fits.error, undefined);
  assert.equal(fits.usage?.completionTokens, 72);
  await b.close();
});

test('the context-length 400 names the limit field the client sent: max_completion_tokens, max_output_tokens, max_tokens', () => {
  const b = backend();
  const prompt = 'x'.repeat(131_000 * 4);
  const messages = [{ role: 'user', content: prompt }];
  const blamed = (request: ReturnType<typeof parseCompletionBody>): string | undefined => {
    try {
      b.outputTokensAllowed(request);
    } catch (error) {
      return (error as { details?: { param?: string } }).details?.param;
    }
    return undefined;
  };
  const chat = (body: Record<string, unknown>) =>
    parseCompletionBody('chat', { model: MODEL, messages, ...body });
  assert.equal(blamed(chat({ max_completion_tokens: 100 })), 'max_completion_tokens');
  assert.equal(blamed(chat({ max_completion_tokens: 100, max_tokens: 5 })), 'max_completion_tokens');
  assert.equal(blamed(chat({ max_tokens: 100 })), 'max_tokens');
  assert.equal(
    blamed(parseResponsesBody({ model: MODEL, input: prompt, max_output_tokens: 100 })),
    'max_output_tokens',
  );
  assert.equal(
    blamed(parseCompletionBody('completion', { model: MODEL, prompt, max_tokens: 100 })),
    'max_tokens',
  );
});

test("exportKv keeps a finished request's blocks in the pool until releaseExport (the P/D prefill side)", async () => {
  const b = backend({ engine: { numGpuBlocksOverride: 8 } });
  const request = parseCompletionBody('completion', { model: MODEL, prompt: 'x'.repeat(300), max_tokens: 1 });
  let coreId: string | undefined;
  const finished = new Promise<FinishReason>((resolve, reject) =>
    b.generate(
      { id: 'cmpl-leg', request, signal: new AbortController().signal },
      { onText() {}, onFinish: (reason) => resolve(reason), onError: reject },
      undefined,
      (id) => {
        coreId = id;
      },
    ),
  );
  assert.equal(await finished, 'length');
  assert.ok(coreId !== undefined, 'the hook named the core request');
  const held = b.engine.kvBlocksUsed;
  assert.ok(held > 0, 'the finished leg still holds its blocks');
  assert.equal(b.exportHeldBlocks, held);
  // Another prompt needing more than the free blocks waits for the held ones.
  const other = generate(b, 'y'.repeat(300), 1);
  // The step its arrival kicked (queued first) found nothing it could admit: the core is idle.
  await new Promise((r) => setImmediate(r));
  const s = b.signals();
  assert.deepEqual([s.waiting, s.running, b.engine.busy], [1, 0, false], 'it waits behind the held KV');
  b.releaseExport(coreId);
  const o = await other;
  assert.equal(o.reason, 'length');
  assert.equal(b.exportHeldBlocks, 0);
  b.releaseExport(coreId);
  assert.equal(b.engine.kvBlocksUsed, 0, 'a second release frees nothing more');
  await b.close();
});

test("a request that set no limit ends 'stop' at the server's default; one that set a limit, or the context cut, ends 'length'", async () => {
  /** One chat generation's finish reason and output tokens. */
  const run = (b: SimBackend, body: Record<string, unknown>, noLimitSet: boolean) =>
    new Promise<[FinishReason | string, number]>((resolve) => {
      const request = parseCompletionBody('chat', {
        model: MODEL,
        messages: [{ role: 'user', content: 'x'.repeat(400) }],
        ...body,
      });
      b.generate(
        { id: `r${Math.random()}`, request, signal: never, ...(noLimitSet ? { noLimitSet } : {}) },
        {
          onText() {},
          onFinish: (reason, usage) => resolve([reason, usage.completionTokens]),
          onError: (error) => resolve([error.message, 0]),
        },
      );
    });
  const b = backend({ perf: fixedStepPerf(1) });
  assert.deepEqual(await run(b, {}, true), ['stop', 256], 'no limit set: the default reads as its own end');
  assert.deepEqual(await run(b, {}, false), ['length', 256], 'a backend caller that says nothing: length');
  assert.deepEqual(await run(b, { max_tokens: 256 }, false), ['length', 256], 'a limit set and reached');
  // A context that leaves 40 tokens after the prompt: the model's end, not the default.
  const promptTokens = parseCompletionBody('chat', {
    model: MODEL,
    messages: [{ role: 'user', content: 'x'.repeat(400) }],
  }).promptTokens;
  const base = fixedStepPerf(1);
  const narrow = backend({
    perf: { ...base, model: { ...base.model, contextTokensMax: promptTokens + 40 } },
  });
  assert.deepEqual(await run(narrow, {}, true), ['length', 40], 'cut by the context');
  // A structured answer cut at the default is unfinished JSON: still length.
  const request = parseCompletionBody('chat', { model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
  const cut = await new Promise<FinishReason>((resolve, reject) =>
    b.generate(
      {
        id: 'structured',
        request: { ...request, maxTokens: 1 },
        signal: never,
        noLimitSet: true,
        structured: {
          kind: 'json',
          schema: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] },
          anyObject: false,
          key: 'k',
          param: 'response_format',
        },
      },
      { onText() {}, onFinish: resolve, onError: reject },
    ),
  );
  assert.equal(cut, 'length');
});
