/**
 * Request bodies arrive uncompressed: the gateway decodes no content coding, since it routes on the
 * body and forwards its bytes unchanged. A body declared in another coding (`Content-Encoding:
 * gzip`) would otherwise fail as "not valid JSON" with its compressed bytes quoted in the message;
 * it is refused up front with RFC 9110's 415, and `Accept-Encoding: identity` names what the gateway
 * takes (section 12.5.3).
 */
import { SwitchyardError } from '../core/errors.ts';

/** The response header a 415 carries: the only coding the gateway accepts. */
export const ACCEPTED_ENCODING = 'identity';

/**
 * Why a request body in `header`'s coding is refused, or undefined when it is plain (no header, an
 * empty one, or `identity`).
 */
export function contentEncodingRefusal(header: string | undefined): SwitchyardError | undefined {
  if (header === undefined) return undefined;
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== ACCEPTED_ENCODING);
  if (codings.length === 0) return undefined;
  return new SwitchyardError(
    'SY_ERR_UNSUPPORTED_MEDIA_TYPE',
    `request body in content coding '${codings.join(', ').slice(0, 64)}' is not supported: send it uncompressed (Content-Encoding: identity or none)`,
    { param: 'content-encoding' },
  );
}
