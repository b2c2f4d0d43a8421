/**
 * Message content the built-in engines cannot read. Both engines serve text models: a chat message's
 * content parts, or a Responses input message's, are read for their `text` only, so an image
 * (`image_url`, `input_image`), audio (`input_audio`), video or file part was dropped from the prompt
 * and the request answered as if it had never been sent: a client asking "what is in this image?"
 * got an answer about nothing, with no sign of it. vLLM refuses such a part for a model that is not
 * multimodal; the built-in engines now refuse it too, 400 SY_ERR_UNSUPPORTED_PARAMETER naming the
 * part, as they refuse the other parameters they do not honour. The gateway passes these parts to
 * real backends untouched; only the built-in engines answer this.
 */
import { SwitchyardError } from '../core/errors.ts';

/**
 * Part types that are text (chat's, and the Responses API's). `refusal` is an assistant's earlier
 * refusal replayed in the history (the openai SDKs' refusal part), `thinking` a reasoning model's
 * earlier thinking (litellm's `hosted_vllm` provider sends an assistant's `thinking_blocks` so): text,
 * which vLLM serves on any model, so a conversation holding one is served, not refused as media.
 */
const TEXT_PART_TYPES: ReadonlySet<string> = new Set([
  'text',
  'input_text',
  'output_text',
  'refusal',
  'thinking',
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Throws 400 SY_ERR_UNSUPPORTED_PARAMETER naming the first content part of the messages in `list`
 * (a chat body's `messages`, or a Responses body's `input`, named `at`) that is not text; returns
 * when there is none. Anything malformed is left to the body parse, which names it.
 */
export function refuseNonTextParts(list: unknown, at: 'messages' | 'input'): void {
  if (!Array.isArray(list)) return;
  for (let i = 0; i < list.length; i++) {
    const message: unknown = list[i];
    if (!isObject(message) || !Array.isArray(message['content'])) continue;
    const content = message['content'] as unknown[];
    for (let j = 0; j < content.length; j++) {
      const part: unknown = content[j];
      if (!isObject(part)) continue;
      const type = part['type'];
      if (typeof type !== 'string' || TEXT_PART_TYPES.has(type)) continue;
      throw new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `content part of type ${JSON.stringify(type.slice(0, 64))} is not supported by the built-in engines: ` +
          'they serve text models and read text parts only; send text, or route the model to a ' +
          'vllm, sglang, llamacpp or openai backend serving a multimodal model',
        { param: `${at}[${i}].content[${j}]` },
      );
    }
  }
}
