/**
 * vLLM's extra request fields (sent by clients through the OpenAI SDKs' `extra_body`) that the
 * built-in engines cannot honour. Each is refused with 400 SY_ERR_UNSUPPORTED_PARAMETER naming it
 * when the request asks for it, rather than an answer that silently ignores it: a client that sent
 * `guided_json` or `structured_outputs` parses the text as JSON, one that sent `prompt_logprobs`
 * or `return_token_ids` reads fields it would never get. Absent, null, false and empty values ask
 * for nothing and are served, as vLLM reads them. The gateway passes these fields to real backends
 * untouched; only the built-in engines answer this.
 *
 * The fields and their meaning follow vLLM's request models (vllm/entrypoints/openai/
 * chat_completion/protocol.py, completion/protocol.py: `structured_outputs`, `prompt_logprobs`,
 * `allowed_token_ids`, `bad_words`, `logits_processors`, `use_beam_search`, `return_token_ids`,
 * `truncate_prompt_tokens`, `chat_template`; the `guided_*` fields of vLLM up to 0.11, which
 * `structured_outputs` replaced). A request `chat_template` is refused by vLLM too unless it runs
 * with --trust-request-chat-template (serving_chat.py).
 *
 * Sampling fields (top_k, min_p, repetition_penalty, ...) are not here: the sim's filler text has no
 * distribution to sample from, and the llama backend maps them itself (llama-backend.ts).
 */
import { SwitchyardError } from '../core/errors.ts';

/** True when `value` asks for something: not absent, null, false, an empty list, string or object. */
function asked(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.values(value).some(asked);
  return true;
}

/** `structured_outputs`' constraint keys (vLLM's StructuredOutputsParams.all_constraints_none). */
const STRUCTURED_CONSTRAINTS = ['json', 'regex', 'choice', 'grammar', 'json_object', 'structural_tag'];

const REFUSED: readonly { param: string; why: string; asks?: (v: unknown) => boolean }[] = [
  {
    param: 'structured_outputs',
    why: 'structured output (guided decoding) is not implemented',
    asks: (v) =>
      typeof v === 'object' &&
      v !== null &&
      STRUCTURED_CONSTRAINTS.some((k) => asked((v as Record<string, unknown>)[k])),
  },
  { param: 'guided_json', why: 'structured output (guided decoding) is not implemented' },
  { param: 'guided_regex', why: 'structured output (guided decoding) is not implemented' },
  { param: 'guided_choice', why: 'structured output (guided decoding) is not implemented' },
  { param: 'guided_grammar', why: 'structured output (guided decoding) is not implemented' },
  {
    param: 'prompt_logprobs',
    why: 'log probabilities are not computed',
    asks: (v) => v !== undefined && v !== null,
  },
  { param: 'allowed_token_ids', why: 'token-level logit constraints are not implemented' },
  { param: 'bad_words', why: 'token-level logit constraints are not implemented' },
  { param: 'logits_processors', why: 'logits processors are not implemented' },
  { param: 'use_beam_search', why: 'beam search is not implemented' },
  { param: 'return_token_ids', why: 'token ids are not returned' },
  {
    param: 'truncate_prompt_tokens',
    why: 'prompt truncation is not implemented',
    asks: (v) => v !== undefined && v !== null,
  },
  {
    param: 'chat_template',
    why: 'a request chat template is not applied (vLLM refuses one too unless started with --trust-request-chat-template)',
  },
];

/**
 * Throws 400 SY_ERR_UNSUPPORTED_PARAMETER naming the first vLLM extra field of this (decoded) chat
 * or completion body that a built-in engine cannot honour; returns when there is none.
 */
export function refuseUnhonouredVllmExtras(body: unknown): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
  const b = body as Record<string, unknown>;
  for (const { param, why, asks } of REFUSED) {
    const value = b[param];
    if (!(asks ?? asked)(value)) continue;
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `parameter '${param}' is not supported by the built-in engines: ${why}; ` +
        'remove it, or route the model to a vllm or sglang backend',
      { param },
    );
  }
}
