/**
 * An open-loop load generator: sends `POST /v1/chat/completions` at a fixed rate whatever the
 * responses do (wrk is closed-loop: a slow response delays the next request, which hides latency),
 * and records each request's latency from the moment it was dispatched to the moment its whole body
 * had arrived. Sends on a 1 ms timer: at each tick every request due by then goes out, so at
 * 1,000 req/s about one per tick. The schedule lag (dispatch time minus the intended time) is
 * reported too, to show the generator kept up. The same code, rate, bodies and core serve every
 * row, so its own overhead cancels out in (via proxy) minus (direct).
 *
 * Run as a child: `node --import tsx bench/gateway/open-loop.ts --url http://127.0.0.1:P --rate 1000
 * --duration 10 --bodies FILE.json`; prints one JSON line with the figures.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { scriptArgs, scriptUsageError } from '../../scripts/script-args.ts';

const USAGE = `Usage: node --import tsx bench/gateway/open-loop.ts --url URL --bodies FILE.json [options]

The gateway benchmark's open-loop load generator (bench:gateway starts it): POSTs the bodies in turn
at a fixed rate whatever the responses do, then prints one JSON line: latency percentiles, schedule
lag, errors. SY_BENCH_DUMP=PREFIX also writes every request's send time and latency to PREFIX-PID.json.

Options:
  --url URL             the server, e.g. http://127.0.0.1:8100 (required)
  --bodies FILE.json    a JSON array of request bodies (strings), sent in turn (required)
  --rate N              requests per second (default 1000)
  --duration S          measured seconds (default 10)
  --warmup S            seconds sent first and not counted (default 1)
  --connections N       the undici Pool's connections (default 64)
  --path PATH           the request path (default /v1/chat/completions)
  -h, --help            this text

Example:
  node --import tsx bench/gateway/open-loop.ts --url http://127.0.0.1:8100 --bodies /tmp/bodies.json --rate 500`;

const { values } = scriptArgs('open-loop', USAGE, () =>
  parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '1' },
      bodies: { type: 'string' },
      connections: { type: 'string', default: '64' },
      path: { type: 'string', default: '/v1/chat/completions' },
    },
  }),
);
if (values.url === undefined || values.bodies === undefined)
  scriptUsageError('open-loop', USAGE, '--url URL and --bodies FILE.json are required');
const rate = Number(values.rate);
const durationMs = Number(values.duration) * 1000;
const warmupMs = Number(values.warmup) * 1000;
const bodies = (JSON.parse(readFileSync(values.bodies, 'utf8')) as string[]).map((b) => Buffer.from(b));
const pool = new Pool(values.url, { connections: Number(values.connections), pipelining: 1 });
const headers = { 'content-type': 'application/json' };

/** Requests to send in all, warm-up included; one latency slot each. */
const total = Math.round(((warmupMs + durationMs) / 1000) * rate);
const warmupCount = Math.round((warmupMs / 1000) * rate);
const latencyMs = new Float64Array(total).fill(Number.NaN);
const lagMs = new Float64Array(total);
let errors = 0;
let completed = 0;
let sent = 0;
const intervalMs = 1000 / rate;

function send(i: number, startMs: number): void {
  const body = bodies[i % bodies.length] as Buffer;
  pool
    .request({ path: values.path as string, method: 'POST', headers, body })
    .then(async (res) => {
      await res.body.dump({ limit: Number.POSITIVE_INFINITY });
      if (res.statusCode !== 200) errors++;
      latencyMs[i] = performance.now() - startMs;
    })
    .catch(() => {
      errors++;
    })
    .finally(() => {
      completed++;
      if (completed === total) finish();
    });
}

const t0 = performance.now();
function tick(): void {
  const now = performance.now();
  while (sent < total && t0 + sent * intervalMs <= now) {
    lagMs[sent] = now - (t0 + sent * intervalMs);
    send(sent, performance.now());
    sent++;
  }
  if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * intervalMs - performance.now()));
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function finish(): void {
  const measured = latencyMs
    .subarray(warmupCount)
    .filter((x) => !Number.isNaN(x))
    .sort();
  const lag = lagMs.subarray(warmupCount).slice().sort();
  const elapsedS = (performance.now() - t0) / 1000;
  const out = {
    requests: measured.length,
    errors,
    offeredRate: rate,
    achievedRate: total / elapsedS,
    elapsedS,
    latencyMsP50: quantile(measured, 0.5),
    latencyMsP90: quantile(measured, 0.9),
    latencyMsP99: quantile(measured, 0.99),
    latencyMsP999: quantile(measured, 0.999),
    latencyMsMax: quantile(measured, 1),
    latencyMsMean: measured.reduce((a, b) => a + b, 0) / Math.max(1, measured.length),
    scheduleLagMsP50: quantile(lag, 0.5),
    scheduleLagMsP99: quantile(lag, 0.99),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  // Diagnostics: every measured request's send time (ms after the first) and latency, to look for
  // periodic stalls. Set SY_BENCH_DUMP to a file name prefix; each run writes PREFIX-PID.json.
  const dump = process.env.SY_BENCH_DUMP;
  if (dump !== undefined && dump !== '') {
    const rows: [number, number][] = [];
    for (let i = warmupCount; i < total; i++) rows.push([i * intervalMs, latencyMs[i] as number]);
    writeFileSync(`${dump}-${process.pid}.json`, JSON.stringify(rows));
  }
  void pool.close();
}

tick();
