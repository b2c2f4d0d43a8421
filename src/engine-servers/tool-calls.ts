/**
 * Tool calls on the built-in engines' chat completions: forced ones as vLLM serves them
 * (vllm/entrypoints/openai/serving_chat.py, protocol.py), auto ones by a fixed rule:
 *
 * - a named choice, `tool_choice: {"type": "function", "function": {"name": N}}`: the arguments are
 *   generated under the function's `parameters` schema (the structured-output check and grammar,
 *   structured-output.ts), answered as `message.tool_calls: [{id: "chatcmpl-tool-...", type:
 *   "function", function: {name: N, arguments: "<json text>"}}]` with `content: ""` and the
 *   generation's finish reason ("stop"), as vLLM answers a named choice;
 * - `tool_choice: "required"`: a JSON array of `{"name": ..., "parameters": ...}` objects, one
 *   alternative per tool (vLLM's required schema), each item answered as a tool call, finish reason
 *   "tool_calls". `parallel_tool_calls: false` bounds the array to one call. The alternatives go
 *   tools not yet called since the last user turn first (`requiredOrder`), which the sim, generating
 *   the first, follows, so a loop that must call each turn ends (to stop 36 it called the first
 *   listed tool every turn).
 * - `"auto"`, or tools with no `tool_choice` (OpenAI's default): a built-in engine has no model to
 *   decide, so it follows a fixed rule (`autoToolChoice`) that lets an agent loop end: a tool result
 *   (a `tool` message, a legacy `function` one, a Responses `function_call_output` item) after the
 *   last user turn is answered in text; otherwise one call, to the first listed tool whose name
 *   occurs as a whole word in the last user turn's text, else to the first tool. The call is generated as a named one
 *   and answered as vLLM with `--enable-auto-tool-choice` and a tool parser (hermes, llama3_json)
 *   answers one: `content: null`, `tool_calls` with a `chatcmpl-tool-` id, finish reason
 *   "tool_calls" (a call cut by max_tokens keeps the generation's "length"). Streamed as a named call.
 *   To stop 34 auto was 400, as vLLM without an auto tool parser answers it. Beside structured
 *   output (`response_format`, `text.format`; the OpenAI Agents SDK with an `outputType` sends both
 *   every turn) a call turn makes the call, its arguments under the tool's schema, and ignores the
 *   format; the text turn after the tool result is answered under the format (to stop 35 task G a
 *   call turn was 400). A forced call beside a format is
 *   made and the format dropped, as vLLM does (to stop 36, 400; openai-server.ts, responses.ts).
 *   The call's `auto` mark tells the servers which.
 * - `{"type": "allowed_tools", ...}` (OpenAI's, chat nesting `{mode, tools}` under `allowed_tools`,
 *   the Responses API flat) is its mode, `auto` or `required`, served as above over the listed
 *   subset of the tools (all of which stay in the prompt). pydantic-ai's OpenAIResponsesModel sends
 *   it for an agent with tools and a structured output (`mode: "required"` over the tools and
 *   `final_result`); to stop 36 it was 400 naming tool_choice.
 * - `"none"` is served as text with the tools ignored (not read here).
 * - The legacy `functions` and `function_call` (chat only) are read as tools and a choice: a
 *   `{"name"}` is named, `"auto"` (or none given) auto, `"none"` text; beside `tools` or
 *   `tool_choice`, 400. Answered in OpenAI's legacy shape: `message.function_call: {name,
 *   arguments}`, `content: null`, finish reason "function_call" for an auto call ("stop" for a named
 *   one, as a named tool call); streamed as `delta.function_call`, the name in the first.
 *
 * Streamed, a named call goes out as vLLM streams it: a first delta with the call's id, type, name
 * and first piece of arguments, then argument pieces. A required call list is sent whole when it
 * closes (one delta per call), since its name is known only once parsed.
 *
 * The Responses API reads the same choices in its flat form (`toolCallingOf(body, 'responses')`:
 * `tools: [{"type": "function", "name", "parameters"}]`, `tool_choice: {"type": "function",
 * "name"}`, and auto); responses.ts answers a call as a `function_call` output item.
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
  /**
   * The call is `auto`'s choice (autoToolChoice), answered as vLLM's auto tool parser answers one:
   * `content` null and finish reason "tool_calls". Always `named` mode.
   */
  readonly auto: boolean;
  /** Asked in the legacy form (`functions`, `function_call`): answered as `message.function_call`. */
  readonly legacy: boolean;
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
  /** Its place in the request's list (what a 400 names, also for a subset `allowed_tools` kept). */
  readonly index: number;
}

/**
 * Which API's shape the tools come in: chat nests a function under `function`
 * (`{"type": "function", "function": {"name", "parameters"}}`), the Responses API lists it flat
 * (`{"type": "function", "name", "parameters", "strict"}`), and so names its choice
 * (`{"type": "function", "name"}`).
 */
export type ToolsForm = 'chat' | 'responses';

/**
 * How a tools list is read: the two forms above, and chat's legacy `functions` (`[{"name",
 * "description", "parameters"}]`, the function itself with no `type`).
 */
type ListForm = ToolsForm | 'functions';

/** Where a tool's function fields are in `form`, as a param path suffix (`.function` or none). */
function fnAt(form: ListForm): string {
  return form === 'chat' ? '.function' : '';
}

/** The tools list, each checked (a function with a name; parameters a schema the engines can hold). */
function readTools(value: unknown, form: ListForm): Tool[] {
  const list = form === 'functions' ? 'functions' : 'tools';
  const shape =
    form === 'chat'
      ? '{"type": "function", "function": {"name": ..., "parameters": ...}}'
      : form === 'functions'
        ? '{"name": ..., "parameters": ...}'
        : '{"type": "function", "name": ..., "parameters": ...} (the built-in engines serve function tools only)';
  if (!Array.isArray(value)) throw invalid(list, `expected a list of ${shape}`);
  if (value.length > TOOLS_MAX)
    throw invalid(list, `${value.length} ${list}, above the bound of ${TOOLS_MAX}`);
  return value.map((tool, i) => {
    const at = `${list}[${i}]`;
    // A tool of another type (the Responses API's hosted `web_search`, `file_search`, `mcp`, a
    // `custom` tool...) is a valid request the engines cannot serve: unsupported, not malformed.
    const type = isObject(tool) ? tool['type'] : undefined;
    if (form !== 'functions' && typeof type === 'string' && type !== 'function')
      throw new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `parameter '${at}' is not supported by the built-in engines: a tool of type ` +
          `${JSON.stringify(type.slice(0, 64))}; they serve function tools only`,
        { param: at },
      );
    if (
      !isObject(tool) ||
      (form !== 'functions' && tool['type'] !== 'function') ||
      (form === 'chat' && !isObject(tool['function']))
    )
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
    return { name, schema, index: i };
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
  const alternatives = tools.map((tool) => {
    const i = tool.index;
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

/** A conversation turn as the auto rule reads it: a user's text, a tool's result, or anything else. */
export interface AutoTurn {
  readonly kind: 'user' | 'tool-result' | 'other';
  /** A user turn's text (what the rule looks for tool names in); '' for the others. */
  readonly text: string;
}

/**
 * `tool_choice: "auto"` on the built-in engines, which have no language model to decide: a fixed
 * rule that lets an agent loop end. A tool result after the last user turn (the loop has called
 * and been answered): answer in text, undefined. Otherwise call one tool: the first listed whose
 * name occurs in the last user turn's text as a whole word (case-sensitive, as written; not inside
 * a longer word: `search` is not in "research"), else the first listed.
 * With no user turn, any tool result means text. Pure: the same turns, the same answer.
 */
export function autoToolChoice(toolNames: readonly string[], turns: readonly AutoTurn[]): string | undefined {
  let lastUser = turns.length - 1;
  while (lastUser >= 0 && (turns[lastUser] as AutoTurn).kind !== 'user') lastUser--;
  for (let i = lastUser + 1; i < turns.length; i++)
    if ((turns[i] as AutoTurn).kind === 'tool-result') return undefined;
  const text = lastUser >= 0 ? (turns[lastUser] as AutoTurn).text : '';
  return toolNames.find((name) => namedIn(text, name)) ?? toolNames[0];
}

/** Characters a name runs on through (a tool name's own: letters, digits, `_`, `-`). */
const NAME_CHAR = /[\p{L}\p{N}_-]/u;

/** `name` occurs in `text` as a whole word: not inside a longer name (`a` is not in "please"). */
function namedIn(text: string, name: string): boolean {
  if (name === '') return false;
  for (let at = text.indexOf(name); at !== -1; at = text.indexOf(name, at + 1)) {
    const before = text[at - 1];
    const after = text[at + name.length];
    if ((before === undefined || !NAME_CHAR.test(before)) && (after === undefined || !NAME_CHAR.test(after)))
      return true;
  }
  return false;
}

/** A content's text for the rule: a string, or its text parts' text joined by "\n"; else ''. */
function turnText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) => (isObject(part) && typeof part['text'] === 'string' ? part['text'] : ''))
    .filter((t) => t !== '')
    .join('\n');
}

/**
 * The turns of a body's conversation: chat's `messages` (`user`; `tool` and legacy `function`
 * results), or the Responses `input` (a string is one user turn; `user` messages and
 * `function_call_output` items).
 */
export function autoTurnsOf(body: Record<string, unknown>, form: ToolsForm): AutoTurn[] {
  const items = form === 'chat' ? body['messages'] : body['input'];
  if (form === 'responses' && typeof items === 'string') return [{ kind: 'user', text: items }];
  if (!Array.isArray(items)) return [];
  return items.map((item): AutoTurn => {
    if (!isObject(item)) return { kind: 'other', text: '' };
    const role = item['role'];
    if (role === 'user') return { kind: 'user', text: turnText(item['content']) };
    if (form === 'chat' ? role === 'tool' || role === 'function' : item['type'] === 'function_call_output')
      return { kind: 'tool-result', text: '' };
    return { kind: 'other', text: '' };
  });
}

/**
 * The names of the tools called since the last user turn: chat's assistant `tool_calls`, or the
 * Responses `function_call` items (all of them with no user turn).
 */
export function calledSinceLastUser(body: Record<string, unknown>, form: ToolsForm): Set<string> {
  const items = form === 'chat' ? body['messages'] : body['input'];
  const called = new Set<string>();
  if (!Array.isArray(items)) return called;
  for (const item of items) {
    if (!isObject(item)) continue;
    if (item['role'] === 'user') called.clear();
    else if (form === 'responses' && item['type'] === 'function_call' && typeof item['name'] === 'string')
      called.add(item['name']);
    else if (form === 'chat' && item['role'] === 'assistant' && Array.isArray(item['tool_calls']))
      for (const call of item['tool_calls'])
        if (isObject(call) && isObject(call['function']) && typeof call['function']['name'] === 'string')
          called.add(call['function']['name']);
  }
  return called;
}

/**
 * `tool_choice: "required"` on the built-in engines, the order of its schema's alternatives: the
 * tools not yet called since the last user turn first, then the rest, each group as listed. The sim
 * generates a schema's first alternative, so a loop whose every turn must call (pydantic-ai's agent
 * with tools and a tool output sends "required", or `allowed_tools` required, each turn) moves on
 * to its next tool, its output tool at last, instead of calling the first one forever; the llama
 * engine samples among them as before. Pure: the same tools and history, the same order.
 */
export function requiredOrder<T extends { readonly name: string }>(
  tools: readonly T[],
  called: ReadonlySet<string>,
): T[] {
  return [...tools.filter((t) => !called.has(t.name)), ...tools.filter((t) => called.has(t.name))];
}

/**
 * A chat body's legacy `functions` / `function_call` as tools: undefined when it has neither, else
 * the `tools`, `tool_choice` they mean (a name becomes a named choice, "auto" and "none" stay; no
 * `function_call` is auto, OpenAI's default), or 400 beside `tools` or `tool_choice`, or for a
 * choice of another shape.
 */
function legacyAsTools(body: Record<string, unknown>): { tools: unknown; choice: unknown } | undefined {
  const functions = body['functions'];
  const call = body['function_call'];
  const given = (v: unknown): boolean => v !== undefined && v !== null;
  if (!given(functions) && !given(call)) return undefined;
  if (given(body['tools']) || given(body['tool_choice']))
    throw invalid(
      given(functions) ? 'functions' : 'function_call',
      'send tools and tool_choice, or the legacy functions and function_call, not both',
    );
  const choice =
    !given(call) || call === 'auto' || call === 'none'
      ? call
      : isObject(call) && typeof call['name'] === 'string'
        ? { type: 'function', name: call['name'] }
        : undefined;
  if (choice === undefined && given(call))
    throw invalid('function_call', 'expected "none", "auto" or {"name": ...}');
  return { tools: functions, choice };
}

/** What an `allowed_tools` choice asks: a mode over a subset of the request's tools. */
interface AllowedTools {
  readonly mode: 'auto' | 'required';
  readonly names: ReadonlySet<string>;
}

/**
 * A `tool_choice` of type `allowed_tools` (OpenAI's, both APIs): chat nests it,
 * `{"type": "allowed_tools", "allowed_tools": {"mode": "auto" | "required", "tools": [{"type":
 * "function", "function": {"name"}}]}}`; the Responses API lists it flat, `{"type": "allowed_tools",
 * "mode", "tools": [{"type": "function", "name"}]}` (pydantic-ai sends this form when an agent has
 * tools and a tool output). Undefined for a choice of another type. A listed tool of another type
 * (`mcp`, `image_generation`...) is unsupported, as such a tool is in `tools`; a name the tools do
 * not list, or a malformed choice, 400.
 */
function allowedToolsOf(choice: unknown, form: ToolsForm, listed: readonly Tool[]): AllowedTools | undefined {
  if (!isObject(choice) || choice['type'] !== 'allowed_tools') return undefined;
  const at = form === 'chat' ? 'tool_choice.allowed_tools' : 'tool_choice';
  const spec = form === 'chat' ? choice['allowed_tools'] : choice;
  const entryShape =
    form === 'chat' ? '{"type": "function", "function": {"name": ...}}' : '{"type": "function", "name": ...}';
  if (!isObject(spec) || (spec['mode'] !== 'auto' && spec['mode'] !== 'required'))
    throw invalid(`${at}.mode`, 'expected "auto" or "required"');
  const tools = spec['tools'];
  if (!Array.isArray(tools) || tools.length === 0 || tools.length > TOOLS_MAX)
    throw invalid(`${at}.tools`, `expected a list of 1 to ${TOOLS_MAX} ${entryShape}`);
  const names = new Set<string>();
  tools.forEach((entry, i) => {
    const param = `${at}.tools[${i}]`;
    const type = isObject(entry) ? entry['type'] : undefined;
    if (typeof type === 'string' && type !== 'function')
      throw new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `parameter '${param}' is not supported by the built-in engines: a tool of type ` +
          `${JSON.stringify(type.slice(0, 64))}; they serve function tools only`,
        { param },
      );
    const fn = isObject(entry) ? (form === 'chat' ? entry['function'] : entry) : undefined;
    const name = isObject(fn) ? fn['name'] : undefined;
    if (type !== 'function' || typeof name !== 'string') throw invalid(param, `expected ${entryShape}`);
    if (!listed.some((t) => t.name === name))
      throw invalid(param, `tool ${JSON.stringify(name).slice(0, 300)} is not among the request's tools`);
    names.add(name);
  });
  return { mode: spec['mode'], names };
}

/**
 * What a (decoded) chat body's `tools` and `tool_choice` (or legacy `functions` and
 * `function_call`) ask for: undefined for none (no tools, `tool_choice: "none"`, or `auto` deciding
 * on text); a named or required call (`auto`'s call is a named one, marked `auto`); or 400: a choice
 * naming no listed tool, a malformed list, a schema the engines cannot hold (naming the keyword, as
 * structured output does), or tools beside another output constraint.
 */
export function toolCallingOf(body: unknown, form: ToolsForm = 'chat'): ToolCalling | undefined {
  if (!isObject(body)) return undefined;
  const legacy = form === 'chat' ? legacyAsTools(body) : undefined;
  const listForm: ListForm = legacy !== undefined ? 'functions' : form;
  const listParam = legacy !== undefined ? 'functions' : 'tools';
  const choiceParam = legacy !== undefined ? 'function_call' : 'tool_choice';
  const namedShape =
    legacy !== undefined
      ? '{"name": ...}'
      : form === 'chat'
        ? '{"type": "function", "function": {"name": ...}}'
        : '{"type": "function", "name": ...}';
  const tools = legacy !== undefined ? legacy.tools : body['tools'];
  const choice = legacy !== undefined ? legacy.choice : body['tool_choice'];
  if (choice === 'none') return undefined;
  const listed = Array.isArray(tools) ? tools.length > 0 : tools !== undefined && tools !== null;
  if (!listed) {
    if (choice === undefined || choice === null || choice === 'auto') return undefined;
    // vLLM's check_tool_usage: "When using `tool_choice`, `tools` must be set."
    throw invalid(
      choiceParam,
      `a ${choiceParam} other than "none" or "auto" needs \`${listParam}\` to be set`,
    );
  }
  const listedTools = readTools(tools, listForm);
  const marks = { auto: false, legacy: legacy !== undefined };
  // `allowed_tools` is its mode over the tools it keeps: auto's rule or a required list among them.
  const allowed = legacy === undefined ? allowedToolsOf(choice, form, listedTools) : undefined;
  const read = allowed === undefined ? listedTools : listedTools.filter((t) => allowed.names.has(t.name));
  const mode = allowed?.mode ?? choice;
  if (mode === undefined || mode === null || mode === 'auto') {
    const name = autoToolChoice(
      read.map((t) => t.name),
      autoTurnsOf(body, form),
    );
    const tool = read.find((t) => t.name === name);
    if (tool === undefined) return undefined;
    return {
      mode: 'named',
      names: [tool.name],
      structured: structuredOf(tool.schema, listParam),
      ...marks,
      auto: true,
    };
  }
  if (mode === 'required' && legacy === undefined) {
    const one = body['parallel_tool_calls'] === false;
    return {
      mode: 'required',
      names: read.map((t) => t.name),
      structured: structuredOf(
        requiredSchema(requiredOrder(read, calledSinceLastUser(body, form)), one, form),
        'tools',
      ),
      ...marks,
    };
  }
  const chosen =
    isObject(choice) && choice['type'] === 'function'
      ? form === 'chat' && legacy === undefined
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
        choiceParam,
        `${legacy !== undefined ? 'function' : 'tool'} ${String(JSON.stringify(name)).slice(0, 300)} is not among the request's ${listParam}`,
      );
    return { mode: 'named', names: [tool.name], structured: structuredOf(tool.schema, listParam), ...marks };
  }
  throw invalid(
    choiceParam,
    `expected "none", "auto"${legacy !== undefined ? '' : ', "required", {"type": "allowed_tools", ...}'} or ${namedShape}`,
  );
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

  /**
   * A named call's delta: the first carries the id, type and name (as vLLM streams it); a legacy
   * call's is `function_call`, its first with the name (as OpenAI streamed it).
   */
  private namedDelta(args: string): string {
    const first = !this.headSent;
    this.headSent = true;
    const name = JSON.stringify(this.calling.names[0]);
    if (this.calling.legacy)
      return first
        ? `{"function_call":{"name":${name},"arguments":${JSON.stringify(args)}}}`
        : `{"function_call":{"arguments":${JSON.stringify(args)}}}`;
    if (!first) return `{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(args)}}}]}`;
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
    // vLLM: "tool_calls" for a required list or an auto call that ended on its own, else the
    // generation's reason (a named call: "stop"); a legacy auto call's is OpenAI's "function_call".
    const { auto, legacy } = this.calling;
    const finish = JSON.stringify(
      reason !== 'stop' || (named && !auto) || calls === undefined
        ? reason
        : legacy
          ? 'function_call'
          : 'tool_calls',
    );
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
    // An auto call's content is null, as vLLM's tool parsers give it with no text before the call
    // (hermes, llama3_json); a named or required call's is "" (serving_chat.py); a legacy call's
    // null, as OpenAI answered one.
    const message =
      calls === undefined
        ? `{"role":"assistant","content":${JSON.stringify(this.text)},"refusal":null}`
        : legacy
          ? `{"role":"assistant","content":null,"refusal":null,"function_call":{"name":${JSON.stringify(calls[0]?.name)},"arguments":${JSON.stringify(calls[0]?.arguments)}}}`
          : `{"role":"assistant","content":${auto ? 'null' : '""'},"refusal":null,"tool_calls":[${calls
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
