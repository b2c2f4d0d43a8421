/**
 * `POST /v1/embeddings` for the built-in engines: the request's bounds and a response writer that
 * never holds the whole answer.
 *
 * Bounds (each refusal is 400 SY_ERR_INVALID_ARGUMENT with `param` naming the field):
 * - at most EMBEDDING_INPUTS_MAX inputs, EMBEDDING_INPUT_TOKENS_MAX tokens in any one of them and
 *   EMBEDDING_TOKENS_MAX tokens summed over them: OpenAI's documented limits for its embeddings
 *   endpoint (2048 inputs, 8,192 tokens an input, 300,000 tokens a request). An input over its
 *   bound is refused naming its index, as OpenAI refuses one past the model's context, rather than
 *   embedded;
 * - `dimensions` at most EMBEDDING_DIMENSIONS_MAX, the widest OpenAI embedding model
 *   (text-embedding-3-large, 3072);
 * - inputs x dimensions at most EMBEDDING_OUTPUT_FLOATS_MAX: the answer's size. Without it one 23 KB
 *   request (2048 inputs x 8192 dimensions) asked for a 361 MB answer and froze the engine.
 *
 * The answer goes out in slices of at most WRITE_SLICE_FLOATS numbers, each after the previous one
 * drained and after a turn of the event loop, so a large answer does not stall the engine's other
 * requests (a chat's tokens, /health) and its memory stays near one slice.
 */
import type { ServerResponse } from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { z } from 'zod';
import { SwitchyardError } from '../core/errors.ts';
import { estimateTokens } from '../core/text-prefix.ts';

/** Default embedding width of the pseudo-embeddings. */
export const EMBEDDING_DIMENSIONS_DEFAULT = 384;
/** Widest embedding a request may ask for: OpenAI's widest model (text-embedding-3-large). */
export const EMBEDDING_DIMENSIONS_MAX = 3072;
/** Inputs one embeddings request may carry (OpenAI's documented limit). */
export const EMBEDDING_INPUTS_MAX = 2048;
/**
 * Tokens one input may carry: the context of OpenAI's embedding models (its API reference for
 * POST /v1/embeddings caps every input at 8,192 tokens, for all of its embedding models).
 * Text is counted by the same estimate as everywhere else (core/text-prefix.ts), token ids by count.
 */
export const EMBEDDING_INPUT_TOKENS_MAX = 8192;
/** Tokens one embeddings request may carry, summed over its inputs (OpenAI's documented limit). */
export const EMBEDDING_TOKENS_MAX = 300_000;
/**
 * Numbers one answer may carry (inputs x dimensions): 2^20, which admits EMBEDDING_INPUTS_MAX inputs
 * at 512 dimensions, and bounds the JSON answer near 22 MB (about 21 characters a number).
 */
export const EMBEDDING_OUTPUT_FLOATS_MAX = 1 << 20;
/** Numbers formatted and written per slice before the writer yields to the event loop. */
const WRITE_SLICE_FLOATS = 1 << 16;

const embeddingBodySchema = z.looseObject({
  model: z.string().min(1).max(512),
  // The counts (1 to EMBEDDING_INPUTS_MAX inputs, tokens per input) are checked after the shape: a
  // bound inside a union member fails that member, and zod then reports only "Invalid input".
  input: z.union([
    z.string(),
    z.array(z.string()),
    z.array(z.number().int().min(0)),
    z.array(z.array(z.number().int().min(0)).min(1)),
  ]),
  encoding_format: z.enum(['float', 'base64']).optional(),
  // null is "absent" for these two, as in vLLM's request (Optional[...] = None): the Python openai
  // SDK sends `dimensions=None` as null. encoding_format has no null there, nor here.
  dimensions: z.number().int().min(1).max(EMBEDDING_DIMENSIONS_MAX).nullish(),
  user: z.string().max(256).nullish(),
});

/** A checked embeddings request. */
export interface EmbeddingRequest {
  readonly model: string;
  /** One text per input (token ids joined by spaces). */
  readonly texts: readonly string[];
  /** Whether the inputs were token ids (a backend's own `embed` takes text only). */
  readonly tokenIds: boolean;
  readonly promptTokens: number;
  readonly dimensions: number;
  readonly base64: boolean;
}

function invalid(param: string, message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${message}`, {
    param,
  });
}

/** The inputs as texts, and each one's token count (given for ids, estimated for text, at least 1). */
function inputTexts(raw: z.infer<typeof embeddingBodySchema>['input']): {
  texts: string[];
  tokenIds: boolean;
  tokens: number[];
} {
  if (typeof raw === 'string') return { texts: [raw], tokenIds: false, tokens: [textTokens(raw)] };
  if (typeof raw[0] === 'string') {
    const texts = raw as string[];
    return { texts, tokenIds: false, tokens: texts.map(textTokens) };
  }
  if (typeof raw[0] === 'number') {
    const ids = raw as number[];
    return { texts: [ids.join(' ')], tokenIds: true, tokens: [ids.length] };
  }
  const lists = raw as number[][];
  return { texts: lists.map((ids) => ids.join(' ')), tokenIds: true, tokens: lists.map((ids) => ids.length) };
}

function textTokens(text: string): number {
  return Math.max(1, estimateTokens(text));
}

/** Refuses the first input over EMBEDDING_INPUT_TOKENS_MAX, naming its index; returns the tokens summed. */
function checkedTokens(tokens: readonly number[]): number {
  let sum = 0;
  for (let index = 0; index < tokens.length; index++) {
    const n = tokens[index] as number;
    if (n > EMBEDDING_INPUT_TOKENS_MAX)
      throw invalid(
        'input',
        `input ${index} has ${n} tokens; the limit is ${EMBEDDING_INPUT_TOKENS_MAX} per input (split it, or shorten it)`,
      );
    sum += n;
  }
  return sum;
}

/**
 * Checks an (already JSON-decoded) embeddings body against the schema and the bounds above; throws
 * 400 SY_ERR_INVALID_ARGUMENT naming the field. The model is left to the caller.
 */
export function parseEmbeddingBody(body: unknown): EmbeddingRequest {
  const r = embeddingBodySchema.safeParse(body);
  if (!r.success) {
    const first = r.error.issues[0];
    const param = first === undefined ? 'body' : first.path.map(String).join('.') || 'body';
    throw invalid(param, String(first?.message));
  }
  const { texts, tokenIds, tokens } = inputTexts(r.data.input);
  if (texts.length === 0) {
    throw invalid(
      'input',
      `no inputs; send a string, or a list of 1 to ${EMBEDDING_INPUTS_MAX} strings or token-id lists`,
    );
  }
  if (texts.length > EMBEDDING_INPUTS_MAX) {
    throw invalid(
      'input',
      `${texts.length} inputs; the limit is ${EMBEDDING_INPUTS_MAX} per request (send them in several requests)`,
    );
  }
  const promptTokens = checkedTokens(tokens);
  if (promptTokens > EMBEDDING_TOKENS_MAX) {
    throw invalid(
      'input',
      `${promptTokens} tokens over all inputs; the limit is ${EMBEDDING_TOKENS_MAX} per request`,
    );
  }
  const dimensions = r.data.dimensions ?? EMBEDDING_DIMENSIONS_DEFAULT;
  const floats = texts.length * dimensions;
  if (floats > EMBEDDING_OUTPUT_FLOATS_MAX) {
    throw invalid(
      'dimensions',
      `${texts.length} inputs x ${dimensions} dimensions = ${floats} numbers in the answer; the limit is ` +
        `${EMBEDDING_OUTPUT_FLOATS_MAX} per request (send fewer inputs per request, or fewer dimensions)`,
    );
  }
  return {
    model: r.data.model,
    texts,
    tokenIds,
    promptTokens,
    dimensions,
    base64: r.data.encoding_format === 'base64',
  };
}

/** Deterministic unit vector from a text: xorshift32 seeded by the text's FNV-1a hash. */
export function pseudoEmbedding(text: string, dimensions: number): number[] {
  return Array.from(pseudoEmbeddingInto(text, new Float64Array(dimensions)));
}

/** `pseudoEmbedding` written into `out` (its length is the width), without allocating. */
function pseudoEmbeddingInto(text: string, out: Float64Array): Float64Array {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  let x = h >>> 0 || 1;
  let norm = 0;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const v = (x >>> 0) / 0x80000000 - 1;
    out[i] = v;
    norm += v * v;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! * scale;
  return out;
}

/** One embedding as its JSON value: a number list (shortest round-trip form) or base64 float32. */
function embeddingJson(v: ArrayLike<number>, base64: boolean): string {
  if (base64) return `"${Buffer.from(Float32Array.from(v).buffer).toString('base64')}"`;
  if (v.length === 0) return '[]';
  let s = `[${v[0]}`;
  for (let i = 1; i < v.length; i++) s += `,${v[i]}`;
  return `${s}]`;
}

/** Resolves when `res` can take more (or is gone); false when the client left. */
async function writable(res: ServerResponse, ok: boolean): Promise<boolean> {
  if (!ok && !res.destroyed) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
  await nextTurn();
  return !res.destroyed;
}

/**
 * Writes the 200 answer for `request`: the backend's `vectors` when given, else pseudo-embeddings
 * of the texts. Streams in slices (chunked encoding), yielding between them; stops if the client left.
 */
export async function writeEmbeddings(
  res: ServerResponse,
  request: EmbeddingRequest,
  vectors: readonly (readonly number[])[] | undefined,
  headers: Record<string, string>,
): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/json', ...headers });
  let out = '{"object":"list","data":[';
  let sliceFloats = 0;
  const scratch = new Float64Array(request.dimensions);
  for (let index = 0; index < request.texts.length; index++) {
    const v = vectors?.[index] ?? pseudoEmbeddingInto(request.texts[index]!, scratch);
    out += `${index === 0 ? '' : ','}{"object":"embedding","index":${index},"embedding":${embeddingJson(v, request.base64)}}`;
    sliceFloats += v.length;
    if (sliceFloats >= WRITE_SLICE_FLOATS) {
      const ok = res.write(out);
      out = '';
      sliceFloats = 0;
      if (!(await writable(res, ok))) return;
    }
  }
  const usage = `{"prompt_tokens":${request.promptTokens},"total_tokens":${request.promptTokens}}`;
  res.end(`${out}],"model":${JSON.stringify(request.model)},"usage":${usage}}`);
}
