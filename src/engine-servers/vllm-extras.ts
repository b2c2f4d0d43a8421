/**
 * vLLM's extra request fields (sent by clients through the OpenAI SDKs' `extra_body`) that the
 * built-in engines cannot honour. Each is refused with 400 SY_ERR_UNSUPPORTED_PARAMETER naming it
 * when the request asks for it, rather than an answer that silently ignores it: a client that sent
 * `guided_regex` parses the text by it, one that sent `prompt_logprobs` or `return_token_ids` reads
 * fields it would never get. `guided_json`, `guided_choice` and `structured_outputs` (json, choice,
 * json_object) are served, read by structured-output.ts, which refuses their regex and grammar. Absent, null, false and empty values ask
 * for nothing and are served, as vLLM reads them. The gateway passes these fields to real backends
 * untouched; only the built-in engines answer this.
 *
 * The fields and their meaning follow vLLM's request models (vllm/entrypoints/openai/
 * chat_completion/protocol.py, completion/protocol.py: `prompt_logprobs`,
 * `allowed_token_ids`, `bad_words`, `logits_processors`, `use_beam_search`, `return_token_ids`,
 * `truncate_prompt_tokens`, `chat_template`; the `guided_regex` and `guided_grammar` fields of vLLM
 * up to 0.11, which `structured_outputs` replaced). A request `chat_template` is refused by vLLM too unless it runs
 * with --trust-request-chat-template (serving_chat.py).
 *
 * vLLM's sampling extras (`top_k`, `min_p`, `repetition_penalty`, `ignore_eos`) are checked here as
 * vLLM checks them (`vllmSamplingOf`) and handed to the backend: the llama backend applies them; the
 * sim's filler text has no distribution to sample from, as with temperature and top_p, and always
 * runs to max_tokens (as with ignore_eos). `include_stop_str_in_output` is checked alike, and both
 * backends keep the stop string that ended the text. The chat rendering fields
 * `add_generation_prompt` and `continue_final_message` are checked alike on chat bodies (both true
 * is 400, as vLLM's); the llama backend renders the prompt by them, the sim's filler does not read
 * it. vLLM's completions request has neither field, and ignores them there, so they are not read.
 */
import { SwitchyardError } from '../core/errors.ts';

/** True when `value` asks for something: not absent, null, false, an empty list, string or object. */
function asked(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.values(value).some(asked);
  return true;
}

/** True when `value` is set at all (0 and false included): the fields vLLM reads as `is not None`. */
function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

const GUIDED =
  'regular-expression and grammar constraints are not enforced (json and choice are: guided_json, guided_choice, structured_outputs)';
const LOGIT_CONSTRAINTS = 'token-level logit constraints are not implemented';

const REFUSED: readonly { param: string; why: string; asks?: (v: unknown) => boolean }[] = [
  { param: 'guided_regex', why: GUIDED },
  { param: 'guided_grammar', why: GUIDED },
  { param: 'prompt_logprobs', why: 'log probabilities are not computed', asks: present },
  { param: 'allowed_token_ids', why: LOGIT_CONSTRAINTS },
  { param: 'bad_words', why: LOGIT_CONSTRAINTS },
  { param: 'logits_processors', why: 'logits processors are not implemented' },
  { param: 'use_beam_search', why: 'beam search is not implemented' },
  { param: 'return_token_ids', why: 'token ids are not returned' },
  { param: 'truncate_prompt_tokens', why: 'prompt truncation is not implemented', asks: present },
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

/**
 * vLLM's sampling extras, checked as vLLM checks them (SamplingParams: `top_k` an integer, -1 or 0
 * for no cut, else at least 1; `min_p` in [0, 1]; `repetition_penalty` above 0; `ignore_eos` a
 * boolean), each 400 SY_ERR_INVALID_ARGUMENT naming the field when wrong. Null or absent, and values
 * that change nothing (`min_p` 0, `repetition_penalty` 1, `ignore_eos` false), are left out; `top_k`
 * -1 is given as 0 (no cut).
 */
export interface VllmSampling {
  readonly topK?: number;
  readonly minP?: number;
  readonly repetitionPenalty?: number;
  /** vLLM's `ignore_eos`: generate past end-of-generation tokens, to max_tokens or a stop string. */
  readonly ignoreEos?: true;
  /** vLLM's `include_stop_str_in_output`: the stop string that ended the text stays in it. */
  readonly includeStopStr?: true;
  /**
   * vLLM's chat rendering fields: `add_generation_prompt: false` renders no assistant cue after the
   * messages; `continue_final_message: true` leaves the last message open, so the model continues it
   * (a client's "prefill" of the answer) rather than starting a new turn.
   */
  readonly chatEnd?: 'no-generation-prompt' | 'continue-final-message';
}

function badSampling(param: string, expected: string, value: unknown): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid request body: ${param}: expected ${expected}, got ${String(JSON.stringify(value)).slice(0, 40)}`,
    { param },
  );
}

/** A boolean field of `b` (undefined when absent or null); 400 naming it when not a boolean. */
function booleanField(b: Record<string, unknown>, param: string): boolean | undefined {
  const value = b[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw badSampling(param, 'true or false', value);
  return value;
}

/**
 * The sampling extras of a (decoded) chat or completion body; throws for a wrong one. The chat
 * rendering fields are read on chat bodies only: vLLM's CompletionRequest has neither field nor its
 * check, so a completions body carrying them (even both true, or not booleans) is served.
 */
export function vllmSamplingOf(body: unknown, kind: 'chat' | 'completion'): VllmSampling {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return {};
  const b = body as Record<string, unknown>;
  const out: {
    topK?: number;
    minP?: number;
    repetitionPenalty?: number;
    ignoreEos?: true;
    includeStopStr?: true;
    chatEnd?: 'no-generation-prompt' | 'continue-final-message';
  } = {};
  const topK = b['top_k'];
  if (topK !== undefined && topK !== null) {
    if (!(Number.isSafeInteger(topK) && (topK as number) >= -1))
      throw badSampling('top_k', 'an integer, -1 or 0 (no cut) or at least 1', topK);
    out.topK = Math.max(0, topK as number);
  }
  const minP = b['min_p'];
  if (minP !== undefined && minP !== null) {
    if (!(typeof minP === 'number' && minP >= 0 && minP <= 1))
      throw badSampling('min_p', 'a number from 0 to 1', minP);
    if (minP > 0) out.minP = minP;
  }
  const penalty = b['repetition_penalty'];
  if (penalty !== undefined && penalty !== null) {
    if (!(typeof penalty === 'number' && Number.isFinite(penalty) && penalty > 0))
      throw badSampling('repetition_penalty', 'a number above 0 (1: none)', penalty);
    if (penalty !== 1) out.repetitionPenalty = penalty;
  }
  const ignoreEos = b['ignore_eos'];
  if (ignoreEos !== undefined && ignoreEos !== null) {
    if (typeof ignoreEos !== 'boolean') throw badSampling('ignore_eos', 'true or false', ignoreEos);
    if (ignoreEos) out.ignoreEos = true;
  }
  // Served silently before: a client asking for the stop string in the text got it cut.
  const includeStop = b['include_stop_str_in_output'];
  if (includeStop !== undefined && includeStop !== null) {
    if (typeof includeStop !== 'boolean')
      throw badSampling('include_stop_str_in_output', 'true or false', includeStop);
    if (includeStop) out.includeStopStr = true;
  }
  if (kind === 'completion') return out;
  const generationPrompt = booleanField(b, 'add_generation_prompt');
  const continueFinal = booleanField(b, 'continue_final_message');
  // vLLM's check_generation_prompt: both asked for at once is a contradiction.
  if (continueFinal === true && generationPrompt === true)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      'invalid request body: continue_final_message: cannot be true with add_generation_prompt true ' +
        '(send "add_generation_prompt": false to continue the last message)',
      { param: 'continue_final_message' },
    );
  if (continueFinal === true) out.chatEnd = 'continue-final-message';
  else if (generationPrompt === false) out.chatEnd = 'no-generation-prompt';
  return out;
}
