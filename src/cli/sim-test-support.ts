/**
 * What the `sim` command's unit tests share: the flags commander hands `resolveSettings` when none
 * is given, and a stand-in for "was this flag given on the command line".
 */
import { SIM_DEFAULTS } from '../twin/config.ts';
import type { resolveSettings } from './sim-command.ts';

/** The flags commander hands over when none is given, plus `extra`. */
export function simFlags(extra: Record<string, unknown>): Parameters<typeof resolveSettings>[0] {
  return {
    instances: SIM_DEFAULTS.instances,
    gpu: SIM_DEFAULTS.gpu,
    model: SIM_DEFAULTS.model,
    tp: SIM_DEFAULTS.tp,
    policy: SIM_DEFAULTS.policy,
    seed: SIM_DEFAULTS.seed,
    sloTtftMs: SIM_DEFAULTS.sloTtftMs,
    sloTpotMs: SIM_DEFAULTS.sloTpotMs,
    prefixCaching: true,
    progress: false,
    batchWindowS: 3600,
    batchInputTokens: 1024,
    batchOutputTokens: 256,
    ...extra,
  } as Parameters<typeof resolveSettings>[0];
}

/** `given` as the command line's set of flags: true for the names in it. */
export const fromCli = (given: readonly string[]) => (name: string) => given.includes(name);
