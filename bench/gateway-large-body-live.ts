/**
 * What large request bodies do to a live gateway's event loop, end to end: a real gateway (in this
 * process, so its event loop is measured) in front of a real `switchyard engine sim` child, with a
 * client on a worker thread that sends ~7.9 MB chat bodies at a fixed rate while it probes
 * `/health` one probe at a time (each 10 ms after the last answer). Per phase it prints `/health`
 * latency (p50, p99, max), the gateway's event-loop delay (perf_hooks monitorEventLoopDelay: p50,
 * p99, max), its event-loop utilisation, and, from a CPU profile of the gateway's thread, where its
 * busy time went per large body (read, decode, JSON.parse, routing fields, hand-off, proxy, GC).
 *
 * Each rate runs both ways, alternating, `--repeat` times: bodies parsed on the event loop
 * (`limits.offThreadParseBytes: 0`, the path before the worker pool) and on the pool (the default
 * 1 MiB threshold); a rate of 0 gives the idle baseline. Each way's phases are pooled (health
 * samples, one delay histogram). Ratios are pool / event loop.
 *
 *   npm run bench:large-body-live                                   # rates 0,1,3; 2 x 10 s each way
 *   npm run bench:large-body-live -- --seconds 20 --repeat 3 --rates 1,3 --body-mb 7.9
 *   npm run bench:large-body-live -- --profile    # also where the thread's time went (slower)
 *
 * The profile (V8's sampling profiler on the gateway's thread, 1 ms interval) inflates the busy
 * times it runs under, so its phases are separate from the measured ones.
 *
 * The sim engine refuses a prompt past its context (131,072 tokens) with a 400, after the gateway
 * read, parsed, admitted and proxied the whole body: the gateway's work is that of a served one,
 * short of relaying a long answer.
 */
import { Session } from 'node:inspector/promises';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { scriptArgs } from '../scripts/script-args.ts';
import { startLocalEngines } from '../src/adapters/local-engines.ts';
import { startGateway } from '../src/gateway/index.ts';

const MODEL = 'llama-3.1-8b';
const MIB = 1024 * 1024;
const HEALTH_GAP_MS = 10;
/** Large bodies in flight at most (a stuck gateway must not pile up unbounded sends). */
const LARGE_IN_FLIGHT_MAX = 16;

const USAGE = `Usage: npm run bench:large-body-live -- [options]   (node --import tsx bench/gateway-large-body-live.ts)

What large request bodies do to a live gateway's event loop: a gateway in this process in front of
a switchyard engine sim child, a client sending ~7.9 MB chat bodies at each rate while it probes
/health; bodies parsed on the event loop against on the worker pool, alternating; ratios pool / loop.

Options:
  --rates R1,R2     large bodies per second, one phase each way per rate; 0 is the idle baseline
                    (default 0,1,3)
  --seconds S       seconds per phase (default 10)
  --repeat N        phases of each way per rate (default 2)
  --body-mb MB      each large body's size, MB (default 7.9)
  --profile         also one profiled phase each way: where the gateway thread's time went per
                    large body (default: off; it inflates busy time, so its phases are apart)
  -h, --help        this text

Examples:
  npm run bench:large-body-live
  npm run bench:large-body-live -- --seconds 20 --repeat 3 --rates 1,3 --profile`;

const { values: args } = scriptArgs('bench:large-body-live', USAGE, () =>
  parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      rates: { type: 'string', default: '0,1,3' },
      'body-mb': { type: 'string', default: '7.9' },
      repeat: { type: 'string', default: '2' },
      profile: { type: 'boolean', default: false },
    },
  }),
);
const SECONDS = Number(args.seconds);
const RATES = args.rates.split(',').map(Number);
const BODY_BYTES = Math.round(Number(args['body-mb']) * 1e6);
const REPEAT = Number(args.repeat);
const PROFILE = args.profile;

type Mode = 'event loop' | 'worker pool';
const MODES: readonly Mode[] = ['event loop', 'worker pool'];

/** What the client worker reports for one phase. */
interface ClientReport {
  readonly healthMs: number[];
  readonly largeMs: number[];
  readonly largeStatus: Record<string, number>;
}

/** One way at one rate, its phases pooled. */
interface Phase {
  readonly rate: number;
  readonly mode: Mode;
  readonly client: ClientReport;
  /** Event-loop delay of each phase (a fresh monitor each: one re-enabled counts the pause between). */
  readonly elds: ReturnType<typeof monitorEventLoopDelay>[];
  /** Event-loop busy and total milliseconds over the phases. */
  activeMs: number;
  totalMs: number;
  readonly profileMs: Map<string, number>;
}

/** The client, as plain JavaScript (no loader needed on its thread). */
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { url, rate, seconds, body, gapMs, inFlightMax } = workerData;
const payload = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
const healthAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const largeAgent = new http.Agent({ keepAlive: true, maxSockets: inFlightMax });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function send(path, method, agent, data) {
  return new Promise((resolve) => {
    const start = performance.now();
    const req = http.request(url + path, { method, agent, headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {} }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - start }));
    });
    req.on('error', (e) => resolve({ status: 'error', ms: performance.now() - start }));
    req.end(data);
  });
}
(async () => {
  const endAt = performance.now() + seconds * 1000;
  const healthMs = [], largeMs = [], largeStatus = {};
  const pending = new Set();
  let timer;
  if (rate > 0) {
    const fire = () => {
      if (pending.size >= inFlightMax) { largeStatus.skipped = (largeStatus.skipped ?? 0) + 1; return; }
      const p = send('/v1/chat/completions', 'POST', largeAgent, payload).then((r) => {
        largeMs.push(r.ms);
        largeStatus[r.status] = (largeStatus[r.status] ?? 0) + 1;
        pending.delete(p);
      });
      pending.add(p);
    };
    fire();
    timer = setInterval(fire, 1000 / rate);
  }
  while (performance.now() < endAt) {
    const r = await send('/health', 'GET', healthAgent);
    healthMs.push(r.ms);
    await sleep(gapMs);
  }
  clearInterval(timer);
  await Promise.all(pending);
  healthAgent.destroy();
  largeAgent.destroy();
  parentPort.postMessage({ healthMs, largeMs, largeStatus });
})();
`;

/** One ASCII chat message making a body of about `bytes` bytes. */
function largeBody(bytes: number): Buffer {
  const text = 'The quick brown fox jumps over the lazy dog. ';
  const content = text.repeat(Math.ceil(bytes / text.length)).slice(0, bytes - 80);
  return Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 16 }));
}

function runClient(url: string, rate: number, seconds: number, body: Buffer): Promise<ClientReport> {
  const worker = new Worker(CLIENT, {
    eval: true,
    workerData: { url, rate, seconds, body, gapMs: HEALTH_GAP_MS, inFlightMax: LARGE_IN_FLIGHT_MAX },
  });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: ClientReport) => {
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', reject);
  });
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

// ---- the CPU profile of the gateway's thread, summed by what the time was spent on ----

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Where a frame's time goes, by its own name and file (undefined: look at its caller). */
function categoryOf(frame: ProfileNode['callFrame'], leaf: boolean): string | undefined {
  const { functionName: name, url } = frame;
  if (leaf && name === '(idle)') return 'idle';
  if (leaf && name === '(garbage collector)') return 'GC';
  if (leaf && name === '(program)') return 'program (native, unattributed)';
  if (leaf && url === '' && name === 'parse') return 'JSON.parse';
  if (leaf && url === '' && /utf8Slice|toString|decode/.test(name)) return 'UTF-8 decode';
  if (/request-build/.test(url)) return 'UTF-8 decode and JSON.parse';
  if (/fast-parse|text-prefix|openai-api/.test(url)) return 'routing fields';
  if (/json-depth/.test(url)) return 'depth scan';
  if (/body-reader/.test(url)) return 'body read (copy into one buffer)';
  if (/parse-pool|piscina/.test(url)) return 'hand-off to the parse worker';
  if (/undici|\/proxy\.ts/.test(url)) return 'proxy (upstream write, answer)';
  if (/admission|policies|driver/.test(url)) return 'admission and routing';
  if (/node:_http|node:net|node:stream|node:internal\/streams/.test(url)) return 'node http and sockets';
  if (/perf_hooks|inspector/.test(url)) return 'measuring';
  return undefined;
}

/** Milliseconds of self time per category. */
function summarize(profile: Profile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const category = new Map<number, string>();
  const categorize = (id: number): string => {
    const known = category.get(id);
    if (known !== undefined) return known;
    let at: number | undefined = id;
    let found: string | undefined;
    for (let leaf = true; at !== undefined && found === undefined; leaf = false) {
      found = categoryOf((byId.get(at) as ProfileNode).callFrame, leaf);
      at = parent.get(at);
    }
    const c = found ?? 'other';
    category.set(id, c);
    return c;
  };
  const out = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const c = categorize(id);
    out.set(c, (out.get(c) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return out;
}

// ---- phases ----

/** Runs one phase of `p` (a fresh gateway), adding its samples to `p`; profiled when `profile`. */
async function runPhase(engineUrl: string, p: Phase, body: Buffer, profile: boolean): Promise<void> {
  const gateway = await startGateway(
    {
      host: '127.0.0.1',
      port: 0,
      backends: [{ id: 'e0', type: 'sim', url: engineUrl, models: [MODEL] }],
      limits: { offThreadParseBytes: p.mode === 'event loop' ? 0 : MIB },
    },
    { log: () => {} },
  );
  try {
    // Warm-up: the JIT, the upstream connection, the pool's threads.
    await runClient(gateway.url, 4, 1, body);
    const session = new Session();
    if (profile) {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 1000 });
      await session.post('Profiler.start');
    }
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    const elu0 = performance.eventLoopUtilization();
    const client = await runClient(gateway.url, p.rate, SECONDS, body);
    const elu = performance.eventLoopUtilization(elu0);
    eld.disable();
    p.elds.push(eld);
    p.activeMs += elu.active;
    p.totalMs += elu.idle + elu.active;
    p.client.healthMs.push(...client.healthMs);
    p.client.largeMs.push(...client.largeMs);
    for (const [k, n] of Object.entries(client.largeStatus))
      p.client.largeStatus[k] = (p.client.largeStatus[k] ?? 0) + n;
    if (profile) {
      const { profile: prof } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
      session.disconnect();
      for (const [k, ms] of summarize(prof)) p.profileMs.set(k, (p.profileMs.get(k) ?? 0) + ms);
    }
  } finally {
    await gateway.close();
  }
}

function newPhase(rate: number, mode: Mode): Phase {
  return {
    rate,
    mode,
    client: { healthMs: [], largeMs: [], largeStatus: {} },
    elds: [],
    activeMs: 0,
    totalMs: 0,
    profileMs: new Map(),
  };
}

/** Event-loop delay in ms: p50 and p99 the mean over the phases, max the largest. */
function eldMs(p: Phase): { p50: number; p99: number; max: number } {
  const mean = (f: (h: Phase['elds'][number]) => number): number =>
    p.elds.reduce((sum, h) => sum + f(h), 0) / p.elds.length / 1e6;
  return {
    p50: mean((h) => h.percentile(50)),
    p99: mean((h) => h.percentile(99)),
    max: Math.max(...p.elds.map((h) => h.max)) / 1e6,
  };
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');

function printPhases(phases: readonly Phase[]): void {
  console.log(
    'rate/s  path          large sent  statuses           health p50  p99    max     ELD p50  p99    max     ELU   busy ms/large',
  );
  for (const p of phases) {
    const h = p.client.healthMs;
    const sent = p.client.largeMs.length;
    const statuses = Object.entries(p.client.largeStatus)
      .map(([s, n]) => `${s}:${n}`)
      .join(' ');
    const row = [
      String(p.rate).padEnd(7),
      p.mode.padEnd(13),
      String(sent).padStart(10),
      `  ${statuses.padEnd(18)}`,
      f1(percentile(h, 50)).padStart(10),
      f1(percentile(h, 99)).padStart(6),
      f1(Math.max(...h)).padStart(7),
      f1(eldMs(p).p50).padStart(9),
      f1(eldMs(p).p99).padStart(6),
      f1(eldMs(p).max).padStart(7),
      `${((100 * p.activeMs) / p.totalMs).toFixed(0)}%`.padStart(6),
      (sent > 0 ? f1(p.activeMs / sent) : '-').padStart(15),
    ];
    console.log(row.join(' '));
  }
}

function printRatios(phases: readonly Phase[]): void {
  console.log('\nratios, worker pool / event loop (lower is better):');
  for (const rate of RATES) {
    const [a, b] = MODES.map((m) => phases.find((p) => p.rate === rate && p.mode === m));
    if (a === undefined || b === undefined) continue;
    const r = (x: number, y: number): string => (y > 0 ? `${(x / y).toFixed(2)}x` : '-');
    console.log(
      `  ${rate}/s: health p50 ${r(percentile(b.client.healthMs, 50), percentile(a.client.healthMs, 50))}, p99 ${r(percentile(b.client.healthMs, 99), percentile(a.client.healthMs, 99))}; event-loop delay p99 ${r(eldMs(b).p99, eldMs(a).p99)}, max ${r(eldMs(b).max, eldMs(a).max)}; busy time ${r(b.activeMs, a.activeMs)}`,
    );
  }
}

function printProfiles(loaded: readonly Phase[], idle: Phase | undefined): void {
  if (loaded.length === 0) return;
  console.log(
    '\ngateway thread self time per large body, ms (CPU profile of one phase each way; the health-probe baseline left in):',
  );
  const categories = [...new Set(loaded.flatMap((p) => [...p.profileMs.keys()]))]
    .filter((c) => c !== 'idle')
    .sort((x, y) => (loaded[0]?.profileMs.get(y) ?? 0) - (loaded[0]?.profileMs.get(x) ?? 0));
  console.log(
    `  ${'category'.padEnd(36)}${loaded.map((p) => `${p.rate}/s ${p.mode}`.padStart(18)).join('')}`,
  );
  for (const c of categories) {
    const cells = loaded.map((p) =>
      f1((p.profileMs.get(c) ?? 0) / Math.max(1, p.client.largeMs.length)).padStart(18),
    );
    console.log(`  ${c.padEnd(36)}${cells.join('')}`);
  }
  if (idle !== undefined)
    console.log(
      `  (baseline with no large bodies: ${f1(idle.activeMs / REPEAT)} ms busy per ${SECONDS} s phase, ${Math.round(idle.client.healthMs.length / REPEAT)} health probes)`,
    );
}

async function main(): Promise<void> {
  const body = largeBody(BODY_BYTES);
  console.log(
    `body ${(body.length / 1e6).toFixed(2)} MB, ${REPEAT} x ${SECONDS} s each way, rates ${RATES.join(', ')}/s, health probe every ${HEALTH_GAP_MS} ms after the last answer; node ${process.version}`,
  );
  const engines = await startLocalEngines({
    count: 1,
    engine: 'sim',
    args: ['--time-scale', '0.1', '--kv-events', 'none'],
    log: () => {},
  });
  const engineUrl = engines.engines[0]?.url as string;
  const phases: Phase[] = [];
  const profiled: Phase[] = [];
  try {
    for (const rate of RATES) {
      const modes = rate === 0 ? MODES.slice(0, 1) : MODES;
      const here = modes.map((m) => newPhase(rate, m));
      phases.push(...here);
      for (let round = 0; round < REPEAT; round++) {
        // Alternate which way goes first, so drift on a shared machine falls on both.
        const order = round % 2 === 0 ? here : [...here].reverse();
        for (const p of order) await runPhase(engineUrl, p, body, false);
        console.error(`  done: ${rate}/s, round ${round + 1} of ${REPEAT}`);
      }
      if (PROFILE && rate > 0)
        for (const m of modes) {
          const p = newPhase(rate, m);
          await runPhase(engineUrl, p, body, true);
          profiled.push(p);
        }
    }
  } finally {
    await engines.stop();
  }
  printPhases(phases);
  printRatios(phases);
  printProfiles(
    profiled,
    phases.find((p) => p.rate === 0),
  );
}

await main();
