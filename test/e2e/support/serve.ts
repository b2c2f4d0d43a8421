/**
 * Starting `switchyard serve` as a child process for the e2e tests: spawn it on port 0, keep its
 * output lines, wait for its listening line and read the URL from it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { BIN } from './cli.ts';
import { until } from './wait.ts';

/** Guard on serve's start (engines included), against a hang: not a performance bound. */
export const SERVE_START_GUARD_MS = 60_000;

/** A running `switchyard serve`. */
export interface ServeProcess {
  readonly proc: ChildProcess;
  readonly url: string;
  /** Its output, one entry per line, growing while it runs. */
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the exit code once the process closed. */
  readonly exited: Promise<number | null>;
  /** SIGTERM (a graceful shutdown), then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `switchyard serve --port 0 ...args` (with `options.nodeArgs`, such as a preload, given to
 * node before the script), records the child in `children` (for the file's `killAll`), and resolves
 * once it prints its listening line; rejects with its stderr if it exits first.
 */
export async function startServe(
  args: readonly string[],
  children: ChildProcess[],
  options: { readonly env?: NodeJS.ProcessEnv; readonly nodeArgs?: readonly string[] } = {},
): Promise<ServeProcess> {
  const nodeArgs = options.nodeArgs ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, BIN, 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  children.push(proc);
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (l) => stdout.push(l));
  createInterface({ input: proc.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  await until(
    'the listening line',
    () => {
      if (proc.exitCode !== null) throw new Error(`serve exited ${proc.exitCode}: ${stderr.join('\n')}`);
      return stdout.some((l) => l.includes('listening on'));
    },
    SERVE_START_GUARD_MS,
    25,
  );
  const url = /listening on (http:\/\/\S+)/.exec(stdout.join('\n'))?.[1] as string;
  return {
    proc,
    url,
    stdout,
    stderr,
    exited,
    stop: () => {
      proc.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * Serve's autoscaler flags for one static replica per model that starts from zero and is looked at
 * every 100 ms: the sleep and held-request tests' common setup.
 */
export const ONE_REPLICA_FROM_ZERO_ARGS: readonly string[] = [
  '--autoscaler',
  'static',
  '--min-instances',
  '0',
  '--max-instances',
  '1',
  '--autoscaler-interval-ms',
  '100',
];

/**
 * Serve's flags for one sim model m (llama-3.1-8b) at `timeScale`, one replica from zero, that sleeps
 * past a 300 ms keep-alive instead of stopping: the sleep tests' common setup.
 */
export function oneSleepingModelArgs(timeScale: number): string[] {
  return [
    '--time-scale',
    String(timeScale),
    '--model',
    'm=llama-3.1-8b',
    ...ONE_REPLICA_FROM_ZERO_ARGS,
    '--keep-alive-ms',
    '300',
    '--sleep',
  ];
}

/** A short chat completion for `model` through serve at `url`; resolves with its status (body read). */
export async function chatStatus(url: string, model: string): Promise<number> {
  return (await chatAnswer(url, model)).status;
}

/** As `chatStatus`, with the error code of an answer that carries one (an OpenAI error body). */
export async function chatAnswer(
  url: string,
  model: string,
): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 }),
  });
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } } | null)?.error?.code;
  } catch {
    // Not JSON: no code.
  }
  return { status: res.status, code };
}

/** A streaming request held open by `holdStream`. */
export interface HeldStream {
  /** The answer's status. */
  readonly status: number;
  /** Aborts the request (the gateway then ends it) and waits for the body to settle. */
  close(): Promise<void>;
}

/**
 * Output long enough that a held stream outlives the checks made while it runs (about half a minute
 * of decoding at the sleep tests' time scale of 0.1): `close()` ends it, not its length.
 */
const HELD_STREAM_MAX_TOKENS = 50_000;

/**
 * A streaming chat completion for `model` through serve at `url`, held open: resolves once its
 * status and first bytes arrived, with the request still running on an engine. A request in flight
 * keeps its model's engine up (the keep-alive counts from the last request's end), so checks of an
 * awake engine made while one is held cannot race the next sleep, however slow the machine.
 */
export async function holdStream(url: string, model: string): Promise<HeldStream> {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: HELD_STREAM_MAX_TOKENS,
      stream: true,
    }),
    signal: abort.signal,
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  if (first.done) throw new Error(`the held stream ended at once (status ${res.status})`);
  return {
    status: res.status,
    close: async () => {
      abort.abort();
      await reader.read().catch(() => undefined);
    },
  };
}
