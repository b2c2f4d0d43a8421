/**
 * What the gateway reads of an OpenAI Responses API body (`POST /v1/responses`) to admit and route
 * it: model, stream, max_output_tokens, priority, user, and the routing text. The body itself goes
 * upstream untouched (fields the gateway does not read pass through to the engine, as for chat).
 *
 * The routing text is the conversation rendered as chat renders it (`renderChat`): `instructions`
 * as a system message, then each input message in order (a string input is one user message). So a
 * Responses request and the chat request with the same conversation share their prefix chain, and
 * a follow-up turn extends the chain of the turn before it.
 *
 * `previous_response_id` is expanded, and `item_reference` inputs resolved, from the gateway's
 * response store before this parse (response-store.ts), so the body read here is the whole
 * conversation; a `previous_response_id` still named here (a Batch API line, or the store turned
 * off) is refused: the instance picked need not hold it.
 */
import { cacheSaltOf, saltPrefixChain } from '../core/cache-salt.ts';
import { SwitchyardError } from '../core/errors.ts';
import { PRIORITY_USED_ABS_MAX } from '../core/openai-api.ts';
import { responsesMaxOutputTokens, responsesMessages } from '../core/responses-api.ts';
import { CHARS_PER_TOKEN, renderChat, textPrefixChain } from '../core/text-prefix.ts';
import { ROUTING_PREFIX_BLOCKS_MAX, type RoutingFields } from './fast-parse.ts';

/** The routing fields of a Responses body: chat's, read from its own field names. */
export type ResponsesFields = RoutingFields;

function invalid(param: string, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${what}`, { param });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The routing fields of a decoded Responses body; a bad body throws the 400 naming the field.
 * `prefixBlocksMax` caps the chain as chat's routing cap does.
 */
export function parseResponsesFields(
  body: unknown,
  prefixBlocksMax = ROUTING_PREFIX_BLOCKS_MAX,
): ResponsesFields {
  if (!isObject(body)) throw invalid('body', 'expected a JSON object');
  const model = body['model'];
  if (typeof model !== 'string' || model.length === 0 || model.length > 512)
    throw invalid('model', 'expected a non-empty string');
  const previous = body['previous_response_id'];
  if (previous !== undefined && previous !== null)
    throw invalid(
      'previous_response_id',
      'not expanded here (a Batch API line, or limits.responseStoreMax 0: the instance picked need not hold it); send the whole conversation as input',
    );
  const stream = body['stream'];
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean')
    throw invalid('stream', 'expected a boolean');
  const maxTokens = responsesMaxOutputTokens(body);
  const priority = body['priority'];
  // Any integer, as vLLM's Responses request takes it; relayed as sent, clamped for our own use.
  if (priority !== undefined && !Number.isInteger(priority)) throw invalid('priority', 'expected an integer');
  const user = body['user'];
  if (user !== undefined && user !== null && !(typeof user === 'string' && user.length <= 256))
    throw invalid('user', 'expected a string of at most 256 characters');
  const salt = cacheSaltOf(body);
  const text = renderChat(responsesMessages(body['instructions'], body['input']));
  return {
    model,
    stream: stream === true,
    maxTokens,
    promptTokens: Math.max(1, Math.ceil(text.length / CHARS_PER_TOKEN)),
    prefix: saltPrefixChain(textPrefixChain(text, prefixBlocksMax), salt),
    priority:
      priority === undefined
        ? undefined
        : Math.max(-PRIORITY_USED_ABS_MAX, Math.min(PRIORITY_USED_ABS_MAX, priority as number)),
    user: typeof user === 'string' ? user : undefined,
  };
}
