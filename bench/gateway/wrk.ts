/**
 * wrk for the gateway benchmark: a Lua script that cycles through prebuilt POST requests (built
 * once per thread in `init`, so wrk spends no time formatting them) and prints its summary as one
 * JSON line from `done`, and a runner that parses that line.
 */
import { writeFileSync } from 'node:fs';
import { WRK_BIN } from './nginx.ts';
import { runToEnd } from './procs.ts';

const MARK = 'WRKJSON ';

/** What one wrk run measured. */
export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly requestsPerS: number;
  readonly bytes: number;
  /** Socket errors (connect, read, write, timeout) plus responses with status >= 400. */
  readonly errors: number;
  readonly latencyMsP50: number;
  readonly latencyMsP99: number;
}

/** Writes a wrk Lua script that POSTs `bodies` in turn to `path`; returns its file name. */
export function writeWrkScript(file: string, path: string, bodies: readonly string[]): string {
  for (const b of bodies) if (b.includes(']==]')) throw new Error('a body contains the Lua long-string end');
  const list = bodies.map((b) => `[==[${b}]==]`).join(',\n');
  writeFileSync(
    file,
    `local bodies = {
${list}
}
local requests = {}
local i = 0
init = function(args)
  local headers = { ["Content-Type"] = "application/json" }
  for k, b in ipairs(bodies) do
    requests[k] = wrk.format("POST", "${path}", headers, b)
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('${MARK}{"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
`,
  );
  return file;
}

/** Runs wrk (one thread, keep-alive) against `url` with `script`, through `prefix` (e.g. taskset). */
export async function runWrk(
  prefix: readonly string[],
  url: string,
  script: string,
  connections: number,
  seconds: number,
): Promise<WrkResult> {
  const argv = [
    ...prefix,
    WRK_BIN,
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '10s',
    '-s',
    script,
    url,
  ];
  const { code, out } = await runToEnd(argv);
  const line = out.split('\n').find((l) => l.startsWith(MARK));
  if (code !== 0 || line === undefined) throw new Error(`wrk exited with ${code}:\n${out}`);
  const j = JSON.parse(line.slice(MARK.length)) as Record<string, number>;
  const s = (j.duration_us ?? 0) / 1e6;
  return {
    requests: j.requests ?? 0,
    seconds: s,
    requestsPerS: (j.requests ?? 0) / s,
    bytes: j.bytes ?? 0,
    errors: j.errors ?? 0,
    latencyMsP50: (j.p50_us ?? 0) / 1000,
    latencyMsP99: (j.p99_us ?? 0) / 1000,
  };
}
