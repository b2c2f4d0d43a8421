/**
 * How long a prefill engine holds KV that no decode engine collected before freeing it: the analogue
 * of vLLM's prefill-side KV release timeout (VLLM_NIXL_ABORT_REQUEST_TIMEOUT). One default, shared by
 * the built-in sim prefill engine (`switchyard engine --kv-release-timeout-ms`, src/cli/engine-command.ts)
 * and the twin's prefill instances (`switchyard sim --kv-release-timeout-ms`, src/twin/pd-host.ts), so a
 * twin run and a live run of the sim engines free a never-read KV at the same moment by default. The
 * llama engine (`switchyard engine llama --kv-release-timeout-ms`, src/engine-servers/llama/pd.ts)
 * takes it too.
 *
 * 120 s was vLLM's default (vllm-project/vllm vllm/envs.py at 001f69f8: `VLLM_NIXL_ABORT_REQUEST_TIMEOUT`
 * "120", seconds; the timeout itself came with PR #20139). It is no longer
 * vLLM's: PR #25897 (merged 2025-09-29) raised the default to 480 s because P-side KV was evicted
 * early under load. Kept at 120 s here (twin results are generated with it); a run that should
 * match a current vLLM prefill sets `--kv-release-timeout-ms 480000`.
 */

/** The default prefill KV release timeout, ms (vLLM-style prefill KV release; sim engines and twin). */
export const PD_KV_RELEASE_TIMEOUT_MS_DEFAULT = 120_000;
