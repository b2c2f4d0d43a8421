/**
 * Structured output on the built-in engines, read with the wire shapes vLLM reads
 * (vllm/entrypoints/openai/chat_completion/protocol.py, completion/protocol.py, responses):
 *
 * - chat and completions `response_format`: `{"type": "text"}` (nothing), `{"type": "json_object"}`
 *   (any JSON object), `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`;
 * - the Responses API's `text.format`: `{"type": "json_object"}`, or `{"type": "json_schema",
 *   "name", "schema", "strict"}` (the schema beside the type, not nested);
 * - vLLM's `structured_outputs: {"json" | "choice" | "json_object"}` and the older `guided_json`,
 *   `guided_choice` (vLLM up to 0.11). A `json` may be the schema or its JSON text, as vLLM takes it.
 *
 * What this module decides is the same on both engines, so a request gets the same answer or the
 * same 400 from either: the schema is checked against the subset of JSON Schema whose every output
 * the engines can make valid (node-llama-cpp's JSON-schema grammars, and the sim's instance
 * builder); a keyword outside it (`pattern`, `minimum`, `not`, a `$ref` outside `$defs`, ...) is 400
 * SY_ERR_UNSUPPORTED_PARAMETER naming it and where it is, never a grammar that ignores it. A schema
 * is bounded in size (SCHEMA_CHARS_MAX) and nesting (SCHEMA_DEPTH_MAX), and so are the counts it
 * asks for (COUNT_MAX): a `minLength` of a billion would be a grammar of a billion rules.
 *
 * Numeric bounds are held where a grammar can hold them by sign and digit count (NumberShape: zod's
 * `.int()`, `.nonnegative()`, pydantic's `ge=0`); others are 400. The schema is normalised for the
 * grammar compiler: `anyOf` as `oneOf` (one alternative is made,
 * which satisfies either), a one-element `allOf` merged, `definitions` as `$defs`, a list of types
 * as a `oneOf` of one type each, a boolean schema `true` as `{}`. Refused as vLLM cannot serve them
 * here either through node-llama-cpp: `regex`, `grammar` and `structural_tag` constraints (400
 * naming `structured_outputs`). Pure: no I/O.
 */
import { SwitchyardError } from '../core/errors.ts';

/** A JSON Schema node as read from the request (checked by `normalizeSchema`). */
export type JsonSchema = { readonly [keyword: string]: unknown };

/** One request's output constraint. `key` identifies it (grammar caches are keyed by it). */
export type StructuredOutput =
  | {
      readonly kind: 'json';
      /** The normalised schema (see the module comment). */
      readonly schema: JsonSchema;
      /** True for `json_object`: any JSON object (the sim answers `{}`). */
      readonly anyObject: boolean;
      readonly key: string;
      /** The request field that asked for it (errors about it name this). */
      readonly param: string;
    }
  | {
      readonly kind: 'choice';
      readonly choices: readonly string[];
      readonly key: string;
      readonly param: string;
    };

/** The longest schema (or list of choices), in characters of its JSON text. */
export const SCHEMA_CHARS_MAX = 32_768;
/** The deepest nesting of schema nodes (a property's schema is one level below its object's). */
export const SCHEMA_DEPTH_MAX = 32;
/** The largest `minLength`/`maxLength`/`minItems`/`maxItems`/`minProperties`/`maxProperties`. */
export const COUNT_MAX = 1024;
/** The most choices of a `choice` constraint. */
export const CHOICES_MAX = 256;

/** The schema of `json_object`: any object. */
const ANY_OBJECT: JsonSchema = { type: 'object', additionalProperties: true };

/** The most digits a generated number's integer part has (node-llama-cpp's number rules). */
export const NUMBER_DIGITS_MAX = 16;
/** The numeric bound keywords. */
const BOUNDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const;

/**
 * How a bounded integer or number is generated (kept in a normalised schema as `x-sy-number`):
 * `negative` allows a minus sign, `nonZero` makes an integer start with 1-9 (the smallest is 1), and
 * the integer part has at most `digits` digits. The bounds a grammar can hold that way are those
 * supported: a lower bound of 0 (or 1, exclusive 0, for an integer) or one at or below -9 (-10 for a
 * number), an upper bound at or above 9 (10); so zod's `.int()` (the safe-integer range: 15 digits),
 * `.nonnegative()`, `.positive()` on integers, pydantic's `ge=0`. An integer range of at most
 * COUNT_MAX values (pydantic's `ge=1, le=5`) becomes the enum of its values. Others (a number
 * between 0.5 and 2) are 400.
 */
export interface NumberShape {
  readonly negative: boolean;
  readonly nonZero: boolean;
  readonly digits: number;
}

/** The most digits d with every d-digit magnitude within `cap` (`strict`: below it, for fractions). */
function digitsWithin(cap: number, fractional: boolean): number {
  let d = 0;
  // A fractional d-digit number is below 10^d; an integer is at most 10^d - 1.
  while (d < NUMBER_DIGITS_MAX && (fractional ? 10 ** (d + 1) <= cap : 10 ** (d + 1) - 1 <= cap)) d++;
  return d;
}

/** Keywords that only describe: kept out of the grammar, never refused. */
const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  'discriminator',
]);
const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null', 'object', 'array']);
/** The string formats the grammars generate (node-llama-cpp's GbnfFormatString). */
export const FORMATS = ['date-time', 'date', 'time'] as const;
const COUNTS = ['minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties', 'maxProperties'] as const;
/** Keywords that say what a value is, beside which `oneOf`/`anyOf`/`$ref` would be ignored. */
const STRUCTURAL = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'prefixItems',
  'enum',
  'const',
  'format',
  ...COUNTS,
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPrimitive(v: unknown): v is string | number | boolean | null {
  return (
    v === null ||
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && Number.isFinite(v))
  );
}

function invalid(param: string, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${what}`, { param });
}

function unsupported(param: string, what: string): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_UNSUPPORTED_PARAMETER',
    `parameter '${param}' is not supported by the built-in engines: ${what}; ` +
      'rewrite the schema without it, or route the model to a vllm or sglang backend',
    { param },
  );
}

/** Walks one schema, checking and normalising it; `param` is the request field that holds it. */
class SchemaReader {
  /** `$defs` names seen anywhere, and those referenced (each must be defined somewhere). */
  private readonly defined = new Set<string>();
  private readonly referenced = new Map<string, string>();

  constructor(private readonly param: string) {}

  read(root: unknown): JsonSchema {
    const schema = this.node(root, '#', 0);
    for (const [name, at] of this.referenced)
      if (!this.defined.has(name))
        throw invalid(this.param, `$ref '#/$defs/${name}' at ${at} points to no definition`);
    return schema;
  }

  private unsupported(keyword: string, at: string, why = ''): SwitchyardError {
    return unsupported(
      this.param,
      `JSON Schema keyword '${keyword}' at ${at}${why === '' ? '' : ` (${why})`} cannot be enforced by the ` +
        "engines' grammars (supported: type, properties, required, additionalProperties, items, prefixItems, " +
        'enum, const, oneOf, anyOf, a one-element allOf, $ref to $defs, format date-time/date/time, ' +
        'min/max Length, Items and Properties, minimum/maximum of 0 or wide ranges, and annotations)',
    );
  }

  /**
   * The NumberShape of `node`'s numeric bounds (its type integer or number), or 400 naming the bound
   * the grammar cannot hold; bounds beside another type constrain nothing and are dropped.
   */
  private numberShape(node: Record<string, unknown>, at: string): Record<string, unknown> {
    const given = BOUNDS.filter((k) => node[k] !== undefined);
    if (given.length === 0) return node;
    const rest = Object.fromEntries(
      Object.entries(node).filter(([k]) => !(BOUNDS as readonly string[]).includes(k)),
    );
    if (node['type'] !== 'integer' && node['type'] !== 'number')
      return node['type'] === undefined ? node : rest;
    for (const k of given)
      if (typeof node[k] !== 'number' || !Number.isFinite(node[k]))
        throw invalid(this.param, `${at}/${k}: expected a number`);
    const fractional = node['type'] === 'number';
    const bound = (k: (typeof BOUNDS)[number]): number | undefined => node[k] as number | undefined;
    // An enum or const is generated as its values: keep those within the bounds.
    if (node['enum'] !== undefined || node['const'] !== undefined) {
      const within = (v: unknown): boolean =>
        typeof v === 'number' &&
        !(bound('minimum') !== undefined && v < (bound('minimum') as number)) &&
        !(bound('maximum') !== undefined && v > (bound('maximum') as number)) &&
        !(bound('exclusiveMinimum') !== undefined && v <= (bound('exclusiveMinimum') as number)) &&
        !(bound('exclusiveMaximum') !== undefined && v >= (bound('exclusiveMaximum') as number));
      const values = node['const'] !== undefined ? [node['const']] : (node['enum'] as unknown[]);
      const kept = values.filter(within);
      if (kept.length === 0)
        throw invalid(this.param, `${at}: no enum or const value lies within its bounds`);
      return node['const'] !== undefined ? rest : { ...rest, enum: kept };
    }
    if (!fractional) {
      // An integer range of at most COUNT_MAX values (pydantic's ge=1, le=5) is the enum of its values.
      const lows = [
        bound('minimum'),
        ((e) => (e === undefined ? undefined : Math.floor(e) + 1))(bound('exclusiveMinimum')),
      ];
      const highs = [
        bound('maximum'),
        ((e) => (e === undefined ? undefined : Math.ceil(e) - 1))(bound('exclusiveMaximum')),
      ];
      const defined = (xs: (number | undefined)[]): number[] =>
        xs.filter((x): x is number => x !== undefined);
      const low = defined(lows).length === 0 ? undefined : Math.ceil(Math.max(...defined(lows)));
      const high = defined(highs).length === 0 ? undefined : Math.floor(Math.min(...defined(highs)));
      if (low !== undefined && high !== undefined && high - low < COUNT_MAX) {
        if (high < low) throw invalid(this.param, `${at}: no integer lies within its bounds`);
        return { ...rest, enum: Array.from({ length: high - low + 1 }, (_, i) => low + i) };
      }
    }
    const refuse = (k: string): SwitchyardError =>
      this.unsupported(
        k,
        `${at}/${k}`,
        `${String(node[k])}: the grammars hold a lower bound of 0${fractional ? '' : ' or 1'} or at most -${fractional ? 10 : 9}, an upper bound of at least ${fractional ? 10 : 9}`,
      );
    let digits = NUMBER_DIGITS_MAX;
    let negative = true;
    let nonZero = false;
    const max = bound('maximum');
    const exMax = bound('exclusiveMaximum');
    for (const [k, v] of [
      ['maximum', max],
      ['exclusiveMaximum', exMax],
    ] as const) {
      if (v === undefined) continue;
      // An integer below an exclusive bound E is at most ceil(E) - 1; a fraction below E stays below 10^d <= E.
      const cap = k === 'exclusiveMaximum' && !fractional ? Math.ceil(v) - 1 : v;
      const d = digitsWithin(cap, fractional);
      if (d < 1) throw refuse(k);
      digits = Math.min(digits, d);
    }
    for (const [k, v] of [
      ['minimum', bound('minimum')],
      ['exclusiveMinimum', bound('exclusiveMinimum')],
    ] as const) {
      if (v === undefined) continue;
      const low = k === 'exclusiveMinimum' && !fractional ? Math.floor(v) + 1 : v;
      if (low === 0 && k === 'minimum') negative = false;
      else if (!fractional && low === 1) {
        negative = false;
        nonZero = true;
      } else if (low < 0) {
        const d = digitsWithin(-low, fractional);
        if (d < 1) throw refuse(k);
        digits = Math.min(digits, d);
      } else throw refuse(k);
    }
    const shape: NumberShape = { negative, nonZero, digits };
    return { ...rest, 'x-sy-number': shape };
  }

  private node(value: unknown, at: string, depth: number): JsonSchema {
    if (depth > SCHEMA_DEPTH_MAX)
      throw invalid(this.param, `the schema nests deeper than ${SCHEMA_DEPTH_MAX} levels (at ${at})`);
    if (value === true) return {};
    if (value === false) throw this.unsupported('false', at, 'a schema no value satisfies');
    if (!isObject(value)) throw invalid(this.param, `expected a JSON Schema object at ${at}`);
    let node: Record<string, unknown> = value;
    // A one-element allOf (what pydantic wrote for a described $ref) is its element.
    if (node['allOf'] !== undefined) {
      const all = node['allOf'];
      if (!Array.isArray(all) || all.length !== 1)
        throw this.unsupported('allOf', at, 'more than one element');
      const { allOf: _all, ...rest } = node;
      node = { ...rest, ...(isObject(all[0]) ? all[0] : { allOf: [all[0]] }) };
      if (node['allOf'] !== undefined) throw this.unsupported('allOf', at);
    }
    const out: Record<string, unknown> = {};
    const defs: Record<string, JsonSchema> = {};
    for (const [keyword, v] of Object.entries(node)) {
      const here = `${at}/${keyword}`;
      if (ANNOTATIONS.has(keyword)) continue;
      switch (keyword) {
        case 'type': {
          const types = Array.isArray(v) ? v : [v];
          if (types.length === 0 || types.some((t) => typeof t !== 'string' || !TYPES.has(t)))
            throw invalid(this.param, `${here}: expected one of ${[...TYPES].join(', ')}, or a list of them`);
          out['type'] = types.length === 1 ? types[0] : [...new Set(types)];
          break;
        }
        case 'properties': {
          if (!isObject(v)) throw invalid(this.param, `${here}: expected an object of schemas`);
          const props: Record<string, JsonSchema> = {};
          for (const [name, s] of Object.entries(v))
            props[name] = this.node(
              s,
              `${here}/${name.replaceAll('~', '~0').replaceAll('/', '~1')}`,
              depth + 1,
            );
          out['properties'] = props;
          break;
        }
        case 'required':
          if (!Array.isArray(v) || v.some((r) => typeof r !== 'string'))
            throw invalid(this.param, `${here}: expected a list of property names`);
          out['required'] = [...new Set(v as string[])];
          break;
        case 'additionalProperties':
          out['additionalProperties'] = typeof v === 'boolean' ? v : this.node(v, here, depth + 1);
          break;
        case 'items':
          if (v === true) break;
          if (v === false) out['maxItems'] = 0;
          else if (Array.isArray(v))
            out['prefixItems'] = v.map((s, i) => this.node(s, `${here}/${i}`, depth + 1));
          else out['items'] = this.node(v, here, depth + 1);
          break;
        case 'prefixItems':
          if (!Array.isArray(v)) throw invalid(this.param, `${here}: expected a list of schemas`);
          out['prefixItems'] = v.map((s, i) => this.node(s, `${here}/${i}`, depth + 1));
          break;
        case 'enum':
          if (!Array.isArray(v) || v.length === 0)
            throw invalid(this.param, `${here}: expected a non-empty list`);
          if (!v.every(isPrimitive)) throw this.unsupported('enum', here, 'an object or array member');
          out['enum'] = v;
          break;
        case 'const':
          if (!isPrimitive(v)) throw this.unsupported('const', here, 'an object or array value');
          out['const'] = v;
          break;
        case 'format':
          if (!(FORMATS as readonly unknown[]).includes(v))
            throw this.unsupported('format', here, `'${String(v)}'`);
          out['format'] = v;
          break;
        case 'oneOf':
        case 'anyOf': {
          if (!Array.isArray(v) || v.length === 0)
            throw invalid(this.param, `${here}: expected a non-empty list of schemas`);
          if (out['oneOf'] !== undefined) throw this.unsupported(keyword, at, 'both oneOf and anyOf');
          out['oneOf'] = v.map((s, i) => this.node(s, `${here}/${i}`, depth + 1));
          break;
        }
        case '$ref': {
          const m = typeof v === 'string' ? /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(v) : null;
          if (m === null)
            throw this.unsupported(
              '$ref',
              here,
              `'${String(v)}': only #/$defs/<name> and #/definitions/<name>`,
            );
          const name = (m[1] as string).replaceAll('~1', '/').replaceAll('~0', '~');
          if (!this.referenced.has(name)) this.referenced.set(name, here);
          out['$ref'] = `#/$defs/${name}`;
          break;
        }
        case '$defs':
        case 'definitions':
          if (!isObject(v)) throw invalid(this.param, `${here}: expected an object of schemas`);
          for (const [name, s] of Object.entries(v)) {
            defs[name] = this.node(s, `${here}/${name}`, depth + 1);
            this.defined.add(name);
          }
          break;
        case 'minimum':
        case 'maximum':
        case 'exclusiveMinimum':
        case 'exclusiveMaximum':
          out[keyword] = v;
          break;
        case 'uniqueItems':
          if (v === true) throw this.unsupported('uniqueItems', here);
          break;
        default:
          if ((COUNTS as readonly string[]).includes(keyword)) {
            if (!(Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= COUNT_MAX))
              throw invalid(this.param, `${here}: expected an integer from 0 to ${COUNT_MAX}`);
            out[keyword] = v;
            break;
          }
          throw this.unsupported(keyword, here);
      }
    }
    for (const [min, max] of [
      ['minLength', 'maxLength'],
      ['minItems', 'maxItems'],
      ['minProperties', 'maxProperties'],
    ] as const)
      if (
        typeof out[min] === 'number' &&
        typeof out[max] === 'number' &&
        (out[min] as number) > (out[max] as number)
      )
        throw invalid(this.param, `${at}: ${min} ${String(out[min])} is above ${max} ${String(out[max])}`);
    const propertyCount = isObject(out['properties']) ? Object.keys(out['properties']).length : 0;
    if (
      typeof out['minProperties'] === 'number' &&
      out['minProperties'] > propertyCount &&
      out['additionalProperties'] !== true &&
      !isObject(out['additionalProperties'])
    )
      throw this.unsupported('minProperties', at, 'more than the properties without additionalProperties');
    if (out['format'] !== undefined && (out['minLength'] !== undefined || out['maxLength'] !== undefined))
      throw this.unsupported('format', at, 'with minLength or maxLength');
    const alternatives =
      out['oneOf'] !== undefined ? 'oneOf' : out['$ref'] !== undefined ? '$ref' : undefined;
    if (alternatives !== undefined) {
      const beside = Object.keys(out).find((k) => STRUCTURAL.has(k));
      if (beside !== undefined) throw this.unsupported(beside, at, `beside ${alternatives}`);
    }
    if (
      Array.isArray(out['required']) &&
      out['properties'] === undefined &&
      (out['required'] as string[]).length > 0
    )
      out['properties'] = {};
    if (Array.isArray(out['required']))
      for (const name of out['required'] as string[])
        if (!Object.hasOwn(out['properties'] as object, name))
          throw this.unsupported('required', at, `'${name}' is not in properties`);
    if (Object.keys(defs).length > 0) out['$defs'] = defs;
    // A list of types becomes one alternative per type, so each keeps the node's other keywords.
    if (Array.isArray(out['type'])) {
      const { type, $defs, ...rest } = out;
      return {
        oneOf: (type as string[]).map((t) => this.numberShape({ ...rest, type: t }, at)),
        ...($defs === undefined ? {} : { $defs }),
      };
    }
    if (BOUNDS.some((k) => out[k] !== undefined) && out['type'] === undefined)
      throw this.unsupported(
        BOUNDS.find((k) => out[k] !== undefined) as string,
        at,
        'a bound without type integer or number',
      );
    return this.numberShape(out, at);
  }
}

/**
 * The normalised schema (see the module comment), or 400 naming `param`: SY_ERR_INVALID_ARGUMENT for
 * a malformed or oversized schema, SY_ERR_UNSUPPORTED_PARAMETER for a keyword the engines cannot
 * enforce. `value` may be the schema's JSON text (vLLM's `guided_json` and `structured_outputs.json`).
 */
export function normalizeSchema(value: unknown, param: string): JsonSchema {
  let schema = value;
  if (typeof value === 'string') {
    if (value.length > SCHEMA_CHARS_MAX) throw tooLong(param, value.length);
    try {
      schema = JSON.parse(value) as unknown;
    } catch {
      throw invalid(param, 'expected a JSON Schema (an object, or its JSON text)');
    }
  } else {
    const chars = JSON.stringify(value)?.length ?? 0;
    if (chars > SCHEMA_CHARS_MAX) throw tooLong(param, chars);
  }
  if (!isObject(schema) && typeof schema !== 'boolean')
    throw invalid(param, 'expected a JSON Schema (an object, or its JSON text)');
  return new SchemaReader(param).read(schema);
}

function tooLong(param: string, chars: number): SwitchyardError {
  return invalid(param, `the schema is ${chars} characters of JSON, above the bound of ${SCHEMA_CHARS_MAX}`);
}

function jsonOutput(schema: JsonSchema, anyObject: boolean, param: string): StructuredOutput {
  return { kind: 'json', schema, anyObject, key: `json:${JSON.stringify(schema)}`, param };
}

/** A choice constraint from `value`, or 400 naming `param`. */
function choiceOutput(value: unknown, param: string): StructuredOutput {
  if (!Array.isArray(value) || value.length === 0 || value.some((c) => typeof c !== 'string'))
    throw invalid(param, 'expected a non-empty list of strings');
  const choices = [...new Set(value as string[])];
  if (choices.length > CHOICES_MAX)
    throw invalid(param, `${choices.length} choices, above the bound of ${CHOICES_MAX}`);
  const chars = JSON.stringify(choices).length;
  if (chars > SCHEMA_CHARS_MAX)
    throw invalid(
      param,
      `the choices are ${chars} characters of JSON, above the bound of ${SCHEMA_CHARS_MAX}`,
    );
  if (choices.includes('')) throw invalid(param, 'a choice is the empty string');
  return { kind: 'choice', choices, key: `choice:${JSON.stringify(choices)}`, param };
}

/** True when `v` asks for something: not absent, null, false, or an empty string, list or object. */
function asks(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

/** `response_format` (chat, completions): undefined for none or `text`. */
function responseFormat(value: unknown): StructuredOutput | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalid('response_format', 'expected an object with a type');
  const type = value['type'];
  if (type === 'text') return undefined;
  if (type === 'json_object') return jsonOutput(ANY_OBJECT, true, 'response_format');
  if (type === 'json_schema') {
    const inner = value['json_schema'];
    if (!isObject(inner))
      throw invalid('response_format.json_schema', 'expected an object with name and schema');
    // vLLM's JsonSchemaResponseFormat reads the schema from `schema` (alias of its json_schema field).
    const schema = inner['schema'] ?? inner['json_schema'];
    if (schema === undefined || schema === null)
      throw invalid('response_format.json_schema.schema', 'expected a JSON Schema object');
    return jsonOutput(
      normalizeSchema(schema, 'response_format.json_schema.schema'),
      false,
      'response_format',
    );
  }
  throw new SwitchyardError(
    'SY_ERR_UNSUPPORTED_PARAMETER',
    `parameter 'response_format' of type ${String(JSON.stringify(type)).slice(0, 40)} is not supported by the ` +
      "built-in engines: they serve 'text', 'json_object' and 'json_schema'",
    { param: 'response_format' },
  );
}

/** vLLM's `structured_outputs` constraints the engines cannot enforce through node-llama-cpp. */
const STRUCTURED_REFUSED = ['regex', 'grammar', 'structural_tag'];

/** vLLM's `structured_outputs`: undefined when it asks for nothing. */
function structuredOutputs(value: unknown): StructuredOutput[] {
  if (value === undefined || value === null) return [];
  if (!isObject(value)) throw invalid('structured_outputs', 'expected an object');
  for (const key of STRUCTURED_REFUSED)
    if (asks(value[key]))
      throw new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `parameter 'structured_outputs' is not supported by the built-in engines with '${key}': only json, ` +
          'choice and json_object are enforced; remove it, or route the model to a vllm or sglang backend',
        { param: 'structured_outputs' },
      );
  const found: StructuredOutput[] = [];
  if (asks(value['json']))
    found.push(
      jsonOutput(normalizeSchema(value['json'], 'structured_outputs.json'), false, 'structured_outputs'),
    );
  if (asks(value['choice'])) found.push(choiceOutput(value['choice'], 'structured_outputs.choice'));
  if (value['json_object'] === true) found.push(jsonOutput(ANY_OBJECT, true, 'structured_outputs'));
  return found;
}

/** One constraint of `found`, or 400 when the request asked for more than one (as vLLM refuses it). */
function one(found: { param: string; output: StructuredOutput }[]): StructuredOutput | undefined {
  if (found.length > 1)
    throw invalid(
      found[1]!.param,
      `only one structured output constraint per request; got ${found.map((f) => f.param).join(' and ')}`,
    );
  return found[0]?.output;
}

/**
 * The structured output a (decoded) chat or completions body asks for, through `response_format`,
 * `structured_outputs`, `guided_json` or `guided_choice`; undefined for none. A malformed,
 * unenforceable or doubled constraint throws 400 naming its field.
 */
export function structuredOutputOf(body: unknown): StructuredOutput | undefined {
  if (!isObject(body)) return undefined;
  const found: { param: string; output: StructuredOutput }[] = [];
  const format = responseFormat(body['response_format']);
  if (format !== undefined) found.push({ param: 'response_format', output: format });
  for (const output of structuredOutputs(body['structured_outputs']))
    found.push({ param: 'structured_outputs', output });
  if (asks(body['guided_json']))
    found.push({
      param: 'guided_json',
      output: jsonOutput(normalizeSchema(body['guided_json'], 'guided_json'), false, 'guided_json'),
    });
  if (asks(body['guided_choice']))
    found.push({ param: 'guided_choice', output: choiceOutput(body['guided_choice'], 'guided_choice') });
  return one(found);
}

/**
 * The structured output a Responses body asks for through `text.format` (`json_object`, or
 * `json_schema` with `name`, `schema`, `strict` beside the type); undefined for none or `text`.
 */
export function responsesStructuredOutput(body: unknown): StructuredOutput | undefined {
  if (!isObject(body)) return undefined;
  const text = body['text'];
  if (text === undefined || text === null) return undefined;
  if (!isObject(text)) throw invalid('text', 'expected an object');
  const format = text['format'];
  if (format === undefined || format === null) return undefined;
  if (!isObject(format)) throw invalid('text.format', 'expected an object with a type');
  const type = format['type'];
  if (type === 'text') return undefined;
  if (type === 'json_object') return jsonOutput(ANY_OBJECT, true, 'text.format');
  if (type === 'json_schema') {
    const schema = format['schema'];
    if (schema === undefined || schema === null)
      throw invalid('text.format.schema', 'expected a JSON Schema object');
    return jsonOutput(normalizeSchema(schema, 'text.format.schema'), false, 'text.format');
  }
  throw new SwitchyardError(
    'SY_ERR_UNSUPPORTED_PARAMETER',
    `parameter 'text.format' of type ${String(JSON.stringify(type)).slice(0, 40)} is not supported by the ` +
      "built-in engines: they serve 'text', 'json_object' and 'json_schema'",
    { param: 'text.format' },
  );
}

/** The deepest `$ref` chain the sim's instance builder follows before it gives up. */
const INSTANCE_DEPTH_MAX = 64;

/** A value of each generated string format. */
const FORMAT_SAMPLES: Record<string, string> = {
  'date-time': '1970-01-01T00:00:00Z',
  date: '1970-01-01',
  time: '00:00:00Z',
};

/** True for a node whose instance needs no recursion (tried first among alternatives). */
function isLeaf(node: JsonSchema): boolean {
  return (
    node['$ref'] === undefined &&
    node['oneOf'] === undefined &&
    node['type'] !== 'object' &&
    node['type'] !== 'array'
  );
}

/**
 * A small value valid under a normalised schema (the sim engine's answer): the const or first enum
 * member; per type "", 0, false, null (or a date-time format's sample, a string of `minLength`
 * "x"); an object of its required properties (and more, to `minProperties`); an array of
 * `minItems` items (its `prefixItems` first). An alternative that needs no recursion is taken
 * first, so a recursive schema (a tree whose children are optional) ends. A schema whose every
 * instance nests past INSTANCE_DEPTH_MAX is 400.
 */
export function minimalInstance(schema: JsonSchema, param = 'response_format'): unknown {
  const build = (node: JsonSchema, defs: Readonly<Record<string, JsonSchema>>, depth: number): unknown => {
    if (depth > INSTANCE_DEPTH_MAX)
      throw invalid(param, `the schema has no instance nesting less than ${INSTANCE_DEPTH_MAX} levels deep`);
    const scope = isObject(node['$defs'])
      ? { ...defs, ...(node['$defs'] as Record<string, JsonSchema>) }
      : defs;
    if (node['const'] !== undefined) return node['const'];
    if (Array.isArray(node['enum'])) return node['enum'][0];
    if (typeof node['$ref'] === 'string') {
      const target = scope[(node['$ref'] as string).slice('#/$defs/'.length)] as JsonSchema;
      return build(target, scope, depth + 1);
    }
    if (Array.isArray(node['oneOf'])) {
      const alternatives = node['oneOf'] as JsonSchema[];
      const ordered = [...alternatives.filter(isLeaf), ...alternatives.filter((a) => !isLeaf(a))];
      return build(ordered[0] as JsonSchema, scope, depth + 1);
    }
    switch (node['type']) {
      case 'string':
        return typeof node['format'] === 'string'
          ? FORMAT_SAMPLES[node['format']]
          : 'x'.repeat((node['minLength'] as number | undefined) ?? 0);
      case 'number':
      case 'integer':
        return (node['x-sy-number'] as NumberShape | undefined)?.nonZero === true ? 1 : 0;
      case 'boolean':
        return false;
      case 'object': {
        const props = (node['properties'] ?? {}) as Record<string, JsonSchema>;
        const out: Record<string, unknown> = {};
        for (const name of (node['required'] ?? []) as string[])
          out[name] = build(props[name] as JsonSchema, scope, depth + 1);
        const min = (node['minProperties'] as number | undefined) ?? 0;
        for (const [name, s] of Object.entries(props)) {
          if (Object.keys(out).length >= min) break;
          if (!(name in out)) out[name] = build(s, scope, depth + 1);
        }
        const extra = node['additionalProperties'];
        for (let i = 0; Object.keys(out).length < min; i++)
          if (!(`k${i}` in out)) out[`k${i}`] = isObject(extra) ? build(extra, scope, depth + 1) : null;
        return out;
      }
      case 'array': {
        const prefix = (node['prefixItems'] ?? []) as JsonSchema[];
        const min = (node['minItems'] as number | undefined) ?? 0;
        const out: unknown[] = [];
        for (let i = 0; i < Math.max(min, 0); i++) {
          const s = prefix[i] ?? (node['items'] as JsonSchema | undefined);
          out.push(s === undefined ? null : build(s, scope, depth + 1));
        }
        return out;
      }
      default:
        return null;
    }
  };
  return build(schema, {}, 0);
}

/** The prompt characters `schemaInText` reads (its end: where a client puts its format instructions). */
const SCHEMA_SCAN_CHARS = 65_536;

/**
 * The last JSON Schema written out in `text` (an object with `type: "object"`, `properties` or
 * `$schema`, that `normalizeSchema` takes), normalised; undefined when there is none. JSON mode
 * clients put the schema in the prompt and ask for `json_object` (the AI SDK's openai-compatible
 * provider without `supportsStructuredOutputs`, LangChain's `jsonMode` with format instructions):
 * a model reads it there, and the sim, which reads no prompt, answers its minimal instance from it,
 * still a JSON object. One pass over the last SCHEMA_SCAN_CHARS characters finds the top-level
 * `{...}` spans (quotes tracked only inside them), then the spans are tried from the last.
 */
export function schemaInText(text: string): JsonSchema | undefined {
  const from = Math.max(0, text.length - SCHEMA_SCAN_CHARS);
  const spans: [number, number][] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (depth === 0) {
      if (c === '{') {
        depth = 1;
        start = i;
      }
      continue;
    }
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) spans.push([start, i + 1]);
  }
  for (let k = spans.length - 1; k >= 0; k--) {
    const [a, b] = spans[k] as [number, number];
    let value: unknown;
    try {
      value = JSON.parse(text.slice(a, b));
    } catch {
      continue;
    }
    if (!isObject(value)) continue;
    if (value['type'] !== 'object' && value['properties'] === undefined && value['$schema'] === undefined)
      continue;
    try {
      return normalizeSchema(value, 'response_format');
    } catch {
      // Not a schema the engines take: look further back.
    }
  }
  return undefined;
}
