/**
 * The serverless flags of `switchyard sim` (`--serverless-policy`, `--gpus`, `--gpus-per-node`,
 * `--keep-alive-s`) and the serverless block they build (src/twin/serverless-host.ts): one model per
 * served id of the multi-model workload, at zero instances to begin with, on nodes of GPUs.
 */
import { Option } from 'commander';
import { SERVERLESS_POLICY_NAMES } from '../control/serverless/index.ts';
import { MAX_REPLICAS_DEFAULT } from '../control/serverless/policies.ts';
import { invalidArgument } from '../core/errors.ts';
import { parseWithSchema, SIM_DEFAULTS } from '../twin/config.ts';
import { fittingTp, gpuNodes, type ServerlessSettings } from '../twin/serverless-host.ts';
import { multiModelRoster } from '../workload/multi-model.ts';
import { workloadSpecSchema } from '../workload/spec.ts';
import { nonNegativeNumber, positiveInt } from './parse.ts';

/** GPUs per node when `--gpus-per-node` is not given (an HGX/DGX box). */
export const GPUS_PER_NODE_DEFAULT = 8;

/** The flags read here, as commander hands them over. */
export interface ServerlessFlags {
  serverlessPolicy?: string | undefined;
  gpus?: number | undefined;
  gpusPerNode?: number | undefined;
  keepAliveS?: number | undefined;
  /** False with `--no-sleep`: switchyard without sleep mode (commander's default is true). */
  sleep?: boolean | undefined;
  /** True with `--retarget`: switchyard's sleep mode also re-targets engines of the same base (opt-in). */
  retarget?: boolean | undefined;
  gpu: string;
  /** `--model`: with --serverless-policy, every served model's base (see `basesOf`). */
  model?: string | undefined;
  /** `--tp`: given, every served model's TP (see `tpOf`); else each the smallest that fits. */
  tp?: number | undefined;
  /** The engines' batch limits where given: they size the KV cache a TP leaves (`fittingTp`). */
  maxNumSeqs?: number | undefined;
  maxNumBatchedTokens?: number | undefined;
}

/** The options to register on `sim`. */
export function serverlessOptions(): Option[] {
  return [
    new Option(
      '--serverless-policy <name>',
      'with --workload multi-model: scale every model to zero and back on --gpus GPUs: keep-alive (Knative-style fixed keep-alive, ' +
        'first fit), serverlessllm (start-up-aware node, LRU eviction of idle instances), switchyard (forecast pre-warming, ' +
        'cost-aware eviction); JSON adds coldStarts, gpuHours, ttftMs.cold/warm and per-model rows',
    ).choices([...SERVERLESS_POLICY_NAMES]),
    new Option(
      '--gpus <n>',
      "with --serverless-policy or --plan-pd: GPUs of the cluster, of --gpu type (with --serverless-policy and no --gpu: the config's cluster.gpu; with --plan-pd at least 2, a prefill and a decode GPU)",
    ).argParser(positiveInt),
    new Option(
      '--gpus-per-node <n>',
      `with --serverless-policy: GPUs per node (default ${GPUS_PER_NODE_DEFAULT}; the last node takes the rest)`,
    ).argParser(positiveInt),
    new Option(
      '--keep-alive-s <s>',
      'with --serverless-policy: how long a model stays loaded after its last request (default 60; switchyard uses it until a model has a history to forecast from)',
    ).argParser(nonNegativeNumber),
    new Option(
      '--no-sleep',
      'with --serverless-policy switchyard: no sleep mode (vLLM level 1: idle engines offload weights to DRAM and wake in ~1 s on their GPUs); instances stop instead',
    ),
    new Option(
      '--retarget',
      'with --serverless-policy switchyard (sleep mode on): re-target engines, off by default: a model whose requests would wait for a fresh start takes a sleeping or idle engine of another fine-tune of its base (same TP and GPU) and loads its weights in place, without engine init; JSON serverless.retargets',
    ),
  ];
}

/**
 * The serverless block from the flags and the run's workload (which must be multi-model), or
 * undefined without --serverless-policy (then its other flags are refused).
 */
export function serverlessFromFlags(
  flags: ServerlessFlags,
  workload: Readonly<Record<string, unknown>>,
  fromCli?: (name: string) => boolean,
): ServerlessSettings | undefined {
  if (flags.serverlessPolicy === undefined) {
    for (const [key, flag] of [
      ['gpus', 'gpus'],
      ['gpusPerNode', 'gpus-per-node'],
      ['keepAliveS', 'keep-alive-s'],
    ] as const) {
      if (flags[key] !== undefined)
        throw invalidArgument(
          flag,
          flags[key],
          key === 'gpus' ? 'only with --serverless-policy or --plan-pd' : 'only with --serverless-policy',
        );
    }
    return undefined;
  }
  const spec = parseWithSchema(workloadSpecSchema, workload, 'workload');
  if (spec.kind !== 'multi-model') {
    throw invalidArgument('serverless-policy', flags.serverlessPolicy, 'a run with --workload multi-model');
  }
  if (flags.gpus === undefined) throw invalidArgument('gpus', 'missing', '--gpus G with --serverless-policy');
  // Only switchyard has sleep mode: for the baselines the flag would change nothing, without a word.
  if (flags.sleep === false && flags.serverlessPolicy !== 'switchyard')
    throw invalidArgument(
      'no-sleep',
      flags.serverlessPolicy,
      '--serverless-policy switchyard (the baselines have no sleep mode)',
    );
  // Re-targeting is part of switchyard's sleep mode: elsewhere the flag would change nothing.
  if (flags.retarget === true && (flags.serverlessPolicy !== 'switchyard' || flags.sleep === false))
    throw invalidArgument(
      'retarget',
      flags.serverlessPolicy,
      '--serverless-policy switchyard with sleep mode on (re-targeting is part of it)',
    );
  const perNode = flags.gpusPerNode ?? GPUS_PER_NODE_DEFAULT;
  const nodes = gpuNodes(flags.gpus, perNode, flags.gpu);
  const largestNode = Math.max(...nodes.map((n) => n.gpus));
  const givenTp = tpOf(flags, largestNode, fromCli);
  const engine = {
    ...(flags.maxNumSeqs !== undefined ? { maxNumSeqs: flags.maxNumSeqs } : {}),
    ...(flags.maxNumBatchedTokens !== undefined ? { maxNumBatchedTokens: flags.maxNumBatchedTokens } : {}),
  };
  const models = multiModelRoster({ ...spec, bases: basesOf(flags, spec.bases, fromCli) }).map((m) => {
    // A given TP must hold the model's weights itself (fittingTp up to it throws, naming the model).
    const tp = givenTp ?? fittingTp(m.base, flags.gpu, largestNode, engine);
    if (givenTp !== undefined) fittingTp(m.base, flags.gpu, givenTp, engine);
    return {
      ...m,
      gpu: flags.gpu,
      tp,
      maxInstances: Math.max(1, Math.min(MAX_REPLICAS_DEFAULT, Math.floor((flags.gpus as number) / tp))),
    };
  });
  return {
    policy: flags.serverlessPolicy,
    params: {
      ...(flags.keepAliveS !== undefined ? { keepAliveMs: flags.keepAliveS * 1000 } : {}),
    },
    nodes,
    models,
    ...(flags.sleep === false
      ? { sleep: false as const }
      : flags.retarget === true
        ? { sleep: { retarget: true } }
        : {}),
  };
}

/**
 * `--tp` when the user gave it (without `fromCli`, any TP but 1 counts as given): every served
 * model runs at it, which must fit in a node (a TP group never spans nodes); else undefined, and
 * each model takes the smallest TP that holds its weights. Before, a given `--tp` was dropped.
 */
function tpOf(
  flags: ServerlessFlags,
  largestNode: number,
  fromCli?: (name: string) => boolean,
): number | undefined {
  const tp = flags.tp;
  if (tp === undefined || !(fromCli?.('tp') ?? tp !== SIM_DEFAULTS.tp)) return undefined;
  if (tp > largestNode)
    throw invalidArgument(
      'tp',
      tp,
      `at most the GPUs of the largest node (${largestNode}): a TP group stays in one node`,
    );
  return tp;
}

/**
 * The served models' bases: `--model` given puts every one on it (so a model that does not fit
 * `--gpu` is refused, as in a plain run, instead of the catalogue mix running silently); else the
 * workload's `bases`, or the default mix. Without `fromCli`, a `--model` other than the default
 * counts as given. A config's `workload.bases` and a different `--model` together are refused.
 */
function basesOf(
  flags: ServerlessFlags,
  bases: readonly string[] | undefined,
  fromCli?: (name: string) => boolean,
): readonly string[] | undefined {
  const model = flags.model;
  const given = model !== undefined && (fromCli?.('model') ?? model !== SIM_DEFAULTS.model);
  if (!given) return bases;
  if (bases !== undefined && !(bases.length === 1 && bases[0] === model))
    throw invalidArgument(
      'model',
      model,
      `one base for every served model, or the workload's bases (${bases.join(', ')}) without --model`,
    );
  return [model];
}
