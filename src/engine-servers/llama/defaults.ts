/** Defaults of the llama engine, apart from its backend so the CLI can show them without loading node-llama-cpp. */

/** Sequences (parallel generations) by default. */
export const SEQUENCES_DEFAULT = 4;
/**
 * Most sequences one context holds: llama.cpp's LLAMA_MAX_SEQ (its context creation refuses more
 * with "n_seq_max must be <= 256", which node-llama-cpp reported as too little RAM).
 */
export const SEQUENCES_MAX = 256;
/** Decode threads by default: on a small CPU one thread beats two that fight over the cores. */
export const THREADS_DEFAULT = 1;
/**
 * How long an SGLang decode waits for its room's prefill by default (`--kv-wait-timeout-ms`), as the
 * `sim` engine's: SGLang's own (SGLANG_DISAGGREGATION_WAITING_TIMEOUT) is 300 s, long for a gateway
 * whose first-byte timeout would end the request first.
 */
export const KV_WAIT_TIMEOUT_MS_DEFAULT = 30_000;
/**
 * Bytes of state buffers a P/D llama engine keeps for reuse (pd.ts): a fresh buffer is mapped memory
 * whose first touch page-faults. Also the most `--kv-reserve-mib` reserves.
 */
export const STATE_BUFFERS_KEPT_BYTES_MAX = 256 << 20;
/**
 * The most `--kv-reserve-mib auto` reserves: half of STATE_BUFFERS_KEPT_BYTES_MAX, so that buffers of
 * other sizes are still kept beside it. A state larger than the reservation gets a fresh buffer.
 */
export const STATE_RESERVE_AUTO_BYTES_MAX = STATE_BUFFERS_KEPT_BYTES_MAX / 2;
