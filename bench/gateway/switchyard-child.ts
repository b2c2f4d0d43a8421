/**
 * Runs Switchyard's gateway in its own process for the benchmark (so it can have a core to itself):
 * loads a YAML config the way `switchyard serve --config` does, calls `startGateway`, prints one JSON
 * line `{"ready":true,"url":...}`. On SIGTERM or SIGINT it closes the gateway and exits normally, so
 * `node --cpu-prof` writes its profile.
 *
 * With `--stats FILE` it also writes, on exit, the event loop's delay (p50, p99, max) and the
 * garbage collector's pauses by kind, to tell stalls inside the gateway from noise outside it.
 *
 * `node --import tsx bench/gateway/switchyard-child.ts --config FILE.yaml [--stats FILE.json]`
 */
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../../scripts/script-args.ts';
import { loadGatewayConfig, startGateway } from '../../src/gateway/index.ts';

const USAGE = `Usage: node --import tsx bench/gateway/switchyard-child.ts --config FILE.yaml [--stats FILE.json]

Switchyard's gateway in a process of its own, as bench:gateway --gateway-stats runs it: loads the
config as switchyard serve --config does, prints {"ready":true,"url":...}, closes on SIGTERM/SIGINT.

Options:
  --config FILE.yaml    the gateway config (required)
  --stats FILE.json     on exit, write event-loop delay, GC pauses and memory samples there
                        (default: none)
  -h, --help            this text

Example:
  node --cpu-prof --import tsx bench/gateway/switchyard-child.ts --config /tmp/gw.yaml --stats /tmp/s.json`;

const { values } = scriptArgs('switchyard-child', USAGE, () =>
  parseArgs({ options: { config: { type: 'string' }, stats: { type: 'string' } } }),
);
if (values.config === undefined)
  scriptUsageError('switchyard-child', USAGE, '--config FILE.yaml is required');
const gateway = await startGateway(loadGatewayConfig(values.config));
process.stdout.write(`${JSON.stringify({ ready: true, url: gateway.url, policy: gateway.policyName })}\n`);

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
/** GC kind (perf_hooks.constants: 1 minor, 4 major, 8 incremental, 16 weak callbacks) -> pauses. */
const GC_KINDS: Record<number, string> = { 1: 'minor', 4: 'major', 8: 'incremental', 16: 'weakcb' };
const gc = new Map<string, { count: number; totalMs: number; maxMs: number }>();
/** Every 5 s: seconds since start, heap used and RSS in MiB, requests accepted so far. */
const memory: [number, number, number, number][] = [];
const t0 = performance.now();
if (values.stats !== undefined) {
  loopDelay.enable();
  setInterval(() => {
    const m = process.memoryUsage();
    const mib = (b: number): number => Math.round(b / 2 ** 20);
    const seconds = Math.round((performance.now() - t0) / 1000);
    memory.push([seconds, mib(m.heapUsed), mib(m.rss), gateway.stats.accepted]);
  }, 5000).unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const code = (e as { detail?: { kind?: number } }).detail?.kind ?? 0;
      const kind = GC_KINDS[code] ?? String(code);
      const g = gc.get(kind) ?? { count: 0, totalMs: 0, maxMs: 0 };
      g.count++;
      g.totalMs += e.duration;
      g.maxMs = Math.max(g.maxMs, e.duration);
      gc.set(kind, g);
    }
  }).observe({ entryTypes: ['gc'] });
}

function writeStats(file: string): void {
  const ms = (ns: number): number => ns / 1e6;
  writeFileSync(
    file,
    JSON.stringify({
      loopDelayMs: {
        p50: ms(loopDelay.percentile(50)),
        p99: ms(loopDelay.percentile(99)),
        p999: ms(loopDelay.percentile(99.9)),
        max: ms(loopDelay.max),
      },
      gc: Object.fromEntries(gc),
      memory,
    }),
  );
}

let closing = false;
const stop = (): void => {
  if (closing) return;
  closing = true;
  if (values.stats !== undefined) writeStats(values.stats);
  // Bounded: a stuck drain must not keep the benchmark's children alive.
  const timer = setTimeout(() => process.exit(0), 5000);
  timer.unref();
  void gateway.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
