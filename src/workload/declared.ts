/**
 * What a twin request declares as its output limit (`max_tokens`), given the trace's true output
 * length. Policies see only the declaration (Request.maxTokens); the true length drives the modelled
 * engine alone (TwinRequest.trueOutputTokens).
 *
 * - `exact`: the client declares the true length (a benchmark replay that sets max_tokens to the
 *   recorded answer length and ignores EOS). Optimistic: no live client knows this.
 * - `cap:N`: every request declares N. A true length above N is cut to N, as an engine stops there.
 * - `factor:K`: the client over-asks by K: ceil(K × true length), K >= 1.
 * - `none`: no max_tokens at all (the engine's own limit applies).
 *
 * The default, `cap:4096`, is the production-like case: chat front ends and SDKs mostly send one
 * generous round limit for every request, well above typical answers, and 4096 is the completion
 * limit of a generation of widely deployed chat models. A policy thus learns lengths from
 * completions rather than reading them off the declaration.
 */
import { z } from 'zod';
import { assertNever } from '../core/assert.ts';
import { invalidArgument } from '../core/errors.ts';

/** How a workload's requests declare max_tokens. */
export type DeclaredMaxTokens =
  | { readonly kind: 'exact' }
  | { readonly kind: 'cap'; readonly tokens: number }
  | { readonly kind: 'factor'; readonly factor: number }
  | { readonly kind: 'none' };

/** The default declaration, as written on the command line. */
export const DEFAULT_DECLARED_MAX_TOKENS = 'cap:4096';

/** The accepted forms, for error messages and help. */
export const DECLARED_MAX_TOKENS_FORMS = 'exact, cap:N (N >= 1), factor:K (K >= 1) or none';

/** Parses `exact`, `cap:N`, `factor:K` or `none`; undefined when the text is none of them. */
function tryParse(text: string): DeclaredMaxTokens | undefined {
  if (text === 'exact') return { kind: 'exact' };
  if (text === 'none') return { kind: 'none' };
  const cap = /^cap:(\d+)$/.exec(text);
  if (cap !== null) {
    const tokens = Number(cap[1]);
    return Number.isSafeInteger(tokens) && tokens >= 1 ? { kind: 'cap', tokens } : undefined;
  }
  const factor = /^factor:(\d+(?:\.\d+)?)$/.exec(text);
  if (factor !== null) {
    const k = Number(factor[1]);
    return Number.isFinite(k) && k >= 1 ? { kind: 'factor', factor: k } : undefined;
  }
  return undefined;
}

/** Parses a declaration; a bad one fails with SY_ERR_INVALID_ARGUMENT naming the accepted forms. */
export function parseDeclaredMaxTokens(text: string, param = 'declared-max-tokens'): DeclaredMaxTokens {
  const d = tryParse(text);
  if (d === undefined) throw invalidArgument(param, text, DECLARED_MAX_TOKENS_FORMS);
  return d;
}

/** The declaration as written (`cap:4096`), for reports. */
export function formatDeclaredMaxTokens(d: DeclaredMaxTokens): string {
  switch (d.kind) {
    case 'cap':
      return `cap:${d.tokens}`;
    case 'factor':
      return `factor:${d.factor}`;
    default:
      return d.kind;
  }
}

/** A declaration already parsed (a validated spec validated again keeps it). */
const parsedSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('exact') }),
  z.strictObject({ kind: z.literal('cap'), tokens: z.number().int().min(1) }),
  z.strictObject({ kind: z.literal('factor'), factor: z.number().min(1).finite() }),
  z.strictObject({ kind: z.literal('none') }),
]);

/**
 * The declaration in a workload spec or config: a string (or, in a spec validated before, its
 * parsed form); absent means DEFAULT_DECLARED_MAX_TOKENS.
 */
export const declaredMaxTokensSchema = z
  .union([z.string(), parsedSchema])
  .optional()
  .transform((value, ctx): DeclaredMaxTokens => {
    if (value === undefined) return parseDeclaredMaxTokens(DEFAULT_DECLARED_MAX_TOKENS);
    if (typeof value !== 'string') return value;
    const d = tryParse(value);
    if (d === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected ${DECLARED_MAX_TOKENS_FORMS}, got '${value}'` });
      return z.NEVER;
    }
    return d;
  });

/** The max_tokens a request with `trueTokens` of output declares. */
export function declaredMaxTokens(d: DeclaredMaxTokens, trueTokens: number): number | undefined {
  switch (d.kind) {
    case 'exact':
      return trueTokens;
    case 'cap':
      return d.tokens;
    case 'factor':
      return Math.max(1, Math.ceil(d.factor * trueTokens));
    case 'none':
      return undefined;
    default:
      return assertNever(d, 'declared max_tokens');
  }
}

/** The tokens the engine generates: the true length, cut at a declared cap (an engine stops there). */
export function generatedTokens(maxTokens: number | undefined, trueTokens: number): number {
  return maxTokens === undefined ? trueTokens : Math.min(trueTokens, maxTokens);
}
