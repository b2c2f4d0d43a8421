/**
 * Runs Switchyard's gateway in its own process for the benchmark (so it can have a core to itself):
 * loads a YAML config the way `switchyard serve --config` does, calls `startGateway`, prints one JSON
 * line `{"ready":true,"url":...}`. On SIGTERM or SIGINT it closes the gateway and exits normally, so
 * `node --cpu-prof` writes its profile.
 *
 * `node --import tsx bench/gateway/switchyard-child.ts --config FILE.yaml`
 */
import { parseArgs } from 'node:util';
import { loadGatewayConfig, startGateway } from '../../src/gateway/index.ts';

const { values } = parseArgs({ options: { config: { type: 'string' } } });
if (values.config === undefined) {
  console.error('usage: switchyard-child.ts --config FILE.yaml');
  process.exit(2);
}
const gateway = await startGateway(loadGatewayConfig(values.config));
process.stdout.write(`${JSON.stringify({ ready: true, url: gateway.url, policy: gateway.policyName })}\n`);

let closing = false;
const stop = (): void => {
  if (closing) return;
  closing = true;
  // Bounded: a stuck drain must not keep the benchmark's children alive.
  const timer = setTimeout(() => process.exit(0), 5000);
  timer.unref();
  void gateway.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
