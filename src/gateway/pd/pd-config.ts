/**
 * The checks on prefill/decode backends that one backend's schema cannot make alone: a role needs a
 * protocol, a decode pool needs a prefill pool of the same model and protocol (and the other way
 * round), and one model speaks one protocol. config.ts reports each problem under its backend.
 * Also the `pd:` block (a pair policy) and its checks.
 */
import { z } from 'zod';
import { SwitchyardError } from '../../core/errors.ts';
import { KV_LINK_NAMES } from '../../model/kv-link.ts';
import {
  CONDITIONAL_CHUNK_TOKENS_DEFAULT,
  CONDITIONAL_LINK_DEFAULT,
  PD_CONDITIONAL_RULES,
} from '../../policies/disagg/conditional.ts';
import { checkPairPolicy, PD_PAIR_POLICIES } from '../../policies/disagg/pair.ts';

/** What the checks read of a backend (config.ts's parsed BackendConfig). */
export interface PdBackendFields {
  readonly id: string;
  readonly models: readonly string[];
  readonly role: 'both' | 'prefill' | 'decode';
  readonly pdProtocol?: 'vllm' | 'sglang' | undefined;
  readonly bootstrapPort?: number | undefined;
}

/** One problem: where (index and field under `backends`) and what. */
export interface PdConfigProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** Every problem with the P/D fields of `backends` (empty when they are consistent). */
export function pdConfigProblems(backends: readonly PdBackendFields[]): PdConfigProblem[] {
  const problems: PdConfigProblem[] = [];
  for (const [i, b] of backends.entries()) {
    if (b.role !== 'both' && b.pdProtocol === undefined)
      problems.push({
        path: [i, 'pdProtocol'],
        message: `backend '${b.id}' has role '${b.role}' and needs pdProtocol: 'vllm' or 'sglang'`,
      });
    if (b.role === 'both' && b.pdProtocol !== undefined)
      problems.push({
        path: [i, 'pdProtocol'],
        message: `backend '${b.id}' has role 'both'; pdProtocol applies only to role 'prefill' or 'decode'`,
      });
    if (b.bootstrapPort !== undefined && !(b.role === 'prefill' && b.pdProtocol === 'sglang'))
      problems.push({
        path: [i, 'bootstrapPort'],
        message: `backend '${b.id}': bootstrapPort applies only to role 'prefill' with pdProtocol 'sglang'`,
      });
  }
  for (const [model, pool] of pdPools(backends)) {
    const protocols = new Set(pool.map(({ b }) => b.pdProtocol));
    if (protocols.size > 1) {
      const first = pool[0] as { i: number };
      problems.push({
        path: [first.i, 'pdProtocol'],
        message: `model '${model}' has prefill/decode backends of different protocols (${[...protocols].join(', ')}); one model speaks one protocol`,
      });
      continue;
    }
    for (const role of ['prefill', 'decode'] as const) {
      if (pool.some(({ b }) => b.role === role)) continue;
      const other = pool[0] as { b: PdBackendFields; i: number };
      problems.push({
        path: [other.i, 'role'],
        message: `backend '${other.b.id}' is a ${other.b.role} instance of model '${model}' (${other.b.pdProtocol}), but no ${role} backend serves that model with that protocol`,
      });
    }
  }
  return problems;
}

/** The prefill and decode backends of each model, with their index. */
function pdPools(backends: readonly PdBackendFields[]): Map<string, { b: PdBackendFields; i: number }[]> {
  const pools = new Map<string, { b: PdBackendFields; i: number }[]>();
  for (const [i, b] of backends.entries()) {
    if (b.role === 'both' || b.pdProtocol === undefined) continue;
    for (const m of b.models) {
      const pool = pools.get(m) ?? [];
      pool.push({ b, i });
      pools.set(m, pool);
    }
  }
  return pools;
}

/** The protocol of each model served by prefill/decode backends (a valid config: one per model). */
export function pdModels(backends: readonly PdBackendFields[]): Map<string, 'vllm' | 'sglang'> {
  const out = new Map<string, 'vllm' | 'sglang'>();
  for (const [model, pool] of pdPools(backends)) {
    const protocol = pool[0]?.b.pdProtocol;
    if (protocol !== undefined) out.set(model, protocol);
  }
  return out;
}

/**
 * The gateway config's `pd:` block: a P/D pair policy (src/policies/disagg/pair.ts) picking the
 * prefill and the decode instance of every disaggregated request, each side over its own pool, and
 * conditional disaggregation (src/gateway/pd/pd-conditional.ts). Absent: the active routing policy
 * picks both (the prefill pool with its own copy of it) and every request disaggregates.
 */
export const pdGatewayConfigSchema = z.strictObject({
  /** One of PD_PAIR_POLICIES; absent: the active routing policy picks both pools. */
  pairPolicy: z.enum(PD_PAIR_POLICIES).optional(),
  /** Its parameters, checked against its schema at start-up. */
  params: z.record(z.string(), z.unknown()).default({}),
  /**
   * Conditional disaggregation, one of PD_CONDITIONAL_RULES: the decode instance is picked first and
   * the rule decides whether it prefills the request itself. Absent: every request disaggregates.
   * vLLM's protocol only (an SGLang decode server cannot prefill on its own).
   */
  conditional: z.enum(PD_CONDITIONAL_RULES).optional(),
  /**
   * The KV link the rule's transfer time assumes (src/model/kv-link.ts); default
   * CONDITIONAL_LINK_DEFAULT (ib-400, the twin's default). Only with `conditional`.
   */
  link: z.enum(KV_LINK_NAMES).optional(),
  /**
   * The decode engines' per-step token budget (vLLM's max_num_batched_tokens) the `switchyard` rule
   * chunks a local prefill by; default CONDITIONAL_CHUNK_TOKENS_DEFAULT (8192). Only with `conditional`.
   */
  chunkTokens: z.number().int().min(1).max(1_048_576).optional(),
});
/** A validated `pd:` block. */
export type PdGatewayConfig = z.infer<typeof pdGatewayConfigSchema>;

/** The link and chunk size a conditional rule runs with (the config's, else the defaults). */
export function conditionalSettingsOf(pd: PdGatewayConfig): { link: string; chunkTokens: number } {
  return {
    link: pd.link ?? CONDITIONAL_LINK_DEFAULT,
    chunkTokens: pd.chunkTokens ?? CONDITIONAL_CHUNK_TOKENS_DEFAULT,
  };
}

/**
 * Problems with a `pd:` block (paths under `pd`): neither a pair policy nor a rule, bad parameters,
 * parameters without a pair policy, link settings without a rule, a rule over SGLang, or nothing to
 * disaggregate.
 */
export function pdPairConfigProblems(
  pd: PdGatewayConfig | undefined,
  backends: readonly PdBackendFields[],
): PdConfigProblem[] {
  if (pd === undefined) return [];
  const problems: PdConfigProblem[] = [];
  if (pd.pairPolicy === undefined && pd.conditional === undefined)
    // Both are optional on their own, so an empty block would otherwise pass as if it did something.
    problems.push({
      path: [],
      message: `the block sets neither pairPolicy (${PD_PAIR_POLICIES.join(', ')}) nor conditional (${PD_CONDITIONAL_RULES.join(', ')}); set one, or leave pd out`,
    });
  if (pd.pairPolicy !== undefined) {
    try {
      checkPairPolicy(pd.pairPolicy, pd.params);
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      problems.push({ path: ['params'], message: error.message });
    }
  } else if (Object.keys(pd.params).length > 0)
    problems.push({ path: ['params'], message: 'params apply to a pair policy; set pd.pairPolicy' });
  for (const key of ['link', 'chunkTokens'] as const)
    if (pd[key] !== undefined && pd.conditional === undefined)
      problems.push({
        path: [key],
        message: `${key} applies to conditional disaggregation; set pd.conditional (${PD_CONDITIONAL_RULES.join(', ')})`,
      });
  const models = pdModels(backends);
  if (pd.conditional !== undefined)
    for (const [model, protocol] of models)
      if (protocol === 'sglang')
        problems.push({
          path: ['conditional'],
          message: `conditional disaggregation ('${pd.conditional}') runs on vLLM's flow only: model '${model}' speaks SGLang's, whose decode server cannot prefill a request on its own (it always waits for a prefill server's KV)`,
        });
  const what = [
    ...(pd.pairPolicy === undefined ? [] : [`pair policy '${pd.pairPolicy}'`]),
    ...(pd.conditional === undefined ? [] : [`conditional rule '${pd.conditional}'`]),
  ];
  if (models.size === 0 && what.length > 0)
    problems.push({
      path: [pd.pairPolicy !== undefined ? 'pairPolicy' : 'conditional'],
      message: `${what.join(' and ')} needs prefill and decode backends (role and pdProtocol); none is configured`,
    });
  return problems;
}
