/**
 * The life of a built-in engine process, shared by `switchyard engine sim` and `engine llama`:
 * listen, print the ready line the local-engine supervisor reads, wait for SIGTERM or SIGINT, drain.
 * Under a supervisor (`switchyard serve`) it also exits when the supervisor dies, so a killed
 * gateway never leaves engines holding their ports and models.
 */
import { untilSignal, whenParentGone } from '../adapters/process-signals.ts';
import { invalidArgument } from '../core/errors.ts';
import type { EngineBackend } from './backend.ts';
import { startOpenAiServer } from './openai-server.ts';

/** The ready line a built-in engine prints on stdout once it listens (one JSON object). */
export interface EngineReadyLine {
  readonly event: 'ready';
  readonly engine: 'sim' | 'llama';
  readonly url: string;
  readonly model: string;
  readonly kvEvents: string | null;
}

/** How to serve one backend. */
export interface ServeEngineOptions {
  readonly engine: EngineReadyLine['engine'];
  readonly host: string;
  readonly port: number;
  readonly maxWaiting?: number | undefined;
  /** Longest wait for in-flight requests after a signal. */
  readonly shutdownTimeoutS: number;
  /** The KV-event endpoint the ready line announces. */
  readonly kvEvents: string | null;
  /** Frees what the backend's host opened beside it (a KV publisher); runs on every exit path. */
  readonly release?: () => Promise<void>;
}

/** Wait for in-flight requests when the supervisor died: nobody is left to read their answers. */
const ORPHAN_DRAIN_MS = 1000;

/** Serves `backend` until SIGTERM or SIGINT (or its supervisor's death), then drains and closes. */
export async function serveEngine(backend: EngineBackend, options: ServeEngineOptions): Promise<void> {
  // Watched from the start: a parent that died while the model loaded is seen at once.
  const parent = whenParentGone();
  const server = await startOpenAiServer(backend, {
    host: options.host,
    port: options.port,
    ownedBy: `switchyard-${options.engine}`,
    ...(options.maxWaiting === undefined ? {} : { maxWaiting: options.maxWaiting }),
  }).catch(async (error: Error) => {
    parent.stop();
    await backend.close();
    await options.release?.();
    throw invalidArgument(
      'port',
      `${options.host}:${options.port}`,
      `a free address to listen on (${error.message})`,
    );
  });
  const ready: EngineReadyLine = {
    event: 'ready',
    engine: options.engine,
    url: server.url,
    model: backend.modelId,
    kvEvents: options.kvEvents,
  };
  // Listen for the stop signal before the ready line: a supervisor that signals as soon as it reads
  // the line must reach this handler, not Node's default (die at once, with no drain).
  const signalled = untilSignal();
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  backend.markReady?.();
  const why = await Promise.race([signalled, parent.gone.then(() => 'parent-gone' as const)]);
  parent.stop();
  if (why === 'parent-gone') {
    // The supervisor held the other end of stderr too: a write may fail with EPIPE, which is no news.
    process.stderr.on('error', () => {});
    process.stderr.write(`switchyard engine ${options.engine}: its supervisor is gone; exiting\n`);
    await server.close(ORPHAN_DRAIN_MS);
    await options.release?.();
    // Whatever else holds the loop (a KV socket, a native model thread) must not keep an orphan alive.
    process.exit(0);
  }
  process.stderr.write(
    `switchyard engine ${options.engine}: ${why}, draining ${server.inFlight} in-flight request(s) ` +
      `(up to ${options.shutdownTimeoutS} s)\n`,
  );
  await server.close(options.shutdownTimeoutS * 1000);
  await options.release?.();
}
