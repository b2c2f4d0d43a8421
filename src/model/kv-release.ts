/**
 * How long a prefill engine holds KV that no decode engine collected before freeing it: the analogue
 * of vLLM's prefill-side KV release timeout (VLLM_NIXL_ABORT_REQUEST_TIMEOUT). One default, shared by
 * the built-in sim prefill engine (`switchyard engine --kv-release-timeout-ms`, src/cli/engine-command.ts)
 * and the twin's prefill instances (`switchyard sim --kv-release-timeout-ms`, src/twin/pd-host.ts), so a
 * twin run and a live run of the sim engines free a never-read KV at the same moment by default.
 */

/** The default prefill KV release timeout, ms (vLLM-style prefill KV release; sim engines and twin). */
export const PD_KV_RELEASE_TIMEOUT_MS_DEFAULT = 120_000;
