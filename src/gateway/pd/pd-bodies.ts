/**
 * The request bodies of the engines' own prefill/decode protocols, built from the client's body.
 *
 * vLLM (the flow of vLLM's NIXL connector proxy, tests/v1/kv_connector/nixl_integration/
 * toy_proxy_server.py in vllm-project/vllm): the prefill instance gets the request with
 * `max_tokens` 1 (and `max_completion_tokens` 1 where the client set it; a vLLM `min_tokens` above
 * 1 lowered to 1, which vLLM would refuse past max_tokens), `stream` false, no
 * `stream_options`, and `kv_transfer_params` asking for a remote decode; the decode instance gets
 * the client's request unchanged plus the `kv_transfer_params` the prefill answered with.
 *
 * SGLang (its mini load balancer's PD mode, sglang_router's mini_lb.py): the prefill and the decode
 * instance both get the client's request plus `bootstrap_host`, `bootstrap_port` (the prefill's
 * bootstrap server) and a `bootstrap_room` naming the transfer; the decode's answer is the answer.
 * SGLang draws the room at random; here it comes from a seeded bijection of a counter, so rooms are
 * unique within a gateway run and the same seed gives the same rooms.
 */

/** The `kv_transfer_params` of a prefill request: "prefill here, a remote instance decodes". */
export const VLLM_PREFILL_KV_PARAMS = {
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
} as const;

/** A parsed JSON body (the gateway parsed and accepted it already). */
type Body = Record<string, unknown>;

function parse(body: Buffer): Body {
  const value: unknown = JSON.parse(body.toString('utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new TypeError('expected a JSON object body');
  return value as Body;
}

/** vLLM's prefill request: one token, not streamed, asking for a remote decode. */
export function vllmPrefillBody(body: Buffer): Buffer {
  const b = parse(body);
  b['kv_transfer_params'] = { ...VLLM_PREFILL_KV_PARAMS };
  b['stream'] = false;
  b['max_tokens'] = 1;
  if (Object.hasOwn(b, 'max_completion_tokens')) b['max_completion_tokens'] = 1;
  // vLLM's min_tokens may not pass max_tokens (a 400): the one-token leg asks for at most one.
  if (typeof b['min_tokens'] === 'number' && b['min_tokens'] > 1) b['min_tokens'] = 1;
  delete b['stream_options'];
  return Buffer.from(JSON.stringify(b));
}

/** vLLM's decode request: the client's request with the prefill's `kv_transfer_params`. */
export function vllmDecodeBody(body: Buffer, kvTransferParams: Record<string, unknown>): Buffer {
  const b = parse(body);
  b['kv_transfer_params'] = kvTransferParams;
  return Buffer.from(JSON.stringify(b));
}

/**
 * The `kv_transfer_params` object of a prefill's JSON answer, whole (vLLM's proxy copies every field
 * to the decode request), or undefined when it has none or an empty one (an engine without a KV
 * connector; the proxy sends the decode request without them then). Throws on an answer that is not
 * a JSON object.
 */
export function kvTransferParamsOf(answer: Buffer): Record<string, unknown> | undefined {
  const params = parse(answer)['kv_transfer_params'];
  if (typeof params !== 'object' || params === null || Array.isArray(params)) return undefined;
  return Object.keys(params).length === 0 ? undefined : (params as Record<string, unknown>);
}

/** SGLang's request for both sides of a pair: the client's plus the prefill's bootstrap address and the room. */
export function sglangBody(body: Buffer, host: string, port: number, room: number): Buffer {
  const b = parse(body);
  b['bootstrap_host'] = host;
  b['bootstrap_port'] = port;
  b['bootstrap_room'] = room;
  return Buffer.from(JSON.stringify(b));
}

/** Rooms stay below 2^53 so that every JSON reader (JavaScript's included) reads them exactly. */
const ROOM_BITS = 53n;
const ROOM_MASK = (1n << ROOM_BITS) - 1n;
/** An odd multiplier: multiplication by it is a bijection modulo 2^53. */
const ROOM_MULTIPLIER = 0x9e3779b97f4a7c15n & ROOM_MASK;

/**
 * Unique bootstrap rooms: the k-th room is a fixed bijection of (seed + k) modulo 2^53 (an odd
 * multiply and a xor-shift, each invertible), so no two rooms of one sequence collide before 2^53
 * rooms, and the same seed gives the same rooms. No global randomness.
 */
export class BootstrapRooms {
  private next: bigint;

  constructor(seed: number) {
    this.next = BigInt.asUintN(Number(ROOM_BITS), BigInt(Math.trunc(seed)) * 0x10001n);
  }

  /** The next room id (a safe integer). */
  take(): number {
    const k = this.next;
    this.next = (this.next + 1n) & ROOM_MASK;
    let x = (k * ROOM_MULTIPLIER) & ROOM_MASK;
    x ^= x >> 29n;
    x = (x * ROOM_MULTIPLIER) & ROOM_MASK;
    return Number(x);
  }
}
