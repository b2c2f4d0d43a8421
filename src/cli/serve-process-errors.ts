/**
 * What `switchyard serve` does with an error nothing in it caught (docs/gateway.md, "Errors nothing
 * caught"). Both are bugs; they are told apart by what is still known to be sound:
 *
 * - An unhandled promise rejection: one asynchronous task failed and nobody awaited it. The event
 *   loop, the other requests and the engines are intact, and ending the process would cut every
 *   open stream and stop every local engine (a model load is seconds to minutes) for one lost task.
 *   Serve logs one line naming it and keeps serving; repeats within 30 s are counted into the next
 *   line, so a rejection per request cannot flood the log.
 * - An uncaught exception: it unwound a synchronous stack part-way, so any state that code was
 *   changing may be half-changed (Node's docs: not safe to resume). Serve logs one line with the
 *   stack and exits 1 at once, without a drain that would run on that state; its local engines see
 *   their parent gone and stop by themselves (src/adapters/process-signals.ts), and a supervisor
 *   restarts serve on the non-zero status.
 */
import { LogLimiter } from '../adapters/log-limiter.ts';

/** Window in which repeated unhandled rejections are counted rather than each logged. */
const REJECTION_LOG_EVERY_MS = 30_000;

/** The error on one line: its stack when it has one (frames joined with " | "), else its text. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const text = error.stack ?? `${error.name}: ${error.message}`;
    return text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0)
      .join(' | ');
  }
  try {
    return `non-Error value ${JSON.stringify(error) ?? String(error)}`;
  } catch {
    return `non-Error value ${String(error)}`;
  }
}

/**
 * Installs serve's process-level handlers; returns a function that removes them. `say` writes one
 * stderr line; `exit` ends the process (process.exit outside tests).
 */
export function watchProcessErrors(
  say: (line: string) => void,
  exit: (code: number) => void = (code) => process.exit(code),
): () => void {
  const limiter = new LogLimiter({
    now: () => performance.now(),
    everyMs: REJECTION_LOG_EVERY_MS,
    keysMax: 1,
  });
  const onRejection = (reason: unknown): void => {
    limiter.report('rejection', (suppressed) => {
      const more = suppressed > 0 ? ` (${suppressed} more since the last such line)` : '';
      say(`unhandled promise rejection, a bug; serving continues${more}: ${describeError(reason)}`);
    });
  };
  const onException = (error: unknown): void => {
    say(
      `uncaught exception, a bug; exiting 1 without a drain (local engines stop on their own): ${describeError(error)}`,
    );
    exit(1);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
