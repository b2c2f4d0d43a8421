/**
 * End-to-end: structured output, forced tool calls and vLLM's sampling fields through prefill/decode
 * pools of both built-in engines, against the same engine outside a pair (stop 35, task P). Four
 * pools behind `switchyard serve`: sim and llama (the tiny GGUF), each in vLLM's flow and SGLang's,
 * and a colocated sim and llama behind a gateway. Each request goes to a pool and to the colocated
 * engine of its kind, and the two answers must be the same: the same JSON under the schema (the
 * llama decode samples every output token itself, under the grammar, from the prefill's KV), the
 * same tool-call shape and finish reason, the same 400 with the same code and param. The decode
 * must have taken the prompt's KV from the prefill (sim: prompt tokens skipped; llama: states
 * imported, none prefilled locally).
 *
 * Found here: an SGLang llama prefill ran its one-token leg with the client's min_tokens, so a
 * request the colocated engine serves (min_tokens with ignore_eos) was refused 400 ("min_tokens ...
 * from 0 to max_tokens (1)"); and `n` > 1 or a prompt list on a P/D pool was refused saying the
 * built-in engines generate one choice per request, which the colocated engines no longer do.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  MODEL,
  REQUEST_DEADLINE_MS,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import { validatedJson } from './support/json-schema.ts';
import {
  LLAMA_MODEL,
  type LlamaEngine,
  startLlamaEngine,
  startLlamaGateway,
  stopLlamaEngines,
  tinyLlamaModel,
} from './support/llama.ts';
import { untilInService, writePdConfig } from './support/pd.ts';
import { startServe } from './support/serve.ts';
import { killAll } from './support/wait.ts';

type Protocol = 'vllm' | 'sglang';

/** One P/D pool behind a serve: its URL, and its prefill and decode engines' URLs. */
interface Pool {
  readonly url: string;
  readonly prefill: string;
  readonly decode: string;
}

/** Starts a prefill and a decode engine of `type` speaking `protocol`, and a serve over them. */
async function startPool(
  type: 'sim' | 'llama',
  protocol: Protocol,
  teardown: Teardown,
  children: ChildProcess[],
  dir: string,
): Promise<Pool> {
  let prefill: string;
  let decode: string;
  if (type === 'sim') {
    const engine = ['--time-scale', '0.05', '--kv-events', 'none', '--pd-protocol', protocol];
    prefill = (await startSims(1, [...engine, '--pd-role', 'prefill'], teardown)).engines[0]!.url;
    decode = (await startSims(1, [...engine, '--pd-role', 'decode', '--kv-link-gbps', '400'], teardown))
      .engines[0]!.url;
  } else {
    const flags = [
      '--model',
      tinyLlamaModel(),
      ...(protocol === 'sglang' ? ['--pd-protocol', 'sglang'] : []),
    ];
    const engines: LlamaEngine[] = [];
    teardown.add(() => stopLlamaEngines(engines));
    engines.push(await startLlamaEngine([...flags, '--pd-role', 'prefill']));
    engines.push(await startLlamaEngine([...flags, '--pd-role', 'decode']));
    [prefill, decode] = engines.map((e) => e.url) as [string, string];
  }
  const poolDir = mkdtempSync(join(dir, `${type}-${protocol}-`));
  const config = writePdConfig(
    poolDir,
    [
      { id: 'p0', url: prefill, role: 'prefill' },
      { id: 'd0', url: decode, role: 'decode' },
    ],
    { type, model: type === 'sim' ? MODEL : LLAMA_MODEL, protocol },
  );
  const serve = await startServe(['--config', config], children);
  await untilInService(serve.url, ['p0', 'd0']);
  return { url: serve.url, prefill, decode };
}

const setUp = fileSetUp(new Teardown(), ['simAlone', 'llamaAlone', 'pools'], async (teardown) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-pd-structured-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const children: ChildProcess[] = [];
  teardown.add(() => killAll(children));
  // One after another: started together (a dozen processes, most through tsx), the serves' start
  // guard ran out on a loaded machine.
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const simGw = await startTestGateway({ backends: [simBackend('s0', sims.engines[0]!, false)] }, teardown);
  const llama = await startLlamaGateway(teardown);
  const pools: Record<string, Pool> = {};
  for (const type of ['sim', 'llama'] as const)
    for (const protocol of ['vllm', 'sglang'] as const)
      pools[`${type}/${protocol}`] = await startPool(type, protocol, teardown, children, dir);
  return { simAlone: simGw.url, llamaAlone: llama.gw.url, pools };
});

/** Strings bounded so the random model's JSON closes soon. */
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    role: { enum: ['admin', 'user', 'guest'] },
    stars: { type: 'integer', minimum: 1, maximum: 5 },
  },
  required: ['name', 'role', 'stars'],
  additionalProperties: false,
} as const;
const WEATHER = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
  required: ['city', 'days'],
  additionalProperties: false,
} as const;
const SEARCH = {
  type: 'object',
  properties: { q: { type: 'string', maxLength: 8 } },
  required: ['q'],
  additionalProperties: false,
} as const;
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', parameters: WEATHER } },
  { type: 'function', function: { name: 'search', parameters: SEARCH } },
];
/** vLLM's required list: a JSON array of {name, parameters}, one alternative per tool. */
const REQUIRED_LIST = {
  type: 'array',
  minItems: 1,
  items: {
    anyOf: [
      {
        type: 'object',
        properties: { name: { const: 'get_weather' }, parameters: WEATHER },
        required: ['name', 'parameters'],
      },
      {
        type: 'object',
        properties: { name: { const: 'search' }, parameters: SEARCH },
        required: ['name', 'parameters'],
      },
    ],
  },
} as const;

/** A chat whose prompt fills a few KV blocks (so the KV hand-off moves something), greedy. */
const chatBody = (model: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  model,
  messages: [{ role: 'user', content: 'Describe a person as JSON, please. '.repeat(8) }],
  max_tokens: 200,
  seed: 7,
  temperature: 0,
  ...extra,
});

/** What a chat answered, its ids left out (they name the request, not the content). */
interface Outcome {
  readonly status: number;
  /** Non-streamed: the body without ids and timestamps; streamed: each choice's pieces in order. */
  readonly shape: unknown;
}

async function ask(url: string, body: Record<string, unknown>): Promise<Outcome> {
  const r = await fetch(`${url}/v1/${'prompt' in body ? 'completions' : 'chat/completions'}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_DEADLINE_MS * 3),
  });
  const text = await r.text();
  if (r.status !== 200 || body['stream'] !== true) {
    const j = JSON.parse(text) as Record<string, unknown>;
    delete j['id'];
    delete j['created'];
    // The decode reports the transferred prompt as cached, as vLLM's does: the counts must agree.
    const usage = j['usage'] as { prompt_tokens: number; completion_tokens: number } | undefined;
    if (usage !== undefined)
      j['usage'] = { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens };
    for (const c of (j['choices'] as { message?: { tool_calls?: { id: string }[] } }[] | undefined) ?? [])
      for (const call of c.message?.tool_calls ?? []) call.id = 'ID';
    return { status: r.status, shape: j };
  }
  const pieces: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const chunk = JSON.parse(line.slice(6)) as {
      choices?: {
        delta?: { content?: string; tool_calls?: { id?: string }[] };
        finish_reason?: string | null;
      }[];
    };
    for (const c of chunk.choices ?? []) {
      if (c.delta?.content) pieces.push(`content ${c.delta.content}`);
      for (const call of c.delta?.tool_calls ?? [])
        pieces.push(`tool ${JSON.stringify({ ...call, id: call.id === undefined ? undefined : 'ID' })}`);
      if (c.finish_reason) pieces.push(`finish ${c.finish_reason}`);
    }
  }
  assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200));
  return { status: r.status, shape: pieces };
}

/** The requests each pool must answer as the colocated engine does, and what their answer holds. */
const SERVED: {
  name: string;
  extra: Record<string, unknown>;
  check: (answer: Record<string, unknown>) => void;
}[] = [
  {
    name: 'response_format json_schema',
    extra: {
      response_format: { type: 'json_schema', json_schema: { name: 'p', schema: PERSON, strict: true } },
    },
    check: (a) => validatedJson(message(a).content as string, PERSON),
  },
  {
    name: 'response_format json_object',
    extra: { response_format: { type: 'json_object' } },
    check: (a) => validatedJson(message(a).content as string, { type: 'object' }),
  },
  {
    name: 'structured_outputs choice',
    extra: { structured_outputs: { choice: ['yes', 'no', 'maybe'] } },
    check: (a) => assert.ok(['yes', 'no', 'maybe'].includes(message(a).content as string)),
  },
  {
    name: 'guided_choice',
    extra: { guided_choice: ['alpha', 'beta'] },
    check: (a) => assert.ok(['alpha', 'beta'].includes(message(a).content as string)),
  },
  {
    name: 'a named tool_choice',
    extra: { tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } } },
    check: (a) => {
      const calls = message(a).tool_calls as {
        type: string;
        function: { name: string; arguments: string };
      }[];
      assert.equal(calls.length, 1);
      assert.equal(calls[0]?.type, 'function');
      assert.equal(calls[0]?.function.name, 'get_weather');
      validatedJson(calls[0]?.function.arguments ?? '', WEATHER);
      assert.equal(finish(a), 'stop');
    },
  },
  {
    name: 'tool_choice required',
    extra: { tools: TOOLS, tool_choice: 'required' },
    check: (a) => {
      const calls = message(a).tool_calls as { function: { name: string; arguments: string } }[];
      assert.ok(calls.length >= 1);
      validatedJson(
        JSON.stringify(
          calls.map((c) => ({ name: c.function.name, parameters: JSON.parse(c.function.arguments) })),
        ),
        REQUIRED_LIST,
      );
      assert.equal(finish(a), 'tool_calls');
    },
  },
  {
    // Task G's rule (stop 35): auto calls the first tool the last user turn names, else the first.
    name: 'tool_choice auto',
    extra: { tools: TOOLS, tool_choice: 'auto' },
    check: (a) => {
      const calls = message(a).tool_calls as { function: { name: string; arguments: string } }[];
      assert.equal(calls.length, 1);
      assert.equal(calls[0]?.function.name, 'get_weather');
      validatedJson(calls[0]?.function.arguments ?? '', WEATHER);
      assert.equal(finish(a), 'tool_calls');
    },
  },
  {
    name: 'tool_choice auto after a tool result',
    extra: {
      messages: [
        { role: 'user', content: 'What is the weather in Paris? '.repeat(8) },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris","days":1}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
      tools: TOOLS,
      tool_choice: 'auto',
      max_tokens: 30,
    },
    check: (a) => {
      assert.equal(message(a).tool_calls, undefined);
      assert.equal(typeof message(a).content, 'string');
    },
  },
  {
    name: 'stop strings',
    extra: { stop: ['e'], max_tokens: 30 },
    check: (a) => assert.ok(!(message(a).content as string).includes('e')),
  },
  {
    // The llama engine serves min_tokens with ignore_eos (then the generation runs to max_tokens).
    name: 'min_tokens with ignore_eos',
    extra: { min_tokens: 20, max_tokens: 24, ignore_eos: true },
    check: (a) => assert.equal((a['usage'] as { completion_tokens: number }).completion_tokens, 24),
  },
];

/** Refused by the colocated engines: the pools must refuse them alike (status, code, param, message). */
const REFUSED: { name: string; extra: Record<string, unknown>; param: string }[] = [
  {
    name: "a schema with 'pattern'",
    extra: {
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'p',
          schema: { type: 'object', properties: { a: { type: 'string', pattern: '^a+$' } } },
        },
      },
    },
    param: 'response_format.json_schema.schema',
  },
  {
    // A forced call beside response_format is served since stop 36 (the format dropped, as vLLM).
    name: 'a tool that is no function',
    extra: { tools: [{ type: 'custom', custom: { name: 'x' } }], tool_choice: 'required' },
    param: 'tools[0]',
  },
  { name: 'logprobs', extra: { logprobs: true, top_logprobs: 2 }, param: 'logprobs' },
  {
    name: 'min_tokens with structured output',
    extra: { min_tokens: 5, response_format: { type: 'json_object' } },
    param: 'min_tokens',
  },
];

const message = (a: Record<string, unknown>): Record<string, unknown> =>
  (a['choices'] as { message: Record<string, unknown> }[])[0]?.message ?? {};
const finish = (a: Record<string, unknown>): unknown =>
  (a['choices'] as { finish_reason: unknown }[])[0]?.finish_reason;

/** What shows that the decode engine took the prompt's KV from the prefill (and prefilled nothing itself). */
async function handOff(type: 'sim' | 'llama', decode: string): Promise<{ moved: number; local: number }> {
  const s = (await (await fetch(`${decode}/pd/stats`)).json()) as Record<string, number>;
  return type === 'sim'
    ? { moved: s['skippedPrefillTokens'] as number, local: s['kvLoadFailures'] as number }
    : { moved: s['imported'] as number, local: s['localPrefills'] as number };
}

for (const type of ['sim', 'llama'] as const)
  for (const protocol of ['vllm', 'sglang'] as const)
    describe(`${type} engines in ${protocol}'s P/D flow answer as one ${type} engine`, {
      timeout: 300_000,
    }, () => {
      const model = type === 'sim' ? MODEL : LLAMA_MODEL;
      const pool = (): Pool => setUp.pools[`${type}/${protocol}`] as Pool;
      const alone = (): string => (type === 'sim' ? setUp.simAlone : setUp.llamaAlone);

      for (const c of SERVED)
        it(`${c.name}, plain and streamed: the same answer, the KV handed off`, async () => {
          for (const stream of [false, true]) {
            const body = chatBody(model, { ...c.extra, stream });
            const before = await handOff(type, pool().decode);
            const [one, pd] = [await ask(alone(), body), await ask(pool().url, body)];
            assert.equal(one.status, 200, JSON.stringify(one.shape));
            assert.deepEqual(pd, one);
            if (!stream) c.check(pd.shape as Record<string, unknown>);
            const after = await handOff(type, pool().decode);
            assert.ok(
              after.moved > before.moved,
              `the decode took the prefill's KV (${JSON.stringify(after)})`,
            );
            assert.equal(after.local, before.local, 'no decode prefilled the prompt itself');
          }
        });

      for (const c of REFUSED)
        it(`${c.name}: the same 400, streamed or not`, async () => {
          for (const stream of [false, true]) {
            const body = chatBody(model, { ...c.extra, stream });
            const [one, pd] = [await ask(alone(), body), await ask(pool().url, body)];
            assert.equal(one.status, 400, JSON.stringify(one.shape));
            assert.deepEqual(pd, one);
            const error = (one.shape as { error: { code: string; param: string } }).error;
            assert.equal(error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
            assert.equal(error.param, c.param);
          }
        });

      it('n > 1 and a prompt list: 400 naming the field, saying the P/D pool does not serve them', async () => {
        const cases: [Record<string, unknown>, string][] = [
          [chatBody(model, { n: 2, max_tokens: 5 }), 'n'],
          [chatBody(model, { n: 3, max_tokens: 5, stream: true }), 'n'],
          [{ model, prompt: ['one prompt', 'another prompt'], max_tokens: 5 }, 'prompt'],
        ];
        for (const [body, param] of cases) {
          const r = await ask(pool().url, body);
          assert.equal(r.status, 400, JSON.stringify(r.shape));
          const error = (r.shape as { error: { code: string; param: string; message: string } }).error;
          assert.equal(error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
          assert.equal(error.param, param);
          assert.match(error.message, /prefill\/decode pools/);
        }
      });
    });
