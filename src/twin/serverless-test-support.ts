/**
 * The settings of a serverless twin run as the serverless tests write them (serverless-host,
 * context-limit, kv-store): seed 3, least-request routing, no cluster groups (the serverless host
 * places every instance), no named policies, an SLO of 2 s TTFT and 100 ms TPOT. Test code only.
 */
import type { TwinSettings } from './run.ts';
import type { ServerlessSettings } from './serverless-host.ts';

/** TwinSettings running `workload` under `serverless` (e.g. from serverlessFromFlags) with `engine` options. */
export function serverlessTwinSettings(
  workload: TwinSettings['workload'],
  serverless: ServerlessSettings | undefined,
  engine: TwinSettings['engine'] = {},
): TwinSettings {
  return {
    seed: 3,
    policy: 'least-request',
    policies: {},
    cluster: { groups: [] },
    engine,
    workload,
    slo: { ttftMs: 2000, tpotMs: 100 },
    output: {},
    expectedRequests: undefined,
    serverless,
  };
}
