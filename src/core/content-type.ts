/**
 * Request bodies of the OpenAI endpoints are JSON, and Switchyard takes them only when they say so
 * (`Content-Type: application/json`, any parameters such as `charset` allowed), as vLLM's OpenAI
 * server does (its `validate_json_request` refuses any other media type, a missing one included).
 * Without this a `text/plain` body was parsed as JSON anyway, and `curl -d` (which sends
 * `application/x-www-form-urlencoded`) worked here and failed on vLLM behind the same URL. The
 * refusal is RFC 9110's 415 with the one stable code for bodies Switchyard does not take
 * (SY_ERR_UNSUPPORTED_MEDIA_TYPE), saying which header to send.
 *
 * One rule for both servers that read these bodies: the gateway (src/gateway/gateway.ts) and the
 * built-in engines' OpenAI server (src/engine-servers/openai-server.ts), so a client pointed at an
 * engine directly is answered as one pointed at the gateway.
 */
import { SwitchyardError } from './errors.ts';

/** The one media type a request body of the OpenAI endpoints may have. */
export const ACCEPTED_CONTENT_TYPE = 'application/json';

/**
 * Why a request body declared as `header` is refused, or undefined when it is JSON
 * (`application/json`, case-insensitive, with or without parameters).
 */
export function contentTypeRefusal(header: string | undefined): SwitchyardError | undefined {
  const media = (header ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
  if (media === ACCEPTED_CONTENT_TYPE) return undefined;
  const got = media === '' ? 'no Content-Type' : `Content-Type '${media.slice(0, 64)}'`;
  return new SwitchyardError(
    'SY_ERR_UNSUPPORTED_MEDIA_TYPE',
    `request body with ${got} is not supported: send JSON with Content-Type: application/json ` +
      "(curl: -H 'Content-Type: application/json'; curl -d alone sends application/x-www-form-urlencoded), as vLLM requires",
    { param: 'content-type' },
  );
}
