/**
 * Forced tool calls on the built-in engines' chat completions, as vLLM serves them without
 * `--enable-auto-tool-choice` (vllm/entrypoints/openai/serving_chat.py, protocol.py):
 *
 * - a named choice, `tool_choice: {"type": "function", "function": {"name": N}}`: the arguments are
 *   generated under the function's `parameters` schema (the structured-output check and grammar,
 *   structured-output.ts), answered as `message.tool_calls: [{id: "chatcmpl-tool-...", type:
 *   "function", function: {name: N, arguments: "<json text>"}}]` with `content: ""` and the
 *   generation's finish reason ("stop"), as vLLM answers a named choice;
 * - `tool_choice: "required"`: a JSON array of `{"name": ..., "parameters": ...}` objects, one
 *   alternative per tool (vLLM's required schema), each item answered as a tool call, finish reason
 *   "tool_calls". `parallel_tool_calls: false` bounds the array to one call.
 * - `"auto"`, or tools with no `tool_choice` (which defaults to auto there): 400, as vLLM answers
 *   without an auto tool parser; `"none"` is served as text with the tools ignored (not read here).
 *
 * Streamed, a named call goes out as vLLM streams it: a first delta with the call's id, type, name
 * and first piece of arguments, then argument pieces. A required call list is sent whole when it
 * closes (one delta per call), since its name is known only once parsed. *
 * The Responses API reads the same choices in its flat form (`toolCallingOf(body, 'responses')`:
 * `tools: [{"type": "function", "name", "parameters"}]`, `tool_choice: {"type": "function",
 * "name"}`); responses.ts answers them as `function_call` output items.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { SwitchyardError } from '../core/errors.ts';
import type { ParsedCompletionRequest } from '../core/openai-api.ts';
import type { FinishReason, GenerationSink, GenerationUsage } from './backend.ts';
import { errorBody, sendError, sendJson } from './respond.ts';
import type { ResponsesHost } from './responses.ts';
import { type JsonSchema, normalizeSchema, type StructuredOutput } from './structured-output.ts';

/** The most tools a request may list (OpenAI's bound). */
export const TOOLS_MAX = 128;

/** What a chat request's tools ask the engine to generate. */
export interface ToolCalling {
  /** `named`: one call to `names[0]`; `required`: a list of calls to any of `names`. */
  readonly mode: 'named' | 'required';
  readonly names: readonly string[];
  /** The constraint the arguments (named) or the call list (required) are generated under. */
  readonly structured: StructuredOutput;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(param: string, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${what}`, { param });
}

/** One tool as read: its name and its parameters' normalised schema. */
interface Tool {
  readonly name: string;
  readonly schema: JsonSchema;
}

/**
 * Which API's shape the tools come in: chat nests a function under `function`
 * (`{"type": "function", "function": {"name", "parameters"}}`), the Responses API lists it flat
 * (`{"type": "function", "name", "parameters", "strict"}`), and so names its choice
 * (`{"type": "function", "name"}`).
 */
export type ToolsForm = 'chat' | 'responses';

/** Where a tool's function fields are in `form`, as a param path suffix (`.function` or none). */
function fnAt(form: ToolsForm): string {
  return form === 'chat' ? '.function' : '';
}

/** The tools list, each checked (a function with a name; parameters a schema the engines can hold). */
function readTools(value: unknown, form: ToolsForm): Tool[] {
  const shape =
    form === 'chat'
      ? '{"type": "function", "function": {"name": ..., "parameters": ...}}'
      : '{"type": "function", "name": ..., "parameters": ...} (the built-in engines serve function tools only)';
  if (!Array.isArray(value)) throw invalid('tools', `expected a list of ${shape}`);
  if (value.length > TOOLS_MAX)
    throw invalid('tools', `${value.length} tools, above the bound of ${TOOLS_MAX}`);
  return value.map((tool, i) => {
    const at = `tools[${i}]`;
    if (!isObject(tool) || tool['type'] !== 'function' || (form === 'chat' && !isObject(tool['function'])))
      throw invalid(at, `expected ${shape}`);
    const fn = form === 'chat' ? (tool['function'] as Record<string, unknown>) : tool;
    const name = fn['name'];
    if (typeof name !== 'string' || name.length === 0 || name.length > 256)
      throw invalid(`${at}${fnAt(form)}.name`, 'expected a name of 1 to 256 characters');
    const parameters = fn['parameters'];
    const param = `${at}${fnAt(form)}.parameters`;
    // A function without parameters takes none: its arguments are an empty object.
    const schema =
      parameters === undefined || parameters === null
        ? normalizeSchema({ type: 'object', properties: {} }, param)
        : normalizeSchema(parameters, param);
    return { name, schema };
  });
}

function structuredOf(schema: JsonSchema, param: string): StructuredOutput {
  return { kind: 'json', schema, anyObject: false, key: `json:${JSON.stringify(schema)}`, param };
}

/**
 * vLLM's required schema: an array of at least one `{"name": <a tool's name>, "parameters": <its
 * schema>}`. Each tool's `$defs` move to the root, where `$ref`s resolve; two tools defining one
 * name differently are 400 (their references could not both hold).
 */
function requiredSchema(tools: readonly Tool[], one: boolean, form: ToolsForm): JsonSchema {
  const defs: Record<string, unknown> = {};
  const alternatives = tools.map((tool, i) => {
    const { $defs, ...parameters } = tool.schema as Record<string, unknown>;
    if (isObject($defs))
      for (const [name, def] of Object.entries($defs)) {
        if (name in defs && JSON.stringify(defs[name]) !== JSON.stringify(def))
          throw new SwitchyardError(
            'SY_ERR_UNSUPPORTED_PARAMETER',
            `parameter 'tools[${i}]${fnAt(form)}.parameters' is not supported by the built-in engines with ` +
              `tool_choice "required": its $defs/${name} differs from another tool's; give the definitions distinct names`,
            { param: `tools[${i}]${fnAt(form)}.parameters` },
          );
        defs[name] = def;
      }
    return {
      type: 'object',
      properties: { name: { const: tool.name }, parameters },
      required: ['name', 'parameters'],
      additionalProperties: false,
    };
  });
  return {
    type: 'array',
    minItems: 1,
    ...(one ? { maxItems: 1 } : {}),
    items: alternatives.length === 1 ? alternatives[0] : { oneOf: alternatives },
    ...(Object.keys(defs).length > 0 ? { $defs: defs } : {}),
  };
}

/**
 * What a (decoded) chat body's `tools` and `tool_choice` ask for: undefined for none (no tools, or
 * `tool_choice: "none"`); a named or required call; or 400: `auto` (as vLLM without an auto tool
 * parser), a choice naming no listed tool, a malformed list, a schema the engines cannot hold
 * (naming the keyword, as structured output does), or tools beside another output constraint.
 */
export function toolCallingOf(body: unknown, form: ToolsForm = 'chat'): ToolCalling | undefined {
  if (!isObject(body)) return undefined;
  const namedShape =
    form === 'chat' ? '{"type": "function", "function": {"name": ...}}' : '{"type": "function", "name": ...}';
  const tools = body['tools'];
  const choice = body['tool_choice'];
  if (choice === 'none') return undefined;
  const listed = Array.isArray(tools) ? tools.length > 0 : tools !== undefined && tools !== null;
  if (!listed) {
    if (choice === undefined || choice === null || choice === 'auto') return undefined;
    // vLLM's check_tool_usage: "When using `tool_choice`, `tools` must be set."
    throw invalid('tool_choice', 'a tool_choice other than "none" or "auto" needs `tools` to be set');
  }
  if (choice === undefined || choice === null || choice === 'auto')
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `parameter 'tool_choice' is "auto"${choice === 'auto' ? '' : ' (the default when tools are given)'}, which the ` +
        'built-in engines do not support: as vLLM without --enable-auto-tool-choice and --tool-call-parser, they ' +
        `call a tool only when told to; send tool_choice "required" or ${namedShape}, or "none" to answer in text`,
      { param: 'tool_choice' },
    );
  const read = readTools(tools, form);
  if (choice === 'required') {
    const one = body['parallel_tool_calls'] === false;
    return {
      mode: 'required',
      names: read.map((t) => t.name),
      structured: structuredOf(requiredSchema(read, one, form), 'tools'),
    };
  }
  const chosen =
    isObject(choice) && choice['type'] === 'function'
      ? form === 'chat'
        ? isObject(choice['function'])
          ? choice['function']
          : undefined
        : choice
      : undefined;
  if (chosen !== undefined) {
    const name = chosen['name'];
    const tool = read.find((t) => t.name === name);
    if (tool === undefined)
      throw invalid(
        'tool_choice',
        `tool ${String(JSON.stringify(name)).slice(0, 300)} is not among the request's tools`,
      );
    return { mode: 'named', names: [tool.name], structured: structuredOf(tool.schema, 'tools') };
  }
  throw invalid('tool_choice', `expected "none", "auto", "required" or ${namedShape}`);
}

/** One generated call. */
export interface Call {
  readonly name: string;
  readonly arguments: string;
}

/** The calls a required list's text holds; undefined when it is no such list (cut at max_tokens). */
export function requiredCalls(text: string): Call[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const calls: Call[] = [];
  for (const item of value) {
    if (!isObject(item) || typeof item['name'] !== 'string') return undefined;
    calls.push({ name: item['name'], arguments: JSON.stringify(item['parameters'] ?? {}) });
  }
  return calls;
}

/** A tool call id as vLLM makes them (`chatcmpl-tool-` and a random hex uuid). */
function toolCallId(): string {
  return `chatcmpl-tool-${randomBytes(16).toString('hex')}`;
}

function usageJson(usage: GenerationUsage): string {
  return `{"prompt_tokens":${usage.promptTokens},"total_tokens":${usage.promptTokens + usage.completionTokens},"completion_tokens":${usage.completionTokens}}`;
}

const SSE_DONE = 'data: [DONE]\n\n';

/** The answer of a chat completion with forced tool calls (streamed or not). */
export class ToolCallResponse implements GenerationSink {
  private started = false;
  private ended = false;
  private settled = false;
  private text = '';
  /** A named call's first delta (id, type, name) went out. */
  private headSent = false;
  private readonly callId = toolCallId();

  constructor(
    private readonly host: ResponsesHost,
    private readonly res: ServerResponse,
    private readonly parsed: ParsedCompletionRequest,
    /** The completion id, JSON-escaped. */
    private readonly id: string,
    private readonly created: number,
    private readonly arrivalMs: number,
    private readonly calling: ToolCalling,
  ) {}

  get done(): boolean {
    return this.ended;
  }

  abandon(): void {
    this.ended = true;
  }

  private chunk(delta: string, finish = 'null'): string {
    return `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(this.parsed.model)},"choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}]}\n\n`;
  }

  private start(): void {
    this.started = true;
    this.host.firstToken((performance.now() - this.arrivalMs) / 1000);
    if (!this.parsed.stream) return;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      ...this.host.closingHeaders(),
    });
    this.res.write(this.chunk('{"role":"assistant","content":""}'));
  }

  onText(text: string): void {
    if (this.ended) return;
    if (!this.started) this.start();
    this.text += text;
    if (!this.parsed.stream || this.calling.mode !== 'named' || text === '') return;
    this.res.write(this.chunk(this.namedDelta(text)));
  }

  /** A named call's delta: the first carries the id, type and name (as vLLM streams it). */
  private namedDelta(args: string): string {
    if (this.headSent) return `{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(args)}}}]}`;
    this.headSent = true;
    const name = JSON.stringify(this.calling.names[0]);
    return `{"tool_calls":[{"id":"${this.callId}","type":"function","index":0,"function":{"name":${name},"arguments":${JSON.stringify(args)}}}]}`;
  }

  onFinish(reason: FinishReason, usage: GenerationUsage): void {
    if (this.settled) return;
    this.settled = true;
    this.host.generationEnded(reason, (performance.now() - this.arrivalMs) / 1000);
    if (this.ended) return;
    if (!this.started) this.start();
    this.ended = true;
    const named = this.calling.mode === 'named';
    const calls: Call[] | undefined = named
      ? [{ name: this.calling.names[0] as string, arguments: this.text }]
      : requiredCalls(this.text);
    // vLLM: "tool_calls" for a required list that ended on its own, else the generation's reason.
    const finish = JSON.stringify(!named && calls !== undefined && reason === 'stop' ? 'tool_calls' : reason);
    const callJson = (call: Call, i: number, id: string): string =>
      `{"id":"${id}","type":"function","index":${i},"function":{"name":${JSON.stringify(call.name)},"arguments":${JSON.stringify(call.arguments)}}}`;
    if (this.parsed.stream) {
      let out = '';
      if (named && !this.headSent) out += this.chunk(this.namedDelta(''));
      if (!named) {
        // A list cut short (max_tokens) is no call: its text goes out as content.
        if (calls === undefined) out += this.chunk(`{"content":${JSON.stringify(this.text)}}`);
        else
          for (const [i, call] of calls.entries())
            out += this.chunk(`{"tool_calls":[${callJson(call, i, i === 0 ? this.callId : toolCallId())}]}`);
      }
      out += this.chunk('{}', finish);
      if (this.parsed.includeUsage)
        out += `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(this.parsed.model)},"choices":[],"usage":${usageJson(usage)}}\n\n`;
      this.res.end(out + SSE_DONE);
      return;
    }
    const message =
      calls === undefined
        ? `{"role":"assistant","content":${JSON.stringify(this.text)},"refusal":null}`
        : `{"role":"assistant","content":"","refusal":null,"tool_calls":[${calls
            .map((call, i) =>
              callJson(call, i, i === 0 ? this.callId : toolCallId()).replace(/,"index":\d+/, ''),
            )
            .join(',')}]}`;
    const body = `{"id":"${this.id}","object":"chat.completion","created":${this.created},"model":${JSON.stringify(this.parsed.model)},"choices":[{"index":0,"message":${message},"logprobs":null,"finish_reason":${finish},"stop_reason":null}],"usage":${usageJson(usage)}}`;
    sendJson(this.res, 200, body, this.host.closingHeaders());
  }

  onError(error: Error & { status?: number; code?: string }): void {
    if (this.settled) return;
    this.settled = true;
    this.host.generationEnded(undefined, 0);
    if (this.ended) return;
    this.ended = true;
    if (!this.started || !this.parsed.stream) {
      sendError(this.res, error, this.host.closingHeaders());
      return;
    }
    this.res.end(`data: ${errorBody(error).body}\n\n${SSE_DONE}`);
  }
}
