/**
 * Starts built-in engines (`switchyard engine sim|llama`) as child processes on loopback, for
 * `switchyard serve` and for tests: each child listens on a free port and announces itself with one
 * JSON ready line on stdout (see src/cli/engine-command.ts); the supervisor collects those, forwards
 * the children's stderr with a prefix, reports a child that dies, and stops them all (SIGTERM, then
 * SIGKILL after a grace period).
 *
 * Each child runs in its own process group, so a terminal's Ctrl-C (or a wrapper signalling the
 * group) reaches only the supervisor, which drains first and then stops the engines in order. Each
 * child's stdin is a pipe the supervisor holds for the child's life: when the supervisor dies, however
 * it dies, the kernel closes it and the child exits (see `whenParentGone`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SwitchyardError } from '../core/errors.ts';
import { PARENT_PIPE_ENV } from './process-signals.ts';

/** The CLI entry point the children run. */
const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));

/** Default wait for a child's ready line: generous, a busy machine or a large model is slow to start. */
export const READY_TIMEOUT_MS_DEFAULT = 300_000;
/** Default wait between SIGTERM and SIGKILL when stopping. */
export const STOP_GRACE_MS_DEFAULT = 10_000;
/** Most engines one supervisor starts. */
export const LOCAL_ENGINES_MAX = 256;
/** Most stderr characters kept per child, for the error when it dies before it is ready. */
const STDERR_TAIL_CHARS = 4000;

/** One running engine child. */
export interface LocalEngine {
  /** Base URL of its OpenAI API, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** Its KV-event ZMQ endpoint, or null when it publishes none. */
  readonly kvEvents: string | null;
  readonly pid: number;
  /** The model name requests must use. */
  readonly model: string;
}

/** The engines a supervisor started. */
export interface LocalEngines {
  readonly engines: readonly LocalEngine[];
  /** SIGTERM to every child, SIGKILL to those still alive after the grace period; resolves when all exited. */
  stop(): Promise<void>;
}

/** Options of `startLocalEngines`. */
export interface LocalEnginesOptions {
  readonly count: number;
  readonly engine: 'sim' | 'llama';
  /** Flags passed to every child (`--port 0` is appended: each picks a free port). */
  readonly args: readonly string[];
  /** A child exited after it was ready and before `stop` (code or signal, as node reports them). */
  onExit?(index: number, code: number | null, signal: NodeJS.Signals | null): void;
  /** A child printed its ready line, `elapsedMs` after the supervisor spawned it. */
  onReady?(index: number, engine: LocalEngine, elapsedMs: number): void;
  /** Wait for each ready line; default READY_TIMEOUT_MS_DEFAULT. */
  readonly readyTimeoutMs?: number;
  /** Wait between SIGTERM and SIGKILL; default STOP_GRACE_MS_DEFAULT. */
  readonly stopGraceMs?: number;
  /** Where the children's stderr goes, line by line with a `[engine i] ` prefix; default process.stderr. */
  readonly log?: (line: string) => void;
}

interface Child {
  readonly index: number;
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  alive: boolean;
}

function parseReady(line: string): LocalEngine | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v['event'] !== 'ready' || typeof v['url'] !== 'string' || typeof v['model'] !== 'string')
    return undefined;
  const kv = v['kvEvents'];
  return { url: v['url'], model: v['model'], kvEvents: typeof kv === 'string' ? kv : null, pid: 0 };
}

/**
 * Starts `count` engines and resolves once every one printed its ready line. Rejects (after stopping
 * the ones that started) when a child exits or stays silent past `readyTimeoutMs`; the error carries
 * the end of that child's stderr.
 */
export async function startLocalEngines(options: LocalEnginesOptions): Promise<LocalEngines> {
  const { count } = options;
  if (!Number.isInteger(count) || count < 1 || count > LOCAL_ENGINES_MAX) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid count '${count}': expected an integer in [1, ${LOCAL_ENGINES_MAX}]`,
      { param: 'count' },
    );
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const readyTimeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS_DEFAULT;
  const graceMs = options.stopGraceMs ?? STOP_GRACE_MS_DEFAULT;
  const children: Child[] = [];
  let stopping = false;

  const stop = async (): Promise<void> => {
    stopping = true;
    for (const child of children) if (child.alive) child.process.kill('SIGTERM');
    const all = Promise.all(children.map((c) => c.exited));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    });
    if ((await Promise.race([all, late])) === 'late') {
      for (const child of children) if (child.alive) child.process.kill('SIGKILL');
      await all;
    }
    clearTimeout(timer);
  };

  const readies = new Array<Promise<LocalEngine>>(count);
  for (let index = 0; index < count; index++) {
    const spawnedMs = performance.now();
    const proc = spawn(process.execPath, [BIN, 'engine', options.engine, ...options.args, '--port', '0'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, [PARENT_PIPE_ENV]: 'stdin' },
    });
    // Never written to: it only has to stay open while this process lives. A child that exits
    // makes writes fail, and there are none; errors on it are the child's exit, reported below.
    proc.stdin?.on('error', () => {});
    let stderrTail = '';
    const prefix = `[engine ${index}] `;
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      stderrTail = (stderrTail + line + '\n').slice(-STDERR_TAIL_CHARS);
      log(prefix + line);
    });
    const child: Child = {
      index,
      process: proc,
      alive: true,
      exited: new Promise((resolve) => proc.once('close', () => resolve())),
    };
    children.push(child);
    let ready = false;
    readies[index] = new Promise<LocalEngine>((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        reject(
          new SwitchyardError(
            'SY_ERR_UPSTREAM',
            `engine ${index} (${options.engine}) ${why}${stderrTail === '' ? '' : `; its stderr ends:\n${stderrTail}`}`,
            { param: 'engine', index },
          ),
        );
      };
      const timer = setTimeout(
        () => fail(`printed no ready line within ${readyTimeoutMs} ms`),
        readyTimeoutMs,
      );
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        if (!ready) {
          const engine = parseReady(line);
          if (engine !== undefined) {
            ready = true;
            clearTimeout(timer);
            const started = { ...engine, pid: proc.pid ?? 0 };
            options.onReady?.(index, started, performance.now() - spawnedMs);
            resolve(started);
            return;
          }
        }
        log(prefix + line);
      });
      proc.once('error', (error) => fail(`could not start: ${error.message}`));
      // 'close' comes after the child's stdio closed, so its last stderr lines are in the tail.
      proc.once('close', (code, signal) => {
        child.alive = false;
        if (!ready) {
          fail(`exited (code ${code}, signal ${signal}) before it was ready`);
        } else if (!stopping) {
          options.onExit?.(index, code, signal);
        }
      });
    });
  }

  // The first failure stops the rest; their own rejections then have nobody to tell.
  for (const ready of readies) ready.catch(() => {});
  try {
    const engines = await Promise.all(readies);
    return { engines, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
