/**
 * The Switchyard gateway as the benchmark runs it: `startGateway` in a child process of its own
 * (bench/gateway/switchyard-child.ts, loading the YAML config as `switchyard serve --config` does),
 * with a generated config whose backends are the benchmark's upstream ports.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { BENCH_MODEL } from './bodies.ts';

/** The child that runs the gateway, relative to the repository root. */
const CHILD = 'bench/gateway/switchyard-child.ts';

/** Whether this checkout has a gateway to run yet (src/gateway with its entry point). */
export function gatewayAvailable(root: string): boolean {
  return existsSync(join(root, 'src/gateway/index.ts'));
}

/**
 * Writes a gateway config: `port`, one `openai` backend per upstream port (they all serve
 * BENCH_MODEL; type openai means no metrics scraping and /v1/models as the health check), and
 * `policy` for routing. Returns the file name.
 */
export function writeGatewayConfig(
  file: string,
  port: number,
  upstreams: readonly number[],
  policy: string,
): string {
  const config = {
    host: '127.0.0.1',
    port,
    backends: upstreams.map((p, i) => ({
      id: `b${i}`,
      type: 'openai',
      url: `http://127.0.0.1:${p}`,
      models: [BENCH_MODEL],
    })),
    routing: { policy },
  };
  writeFileSync(file, stringify(config));
  return file;
}

/** argv that runs the gateway with `config`, by this Node with `nodeFlags` (e.g. --cpu-prof). */
export function gatewayArgs(
  root: string,
  config: string,
  nodeFlags: readonly string[],
  statsFile: string | undefined,
): string[] {
  const stats = statsFile === undefined ? [] : ['--stats', statsFile];
  return [process.execPath, ...nodeFlags, '--import', 'tsx', join(root, CHILD), '--config', config, ...stats];
}
