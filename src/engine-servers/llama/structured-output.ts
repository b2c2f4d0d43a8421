/**
 * Structured output on the llama engine: a request's constraint (../structured-output.ts, already
 * checked and normalised) as a node-llama-cpp grammar, which llama.cpp's sampler enforces token by
 * token (`grammarEvaluationState` on `sequence.evaluate`).
 *
 * - A JSON schema goes through node-llama-cpp's JSON-schema grammar generator
 *   (`llama.createGrammarForJsonSchema`), less the four newlines its root rule ends with (there for
 *   LlamaChatSession's stop trigger, which the raw evaluate loop does not have): the grammar then
 *   completes when the JSON value closes, where llama.cpp allows only end-of-generation tokens, so
 *   the generation ends with finish reason `stop` and nothing after the value, as vLLM's grammar
 *   backends end it. Cut by max_tokens first, it ends `length` with the text cut, as vLLM's.
 *   Numbers are generated without an exponent (NUMBER_EXPONENT).
 * - A choice is a GBNF alternation of the choices' literal text (vLLM's guided_choice answers the
 *   choice itself, not a JSON string).
 *
 * Compiled grammars are cached per engine in a bounded LRU keyed by the constraint (a client sends
 * the same schema with every request); a compile that fails is not kept and is 400
 * SY_ERR_UNSUPPORTED_PARAMETER, never a 500.
 */
import { type Llama, type LlamaGrammar, LlamaGrammarEvaluationState, type LlamaModel } from 'node-llama-cpp';
import { SwitchyardError } from '../../core/errors.ts';
import type { JsonSchema, NumberShape, StructuredOutput } from '../structured-output.ts';

/** Compiled grammars one engine keeps. */
export const GRAMMAR_CACHE_MAX = 64;

/** The end node-llama-cpp's JSON-schema grammars give their root rule (GBNF source text). */
const JSON_GRAMMAR_TAIL = ' "\\n\\n\\n\\n" [\\n]*';
/**
 * The exponent node-llama-cpp's number rules allow (GbnfNumber): up to 16 digits, so an integer
 * such as `78E6899888874888888` parsed as Infinity (JavaScript) or a float `inf` (Python), which no
 * client's validator takes for an integer. Numbers are written without one.
 */
const NUMBER_EXPONENT = ' ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';

/** The GBNF of a bounded number (NumberShape): its sign, its digits, a fraction for a `number`. */
export function numberGbnf(shape: NumberShape, fractional: boolean): string {
  const more = shape.digits > 1 ? ` [0-9]{0,${shape.digits - 1}}` : '';
  const whole = shape.nonZero ? `[1-9]${more}` : `("0" | [1-9]${more})`;
  return `(${shape.negative ? '"-"? ' : ''}${whole}${fractional ? ' ("." [0-9]{1,16})?' : ''})`;
}

/** A placeholder for the `i`-th bounded number, a const string in the schema node-llama-cpp reads. */
const placeholder = (i: number): string => `@@sy-number-${i}@@`;

/**
 * `schema` with each bounded number (`x-sy-number`) as a placeholder const, which node-llama-cpp
 * writes as a literal rule that `compile` then replaces by numberGbnf; and the replacements.
 */
export function withNumberPlaceholders(schema: JsonSchema): { schema: JsonSchema; rules: string[] } {
  const rules: string[] = [];
  const walk = (node: JsonSchema): JsonSchema => {
    const shape = node['x-sy-number'] as NumberShape | undefined;
    if (shape !== undefined) {
      const rule = numberGbnf(shape, node['type'] === 'number');
      let i = rules.indexOf(rule);
      if (i < 0) i = rules.push(rule) - 1;
      return { const: placeholder(i) };
    }
    const out: Record<string, unknown> = { ...node };
    const map = (v: unknown): unknown =>
      typeof v === 'object' && v !== null
        ? Object.fromEntries(Object.entries(v).map(([k, s]) => [k, walk(s as JsonSchema)]))
        : v;
    if (node['properties'] !== undefined) out['properties'] = map(node['properties']);
    if (node['$defs'] !== undefined) out['$defs'] = map(node['$defs']);
    if (typeof node['additionalProperties'] === 'object')
      out['additionalProperties'] = walk(node['additionalProperties'] as JsonSchema);
    if (node['items'] !== undefined) out['items'] = walk(node['items'] as JsonSchema);
    for (const list of ['prefixItems', 'oneOf'])
      if (Array.isArray(node[list])) out[list] = (node[list] as JsonSchema[]).map(walk);
    return out;
  };
  return { schema: walk(schema), rules };
}

/** `text` as a GBNF string literal. */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** The GBNF of a choice constraint: exactly one of the choices' texts. */
export function choiceGbnf(choices: readonly string[]): string {
  return `root ::= ${choices.map(gbnfLiteral).join(' | ')}\n`;
}

/** A bounded LRU of compiled grammars, per engine (grammars belong to one `Llama`). */
export class GrammarCache {
  private readonly entries = new Map<string, Promise<LlamaGrammar>>();

  constructor(
    private readonly llama: Llama,
    private readonly max = GRAMMAR_CACHE_MAX,
  ) {}

  /** Compiled grammars held (at most `max`). */
  get size(): number {
    return this.entries.size;
  }

  /** The constraint's grammar, compiled once while it stays among the `max` most recently used. */
  grammar(output: StructuredOutput): Promise<LlamaGrammar> {
    const cached = this.entries.get(output.key);
    if (cached !== undefined) {
      this.entries.delete(output.key);
      this.entries.set(output.key, cached);
      return cached;
    }
    const compiling = this.compile(output);
    this.entries.set(output.key, compiling);
    // A failed compile is not kept: the next request gets the same 400 by compiling again.
    compiling.catch(() => {
      if (this.entries.get(output.key) === compiling) this.entries.delete(output.key);
    });
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string);
    return compiling;
  }

  /** A fresh evaluation state of the constraint's grammar for one generation on `model`. */
  async state(output: StructuredOutput, model: LlamaModel): Promise<LlamaGrammarEvaluationState> {
    return new LlamaGrammarEvaluationState({ model, grammar: await this.grammar(output) });
  }

  private async compile(output: StructuredOutput): Promise<LlamaGrammar> {
    try {
      if (output.kind === 'choice')
        return await this.llama.createGrammar({ grammar: choiceGbnf(output.choices) });
      const { schema, rules } = withNumberPlaceholders(output.schema);
      const generated = await this.llama.createGrammarForJsonSchema(schema as never);
      let text = generated.grammar;
      const at = text.indexOf(JSON_GRAMMAR_TAIL);
      if (at < 0) throw new Error("the JSON-schema grammar's root rule has no end marker to remove");
      text = (text.slice(0, at) + text.slice(at + JSON_GRAMMAR_TAIL.length)).replaceAll(NUMBER_EXPONENT, '');
      for (const [i, rule] of rules.entries()) {
        const literal = gbnfLiteral(`"${placeholder(i)}"`);
        if (!text.includes(literal))
          throw new Error('a bounded number has no place in the generated grammar');
        text = text.replaceAll(literal, rule);
      }
      return await this.llama.createGrammar({ grammar: text });
    } catch (error) {
      throw new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `the structured output constraint could not be compiled into a grammar: ${(error as Error).message}`,
        { param: output.param },
      );
    }
  }
}
