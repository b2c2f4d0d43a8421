/**
 * Soak and leak hunt on the live path: `switchyard serve` with built-in engines driven for minutes
 * by a seeded mix of well-formed and abusive clients, while the gateway's and each engine's RSS,
 * heap (after a full GC) and open descriptors are sampled; then an idle stretch, after which every
 * in-flight gauge must be back at 0 and the gateway's counters must balance
 * (accepted = completed + failed). Prints one line per sample and a before/after table.
 *
 *   node --import tsx bench/soak.ts --duration 300 --seed 1
 *   node --import tsx bench/soak.ts --engine llama --duration 120
 */
import { type ChildProcess, execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import { Rng } from '../src/core/rng.ts';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../src/engine-servers/llama/tiny-gguf.ts';
import { BIN } from '../test/e2e/support/cli.ts';
import { engineChildren } from '../test/e2e/support/processes.ts';
import { startServe } from '../test/e2e/support/serve.ts';

const USAGE = `Usage: node --import tsx bench/soak.ts [options]

Starts switchyard serve (tenants with keys, priorities and an RPM limit) over built-in engines and
drives it with a seeded mix: chat, completions and responses, streamed or not, n > 1, tools and
structured output; clients that abort before the headers or mid-stream, that read slowly, that
stop reading, that send half a body and stall; a small admission gate so bursts queue; malformed
JSON, oversized bodies, unknown models, bad keys, an over-RPM tenant; distinct user values, model
names and 4-12 KB X-Session-Id headers; GET /v1/models, /metrics, /ready, /health, /stats; bursts of 500 at once and
switchyard bench runs. Samples RSS, heap after GC and open fds of the gateway and each engine every
--sample seconds, idles --idle seconds, then checks in-flight gauges and counters.

Options:
  --duration S     seconds of traffic (default 300)
  --idle S         seconds idle after the traffic before the last sample (default 30)
  --seed N         seed of the traffic mix (default 1)
  --engine KIND    sim or llama (default sim; llama runs the tiny GGUF)
  --engines N      engines to start (default 3 sim, 1 llama)
  --clients N      concurrent client loops (default 24)
  --policy NAME    serve's routing policy (default: serve's own default)
  --sample S       seconds between samples (default 10)
  --burst-every S  seconds between bursts of 500 (default 60; 0: none)
  --bench-every S  seconds between switchyard bench runs (default 90; 0: none)
  --out FILE       also append every sample as a JSON line to FILE
  -h, --help       this text

Exit 1 when a gauge stays above 0 after the idle stretch or the counters do not balance.

Example:
  node --import tsx bench/soak.ts --duration 600 --seed 7 --out /tmp/soak.jsonl`;

const { values } = scriptArgs('bench:soak', USAGE, () =>
  parseArgs({
    options: {
      duration: { type: 'string', default: '300' },
      idle: { type: 'string', default: '30' },
      seed: { type: 'string', default: '1' },
      engine: { type: 'string', default: 'sim' },
      engines: { type: 'string' },
      clients: { type: 'string', default: '24' },
      policy: { type: 'string' },
      sample: { type: 'string', default: '10' },
      'burst-every': { type: 'string', default: '60' },
      'bench-every': { type: 'string', default: '90' },
      out: { type: 'string' },
    },
  }),
);
const engineKind = values.engine;
if (engineKind !== 'sim' && engineKind !== 'llama')
  scriptUsageError('bench:soak', USAGE, '--engine: sim or llama');
const num = (name: string, text: string | undefined, fallback: number): number => {
  const n = text === undefined ? fallback : Number(text);
  if (!Number.isFinite(n) || n < 0) scriptUsageError('bench:soak', USAGE, `--${name}: a number >= 0`);
  return n;
};
const durationS = num('duration', values.duration, 300);
const idleS = num('idle', values.idle, 30);
const seed = num('seed', values.seed, 1);
const engineCount = num('engines', values.engines, engineKind === 'sim' ? 3 : 1);
const clientCount = num('clients', values.clients, 24);
const sampleS = Math.max(1, num('sample', values.sample, 10));
const burstEveryS = num('burst-every', values['burst-every'], 60);
const benchEveryS = num('bench-every', values['bench-every'], 90);

/** The traffic mix's only randomness (the project's seeded generator), so a seed replays the same choices. */
const rng = new Rng(seed);
const random = (): number => rng.next();
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;

const KEY = 'soak-team-key';
const BATCH_KEY = 'soak-batch-key';
const LIMITED_KEY = 'soak-limited-key';
const work = mkdtempSync(join(tmpdir(), 'switchyard-soak-'));

// Loaded into the gateway and every engine (NODE_OPTIONS): every 5 s a full GC, then one JSON line
// of process.memoryUsage() and the active libuv resources by kind (timers, sockets) in
// SOAK_MEMLOG_DIR/<pid>.jsonl; SIGUSR2 writes a heap snapshot there.
const MEMLOG = `import { isMainThread } from 'node:worker_threads';
import { appendFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
const dir = process.env.SOAK_MEMLOG_DIR;
if (isMainThread && dir) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const log = () => {
    gc();
    const resources = {};
    for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] ?? 0) + 1;
    appendFileSync(dir + '/' + process.pid + '.jsonl', JSON.stringify({ t: Date.now(), ...process.memoryUsage(), resources }) + '\\n');
  };
  setInterval(log, 5000).unref();
  let shots = 0;
  process.on('SIGUSR2', () => { gc(); v8.writeHeapSnapshot(dir + '/' + process.pid + '-' + ++shots + '.heapsnapshot'); });
}
`;
const memlogPath = join(work, 'memlog.mjs');
writeFileSync(memlogPath, MEMLOG);
const configPath = join(work, 'gateway.yaml');
writeFileSync(
  configPath,
  `tenants:
  - { key: ${KEY}, name: team, priority: 1 }
  - { key: ${BATCH_KEY}, name: batch, priority: -1, weight: 0.5 }
  - { key: ${LIMITED_KEY}, name: limited, rpm: 30 }
admission:
  gate: { inFlightMax: 48 }
adminKey: soak-admin-key-0123
`,
);

const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
let baseUrl = '';
let model = '';
const outcomes = new Map<string, number>();
const count = (what: string): void => {
  outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
};

interface Call {
  readonly method?: string;
  readonly path: string;
  readonly body?: string | Buffer;
  readonly key?: string | null;
  /** 'before-headers': destroy the socket before any answer; 'first-chunk': after the first body chunk. */
  readonly abort?: 'before-headers' | 'first-chunk' | 'mid';
  /** Milliseconds between body reads (pauses the socket: backpressure on the gateway). */
  readonly slowMs?: number;
  /** Reads nothing for this many milliseconds after the headers, then hangs up. */
  readonly stallMs?: number;
  /** Sends half the body, then nothing for this many milliseconds, then hangs up. */
  readonly trickleMs?: number;
  readonly headers?: Record<string, string>;
}

/** One HTTP exchange; resolves with the status (0: aborted or failed), never rejects. */
function call(c: Call): Promise<number> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...c.headers };
    if (c.key !== null) headers['authorization'] = `Bearer ${c.key ?? KEY}`;
    const req = request(`${baseUrl}${c.path}`, { method: c.method ?? 'POST', agent, headers }, (res) => {
      if (c.stallMs !== undefined) {
        res.pause();
        setTimeout(() => {
          req.destroy();
          resolve(0);
        }, c.stallMs);
        return;
      }
      let chunks = 0;
      res.on('data', () => {
        chunks++;
        if ((c.abort === 'first-chunk' && chunks === 1) || (c.abort === 'mid' && chunks === 4)) {
          req.destroy();
          resolve(0);
          return;
        }
        if (c.slowMs !== undefined) {
          res.pause();
          setTimeout(() => res.resume(), c.slowMs);
        }
      });
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
      res.on('close', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    if (c.abort === 'before-headers') setTimeout(() => req.destroy(), Math.floor(random() * 20));
    if (c.trickleMs !== undefined && c.body !== undefined) {
      const body = Buffer.from(c.body);
      req.setHeader('content-length', body.length);
      req.write(body.subarray(0, body.length >> 1));
      setTimeout(() => {
        req.destroy();
        resolve(0);
      }, c.trickleMs);
      return;
    }
    req.end(c.body);
  });
}

const say = (n: number): string => `Say something number ${n}. `.repeat(1 + Math.floor(random() * 30));
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];
const SCHEMA = {
  type: 'json_schema',
  json_schema: {
    name: 'answer',
    schema: { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] },
  },
};

/** A well-formed generation request of a random kind. */
function generation(extra: Partial<Call> = {}): Call {
  const n = Math.floor(random() * 1e9);
  const stream = random() < 0.6;
  const maxTokens = 4 + Math.floor(random() * 60);
  const user = random() < 0.5 ? { user: `user-${n}` } : {};
  const kind = pick(['chat', 'chat', 'completions', 'responses', 'chat-n', 'chat-tools', 'chat-schema']);
  const messages = [{ role: 'user', content: say(n) }];
  const bodies: Record<string, [string, object]> = {
    chat: ['/v1/chat/completions', { model, messages, stream, max_tokens: maxTokens, ...user }],
    completions: ['/v1/completions', { model, prompt: say(n), stream, max_tokens: maxTokens, ...user }],
    responses: [
      '/v1/responses',
      { model, input: say(n), stream, max_output_tokens: 16 + maxTokens, ...user },
    ],
    'chat-n': ['/v1/chat/completions', { model, messages, max_tokens: maxTokens, n: 3 }],
    'chat-tools': ['/v1/chat/completions', { model, messages, stream, max_tokens: maxTokens, tools: TOOLS }],
    'chat-schema': [
      '/v1/chat/completions',
      { model, messages, stream, max_tokens: 32, response_format: SCHEMA },
    ],
  };
  const [path, body] = bodies[kind] as [string, object];
  const key = pick([KEY, KEY, KEY, BATCH_KEY]);
  const headers: Record<string, string> = { 'x-request-id': `soak-${n}` };
  // A distinct session id of 4-12 KB: the session tables are bounded by count, each key must be too.
  if (random() < 0.05) headers['x-session-id'] = `${n}-`.padEnd(4096 + Math.floor(random() * 8192), 's');
  return { path, body: JSON.stringify(body), key, headers, ...extra };
}

/** Abusive or odd requests, each its own refusal path. */
function abuse(): Call {
  const n = Math.floor(random() * 1e9);
  return pick<Call>([
    { path: '/v1/chat/completions', body: '{"model": "x", "messages": [' },
    { path: '/v1/chat/completions', body: Buffer.alloc(9 << 20, 0x61) },
    { path: '/v1/chat/completions', body: JSON.stringify({ model: `no-such-model-${n}`, messages: [] }) },
    { path: '/v1/completions', body: JSON.stringify({ model, prompt: 'x' }), key: `wrong-key-${n}` },
    { path: '/v1/completions', body: JSON.stringify({ model, prompt: 'x' }), key: null },
    {
      path: '/v1/completions',
      body: JSON.stringify({ model, prompt: 'x', max_tokens: 4 }),
      key: LIMITED_KEY,
    },
    { path: '/v1/chat/completions', body: JSON.stringify({ model, messages: 'not a list' }) },
    { path: `/v1/unknown-route-${n % 1000}`, body: '{}' },
    { method: 'GET', path: '/v1/models' },
    { method: 'GET', path: '/metrics' },
    { method: 'GET', path: '/ready' },
    { method: 'GET', path: '/health' },
    { method: 'GET', path: '/stats' },
  ]);
}

/** One client's next request: mostly well-formed, some aborted or slow, some abusive. */
function nextCall(): Call {
  const r = random();
  if (r < 0.45) return generation();
  if (r < 0.55) return generation({ abort: 'before-headers' });
  if (r < 0.65) return generation({ abort: pick(['first-chunk', 'mid'] as const) });
  if (r < 0.7) return generation({ slowMs: 50 + Math.floor(random() * 200) });
  if (r < 0.72) return generation({ stallMs: 1000 + Math.floor(random() * 10_000) });
  if (r < 0.74) return generation({ trickleMs: 1000 + Math.floor(random() * 10_000) });
  return abuse();
}

async function clientLoop(until: number): Promise<void> {
  while (Date.now() < until) {
    const c = nextCall();
    const status = await call(c);
    const kind = c.abort ?? (c.slowMs ? 'slow' : c.stallMs ? 'stall' : c.trickleMs ? 'trickle' : 'plain');
    count(`${kind} ${status}`);
  }
}

async function burst(): Promise<void> {
  const statuses = await Promise.all(Array.from({ length: 500 }, () => call(generation())));
  for (const s of statuses) count(`burst ${s}`);
}

function benchRun(): Promise<void> {
  return new Promise((resolve) => {
    const args = [BIN, 'bench', '--url', baseUrl, '--api-key', KEY, '--rate', '20', '--requests', '100'];
    args.push('--input-tokens', '64-512', '--output-tokens', '8-64', '--model', model);
    execFile(process.execPath, args, { timeout: 300_000, maxBuffer: 16 << 20 }, (error, _out, err) => {
      count(`bench ${error === null ? 'ok' : 'failed'}`);
      if (error !== null)
        process.stdout.write(`switchyard bench failed: ${err.trim().split('\n').slice(-3).join(' / ')}\n`);
      resolve();
    });
  });
}

// --- observation -----------------------------------------------------------------------------

interface ProcSample {
  readonly pid: number;
  readonly rssMiB: number;
  readonly heapMiB: number;
  readonly fds: number;
  /** Timers (Timeout, Immediate) alive at the last memlog line. */
  readonly timers: number;
}

function procSample(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  let heapMiB = Number.NaN;
  let timers = Number.NaN;
  try {
    const lines = readFileSync(join(work, `${pid}.jsonl`), 'utf8')
      .trim()
      .split('\n');
    const last = JSON.parse(lines[lines.length - 1] as string) as {
      heapUsed: number;
      resources: Record<string, number>;
    };
    heapMiB = last.heapUsed / 2 ** 20;
    timers = (last.resources['Timeout'] ?? 0) + (last.resources['Immediate'] ?? 0);
  } catch {
    // Not logged yet.
  }
  return { pid, rssMiB: rssKiB / 1024, heapMiB, fds: readdirSync(`/proc/${pid}/fd`).length, timers };
}

async function getText(path: string): Promise<string> {
  const res = await fetch(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${KEY}` } });
  return res.text();
}

/** The sum of a metric's samples whose line starts with `name` (any labels). */
function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface GatewayStats {
  failed: Record<string, number>;
  rejected: Record<string, number>;
  accepted: number;
  completed: number;
  failedTotal: number;
  inFlight: number;
  queued: number;
}

interface Sample {
  readonly at: string;
  readonly tS: number;
  readonly gateway: ProcSample;
  readonly engines: ProcSample[];
  readonly stats: GatewayStats;
  readonly metricsBytes: number;
  readonly running: number;
  readonly waiting: number;
}

async function sample(phase: string, gatewayPid: number, startedMs: number): Promise<Sample> {
  const stats = JSON.parse(await getText('/stats')) as GatewayStats;
  const metrics = await getText('/metrics');
  const s: Sample = {
    at: phase,
    tS: Math.round((Date.now() - startedMs) / 1000),
    gateway: procSample(gatewayPid),
    engines: engineChildren(gatewayPid).map(procSample),
    stats,
    metricsBytes: metrics.length,
    running: metricSum(metrics, 'switchyard_gateway_instance_running'),
    waiting: metricSum(metrics, 'switchyard_gateway_instance_waiting'),
  };
  const eng = s.engines
    .map((e) => `${e.rssMiB.toFixed(0)}/${e.heapMiB.toFixed(1)}/${e.fds}/${e.timers}`)
    .join(' ');
  process.stdout.write(
    `${phase} t=${s.tS}s gateway rss ${s.gateway.rssMiB.toFixed(1)} MiB heap ${s.gateway.heapMiB.toFixed(1)} MiB fds ${s.gateway.fds} timers ${s.gateway.timers}; ` +
      `engines rss/heap/fds/timers ${eng}; accepted ${stats.accepted} completed ${stats.completed} failed ${stats.failedTotal} ` +
      `inFlight ${stats.inFlight} queued ${stats.queued}; engine running ${s.running} waiting ${s.waiting}; /metrics ${s.metricsBytes} B\n`,
  );
  if (values.out !== undefined) appendFileSync(values.out, `${JSON.stringify(s)}\n`);
  return s;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  const engineArgs =
    engineKind === 'sim'
      ? ['--engine', 'sim', '--time-scale', '0.02']
      : ['--engine', 'llama', '--model', ensureTinyLlamaGguf(TINY_LLAMA_DEFAULT_PATH)];
  const policyArgs = values.policy === undefined ? [] : ['--policy', values.policy];
  const serve = await startServe(
    ['--config', configPath, '--engines', String(engineCount), ...engineArgs, ...policyArgs],
    children,
    {
      env: {
        ...process.env,
        SOAK_MEMLOG_DIR: work,
        NODE_OPTIONS: `--import=${pathToFileURL(memlogPath).href}`,
      },
    },
  );
  baseUrl = serve.url;
  const gatewayPid = serve.proc.pid as number;
  try {
    model = (JSON.parse(await getText('/v1/models')) as { data: { id: string }[] }).data[0]?.id as string;
    process.stdout.write(
      `soak: ${baseUrl} model ${model}, policy ${values.policy ?? 'default'}, seed ${seed}, ${durationS} s, work dir ${work}\n`,
    );
    const startedMs = Date.now();
    await sleep(6000);
    const first = await sample('start', gatewayPid, startedMs);
    const until = Date.now() + durationS * 1000;
    const loops = Array.from({ length: clientCount }, () => clientLoop(until));
    const extras: Promise<void>[] = [];
    let nextBurst = burstEveryS > 0 ? Date.now() + burstEveryS * 1000 : Number.POSITIVE_INFINITY;
    let nextBench = benchEveryS > 0 ? Date.now() + (benchEveryS * 1000) / 2 : Number.POSITIVE_INFINITY;
    while (Date.now() < until) {
      await sleep(sampleS * 1000);
      if (Date.now() >= nextBurst) {
        extras.push(burst());
        nextBurst += burstEveryS * 1000;
      }
      if (Date.now() >= nextBench) {
        extras.push(benchRun());
        nextBench += benchEveryS * 1000;
      }
      await sample('load', gatewayPid, startedMs);
    }
    await Promise.all([...loops, ...extras]);
    const loaded = await sample('end', gatewayPid, startedMs);
    // Our keep-alive sockets would count in the gateway's fds: close them, as departing clients do.
    agent.destroy();
    await sleep(idleS * 1000);
    const idle = await sample('idle', gatewayPid, startedMs);
    process.stdout.write(
      `client outcomes (kind status): ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}\n`,
    );
    process.stdout.write(
      `gateway failed ${JSON.stringify(idle.stats.failed)} rejected ${JSON.stringify(idle.stats.rejected)}\n`,
    );
    const row = (name: string, s: Sample): string =>
      `| ${name} | ${s.gateway.rssMiB.toFixed(1)} | ${s.gateway.heapMiB.toFixed(1)} | ${s.gateway.fds} | ` +
      `${s.engines.map((e) => e.rssMiB.toFixed(0)).join(', ')} | ${s.engines.map((e) => e.heapMiB.toFixed(1)).join(', ')} | ` +
      `${s.engines.map((e) => e.fds).join(', ')} |`;
    process.stdout.write(
      '| moment | gateway RSS MiB | gateway heap MiB | gateway fds | engines RSS MiB | engines heap MiB | engines fds |\n' +
        '| --- | --- | --- | --- | --- | --- | --- |\n' +
        `${row('start', first)}\n${row('end of traffic', loaded)}\n${row(`after ${idleS} s idle`, idle)}\n`,
    );
    const st = idle.stats;
    const balanced = st.accepted === st.completed + st.failedTotal && st.inFlight === 0 && st.queued === 0;
    const drained = idle.running === 0 && idle.waiting === 0;
    process.stdout.write(
      `balance: accepted ${st.accepted} = completed ${st.completed} + failed ${st.failedTotal}: ${balanced}; ` +
        `engines running ${idle.running} waiting ${idle.waiting}: ${drained ? 'drained' : 'NOT drained'}\n`,
    );
    process.exitCode = balanced && drained ? 0 : 1;
  } finally {
    await serve.stop();
    // Serve's own log (ejections, stalls, upstream errors) explains failures the counters only count.
    writeFileSync(join(work, 'serve.log'), [...serve.stdout, ...serve.stderr].join('\n'));
    process.stdout.write(
      `serve's last log lines (all in ${join(work, 'serve.log')}):\n${serve.stderr.slice(-12).join('\n')}\n`,
    );
  }
}

await main();
