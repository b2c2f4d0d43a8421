/**
 * The set-up most gateway end-to-end tests share: quick `switchyard engine sim` children (time
 * scale 0.05, no KV events) behind an in-process gateway, torn down by one `Teardown`. Built on
 * the engine and gateway helpers of cluster.ts.
 */
import type { GatewayConfigInput } from '../../../src/gateway/index.ts';
import {
  type SimCluster,
  type SimEngine,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './cluster.ts';
import { fileSetUp } from './file-set-up.ts';

/** Flags of a quick sim engine: 20 times faster than real time, no KV-event publisher. */
export const QUICK_SIM_ARGS: readonly string[] = ['--time-scale', '0.05', '--kv-events', 'none'];

/** What the gateway is given besides its backends. */
export type SimGatewayConfig = Omit<GatewayConfigInput, 'backends'>;

/** Sim engines and the gateway in front of them. */
export interface SimGateway {
  readonly sims: SimCluster;
  /** The first (with one engine, the only) sim engine. */
  readonly engine: SimEngine;
  readonly gw: TestGateway;
}

/**
 * Starts `count` sim engines (quick ones unless `simArgs` says otherwise; keep `--kv-events none`
 * among them) and a gateway whose backends are those engines (ids `sim0`, `sim1`, ...; KV events
 * off) plus `config`; `teardown` stops them all.
 */
export async function startSimGateway(
  teardown: Teardown,
  config: SimGatewayConfig = {},
  count = 1,
  simArgs: readonly string[] = QUICK_SIM_ARGS,
): Promise<SimGateway> {
  const sims = await startSims(count, simArgs, teardown);
  const gw = await startTestGateway(
    { ...config, backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e, false)) },
    teardown,
  );
  return { sims, engine: sims.engines[0] as SimEngine, gw };
}

/**
 * A test file's startSimGateway set-up (fileSetUp): its `before` hook starts it, its `after` hook
 * stops it. Read `sims`, `engine` and `gw` in tests only; a test may add what it starts to `teardown`.
 */
export function simGateway(
  config: SimGatewayConfig = {},
  count = 1,
  simArgs: readonly string[] = QUICK_SIM_ARGS,
): SimGateway & { readonly teardown: Teardown } {
  return fileSetUp(new Teardown(), ['sims', 'engine', 'gw'], (teardown) =>
    startSimGateway(teardown, config, count, simArgs),
  );
}
