/**
 * The disaggregation flags of `switchyard sim` (`--prefill-instances`, `--decode-instances`,
 * `--link`, `--pd-policy`, `--pd-params`, `--pd-conditional`, `--kv-release-timeout-ms`) and the P/D block they build
 * (src/twin/pd-host.ts). `--link` also sets the link `--plan-pd` plans with.
 */
import { Option } from 'commander';
import { invalidArgument, SwitchyardError, unknownName } from '../core/errors.ts';
import { KV_LINK_NAMES } from '../model/kv-link.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';
import {
  DYNAMO_MAX_LOCAL_PREFILL_TOKENS,
  PD_CONDITIONAL_RULES,
  type PdConditionalRule,
  PREFILL_QUEUE_PER_INSTANCE_MAX,
} from '../policies/disagg/conditional.ts';
import {
  checkPairPolicy,
  isPdPairPolicy,
  PD_PAIR_POLICIES,
  pdPairParamNames,
  pdPairPolicyDescription,
} from '../policies/disagg/pair.ts';
import { routingPolicyNames } from '../policies/routing/registry.ts';
import { PD_LINK_DEFAULT, PD_POLICY_DEFAULT, type PdOutcome } from '../twin/pd-host.ts';
import type { PdRunSettings } from '../twin/run.ts';
import { positiveInt } from './parse.ts';

/** The flags read here, as commander hands them over. */
export interface PdFlags {
  prefillInstances?: number | undefined;
  decodeInstances?: number | undefined;
  link?: string | undefined;
  pdPolicy?: string | undefined;
  /** `--pd-params`: a JSON object, parsed and checked here. */
  pdParams?: string | undefined;
  pdConditional?: PdConditionalRule | undefined;
  /** `--kv-release-timeout-ms`: how long a prefill instance holds KV no decode reads. */
  kvReleaseTimeoutMs?: number | undefined;
  /** `--instances`: refused with P and D when given on the command line. */
  instances?: number | undefined;
  /** `--pd-layerwise`: layer-by-layer KV sending, for a disaggregated run (as for `--plan-pd`). */
  pdLayerwise?: boolean | undefined;
}

/** The options to register on `sim`. */
export function pdOptions(): Option[] {
  return [
    new Option(
      '--prefill-instances <n>',
      'with --decode-instances: a disaggregated cluster of n prefill-role instances (of --gpu, --model, --tp) routed by --policy; ' +
        'JSON adds pd {prefillInstances, decodeInstances, link, layerwise (only with --pd-layerwise), policy, params, kvReleaseTimeoutMs, transferMsMean, transferMsP99, kvBytesMoved}',
    ).argParser(positiveInt),
    new Option(
      '--decode-instances <n>',
      'with --prefill-instances: n decode-role instances; each request prefills on a prefill instance, its KV moves over --link, it decodes here',
    ).argParser(positiveInt),
    new Option(
      '--link <name>',
      `the KV link between prefill and decode instances (default ${PD_LINK_DEFAULT}), for a disaggregated run and --plan-pd`,
    ).choices([...KV_LINK_NAMES]),
    new Option('--pd-policy <name>', pdPolicyHelp()),
    new Option('--pd-params <json>', pdParamsHelp()),
    new Option('--pd-conditional <rule>', PD_CONDITIONAL_HELP).choices([...PD_CONDITIONAL_RULES]),
    new Option(
      '--kv-release-timeout-ms <ms>',
      'with a disaggregated run: a prefill instance holds the KV of a request whose decode never reads it ' +
        '(the decode engine refused it, or the decode pick rejected it) this long before freeing it, as the ' +
        "sim engine's --kv-release-timeout-ms (vLLM's VLLM_NIXL_ABORT_REQUEST_TIMEOUT); " +
        `a positive integer, default ${PD_KV_RELEASE_TIMEOUT_MS_DEFAULT}`,
    ).argParser(positiveInt),
  ];
}

/** `--pd-conditional`'s help: who decides, and the three rules (src/policies/disagg/conditional.ts). */
const PD_CONDITIONAL_HELP =
  'with a disaggregated run: conditional disaggregation. The decode instance is picked at arrival (--pd-policy) ' +
  'and a rule decides, from what a gateway sees, whether it prefills the request itself or the prefill pool does ' +
  '(then the KV comes to it); JSON pd.localPrefills/remotePrefills count the two' +
  `\n  dynamo: NVIDIA Dynamo's rule: remote when the prompt less the decode instance's estimated cached prefix exceeds ${DYNAMO_MAX_LOCAL_PREFILL_TOKENS} tokens ` +
  `and the prefill pool holds at most ${PREFILL_QUEUE_PER_INSTANCE_MAX} requests per instance; else local` +
  '\n  switchyard: the option adding the least latency summed over the requests it touches (performance model): ' +
  "local = the chunked prefill plus the stall it puts on this instance's running decodes; " +
  "remote = the prefill pool's queue, the prefill, the KV transfer and the first decode step" +
  "\n  slo: remote while the prefill pool's estimated TTFT is within half the request's TTFT SLO; past that, local " +
  "within a per-decode-instance share of step time the TPOT SLO leaves for prefill stalls (shared by a burst's " +
  'arrivals), else remote; without an SLO it decides as switchyard';

/**
 * `--pd-policy`'s help: a pair policy picks both sides (one line each), any other routing policy the
 * decode side only.
 */
function pdPolicyHelp(): string {
  const pairs = PD_PAIR_POLICIES.map((name) => `\n  ${name}: ${pdPairPolicyDescription(name)}`).join('');
  return (
    'with a disaggregated run: a pair policy picks the prefill and the decode instance (then not with --policy ' +
    'or --compare)' +
    pairs +
    `\nany other routing policy picks only the decode instance, over decode instances only, the prefill by --policy (the header's policy, default round-robin); default --pd-policy ${PD_POLICY_DEFAULT}`
  );
}

/** `--pd-params`'s help: what it takes, each pair's parameter names, and an example. */
function pdParamsHelp(): string {
  const names = PD_PAIR_POLICIES.map((name) => {
    const params = pdPairParamNames(name);
    return `\n  ${name}: ${params.length > 0 ? params.join(', ') : '(none)'}`;
  }).join('');
  return (
    "with a pair --pd-policy: that pair's parameters as a JSON object, checked as the gateway checks its " +
    'pd.params (an unknown key, a wrong type or value is refused, naming the key); unset ones keep their ' +
    'defaults (docs/disaggregation.md, "Pair selection policies")' +
    names +
    `\ne.g. --pd-policy mooncake --pd-params '{"decodeAt":"arrival","tpotSloMs":50}'`
  );
}

/**
 * The P/D block from the flags, or undefined without `--prefill-instances`/`--decode-instances`
 * (then `--pd-policy` is refused; `--link` may still serve `--plan-pd`). `fromCli` says which flags
 * the command line gave: a pair policy refuses `--policy` and `--compare`. `named`: the config's
 * named routing policies, which `--pd-policy` may name as well as a pair policy or a policy type.
 */
export function pdFromFlags(
  flags: PdFlags,
  fromCli: (name: string) => boolean = () => false,
  named: readonly string[] = [],
): PdRunSettings | undefined {
  const { prefillInstances, decodeInstances } = flags;
  if (prefillInstances === undefined && decodeInstances === undefined) {
    if (flags.pdPolicy !== undefined)
      throw invalidArgument(
        'pd-policy',
        flags.pdPolicy,
        'only with --prefill-instances and --decode-instances',
      );
    if (flags.pdConditional !== undefined)
      throw invalidArgument(
        'pd-conditional',
        flags.pdConditional,
        'only with --prefill-instances and --decode-instances',
      );
    if (flags.pdParams !== undefined)
      throw invalidArgument(
        'pd-params',
        flags.pdParams,
        'only with --prefill-instances and --decode-instances',
      );
    // A colocated run moves no KV between instances: layer-by-layer sending would be ignored.
    if (flags.pdLayerwise === true)
      throw invalidArgument(
        'pd-layerwise',
        'true',
        'only with --prefill-instances and --decode-instances, or with --plan-pd (a colocated run moves no KV)',
      );
    if (flags.kvReleaseTimeoutMs !== undefined)
      throw invalidArgument(
        'kv-release-timeout-ms',
        flags.kvReleaseTimeoutMs,
        'only with --prefill-instances and --decode-instances (a colocated run moves no KV between instances)',
      );
    // A colocated run moves no KV between instances: the link would be ignored.
    if (flags.link !== undefined)
      throw invalidArgument(
        'link',
        flags.link,
        'only with --prefill-instances and --decode-instances, or with --plan-pd (a colocated run moves no KV; ' +
          'a prefix store takes its link from --kv-store)',
      );
    return undefined;
  }
  if (prefillInstances === undefined)
    throw invalidArgument('prefill-instances', 'missing', '--prefill-instances P with --decode-instances');
  if (decodeInstances === undefined)
    throw invalidArgument('decode-instances', 'missing', '--decode-instances D with --prefill-instances');
  // The cluster is P + D instances: a colocated count asked for as well would be ignored.
  if (fromCli('instances'))
    throw invalidArgument(
      'instances',
      flags.instances,
      `no --instances with --prefill-instances and --decode-instances: the cluster is their ${prefillInstances} + ${decodeInstances} instances`,
    );
  const pdPolicy = flags.pdPolicy ?? PD_POLICY_DEFAULT;
  // An unknown name fails here, naming the flag and listing the pair policies too (the routing
  // registry's own error names neither).
  const valid = [...new Set([...PD_PAIR_POLICIES, ...routingPolicyNames(), ...named])];
  if (!valid.includes(pdPolicy)) throw unknownName('pd-policy', pdPolicy, valid);
  const pdParams =
    flags.pdParams !== undefined
      ? pairParamsOf(flags.pdParams, pdPolicy, flags.pdPolicy === undefined)
      : undefined;
  if (isPdPairPolicy(pdPolicy)) {
    // The pair's prefill side replaces the run's policy: a policy asked for would be ignored.
    for (const flag of ['policy', 'compare'])
      if (fromCli(flag))
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `--${flag} cannot be used with --pd-policy ${pdPolicy}: that pair policy picks the prefill instance as well as the decode instance`,
          { param: flag },
        );
  }
  return {
    prefillInstances,
    decodeInstances,
    link: flags.link ?? PD_LINK_DEFAULT,
    pdPolicy,
    ...(pdParams !== undefined ? { pdParams } : {}),
    ...(flags.pdConditional !== undefined ? { conditional: flags.pdConditional } : {}),
    ...(flags.kvReleaseTimeoutMs !== undefined ? { kvReleaseTimeoutMs: flags.kvReleaseTimeoutMs } : {}),
    ...(flags.pdLayerwise === true ? { layerwise: true } : {}),
  };
}

/** The example `--pd-params` errors point to. */
const PD_PARAMS_EXAMPLE = `a JSON object of the pair's parameters, e.g. '{"decodeAt":"arrival"}'`;

/**
 * `--pd-params` for `pdPolicy` (`defaulted`: no `--pd-policy` given): a JSON object checked by the
 * pair's own schema (pair.ts `checkPairPolicy`, the gateway's check of `pd.params`), so a bad value
 * fails before any run.
 */
function pairParamsOf(text: string, pdPolicy: string, defaulted: boolean): Record<string, unknown> {
  if (!isPdPairPolicy(pdPolicy))
    throw invalidArgument(
      'pd-params',
      text,
      `only with --pd-policy naming a pair policy (${PD_PAIR_POLICIES.join(', ')}); ` +
        `the run's --pd-policy is the routing policy '${pdPolicy}'${defaulted ? ' (the default)' : ''}`,
    );
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalidArgument('pd-params', text, PD_PARAMS_EXAMPLE);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw invalidArgument('pd-params', text, PD_PARAMS_EXAMPLE);
  const params = value as Record<string, unknown>;
  try {
    checkPairPolicy(pdPolicy, params);
  } catch (error) {
    if (!(error instanceof SwitchyardError)) throw error;
    // The schema's message names each bad key; the flag is the argument that was wrong.
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid --pd-params: ${error.message}`, {
      ...(error.details ?? {}),
      param: 'pd-params',
    });
  }
  return params;
}

/** One line under a disaggregated run's table: the split, the link and the transfers; '' otherwise. */
export function formatPdLine(pd: PdOutcome | undefined): string {
  if (pd === undefined) return '';
  const gb = (pd.kvBytesMoved / 1e9).toFixed(1);
  return (
    // The run's header names the prefill side's policy (--policy, or the pair's prefill half); the
    // decode side runs --pd-policy, so this line names it too.
    `P/D ${pd.prefillInstances} prefill + ${pd.decodeInstances} decode over ${pd.link}` +
    `${pd.layerwise ? ' (layer by layer)' : ''}: ${pd.transfers} transfers, ` +
    `${pd.transferMsMean.toFixed(2)} ms mean, ${pd.transferMsP99.toFixed(2)} ms p99, ${gb} GB of KV, ` +
    `${pd.reserveWaitMsMean.toFixed(2)} ms mean wait for decode blocks; ` +
    `prefills ${pd.localPrefills} local, ${pd.remotePrefills} remote` +
    `${pd.conditional !== undefined ? ` (--pd-conditional ${pd.conditional})` : ''}` +
    `; decode instance picked by ${pd.policy} (--pd-policy)\n`
  );
}
