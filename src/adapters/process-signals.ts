/**
 * Process signals and parent death, for the long-running commands (`serve`, `engine`).
 */

/** Resolves with the first SIGTERM or SIGINT, then stops listening for both. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

/**
 * The same signal again within this window is the same request: a Ctrl-C under `npm start` arrives
 * twice, once from the terminal to the whole process group and once forwarded by npm.
 */
export const SIGNAL_COALESCE_MS = 250;

/**
 * Calls `onSignal` for every SIGTERM or SIGINT with its 1-based count, and keeps Node's default
 * (die at once) out of the way, so a second Ctrl-C (or a wrapper such as `timeout` forwarding a
 * signal again) reaches the caller instead of killing the process mid-drain. A repeat of the same
 * signal within SIGNAL_COALESCE_MS is not counted. Returns the unsubscribe.
 */
export function onEverySignal(onSignal: (signal: NodeJS.Signals, count: number) => void): () => void {
  let count = 0;
  let last: { signal: NodeJS.Signals; atMs: number } | undefined;
  const on = (signal: NodeJS.Signals): void => {
    const now = Date.now();
    if (last !== undefined && last.signal === signal && now - last.atMs < SIGNAL_COALESCE_MS) return;
    last = { signal, atMs: now };
    count++;
    onSignal(signal, count);
  };
  process.on('SIGTERM', on);
  process.on('SIGINT', on);
  return () => {
    process.off('SIGTERM', on);
    process.off('SIGINT', on);
  };
}

/**
 * The environment variable a supervisor sets on a child whose stdin is a pipe it holds open for
 * the child's whole life: when the pipe reaches end-of-file the supervisor is gone.
 */
export const PARENT_PIPE_ENV = 'SWITCHYARD_PARENT_PIPE';

/**
 * Resolves when the supervising parent is gone: stdin (a pipe only the parent holds the write end
 * of) reached end-of-file or failed. The kernel closes a dead process's descriptors whatever killed
 * it (SIGKILL, OOM killer, crash), so this fires at once and needs no polling, unlike watching
 * `process.ppid` (which changes to a subreaper, not always 1, and only shows on the next poll).
 * Never resolves when the process was not started with `PARENT_PIPE_ENV=stdin` (run by hand, its
 * stdin is a terminal or /dev/null). `stop()` releases stdin so it does not hold the process open.
 */
export function whenParentGone(): { readonly gone: Promise<void>; stop(): void } {
  if (process.env[PARENT_PIPE_ENV] !== 'stdin') return { gone: new Promise(() => {}), stop: () => {} };
  const stdin = process.stdin;
  let resolveGone: () => void = () => {};
  const gone = new Promise<void>((resolve) => {
    resolveGone = resolve;
  });
  const done = (): void => resolveGone();
  // The parent never writes; reading keeps the pipe watched, and the data is dropped. Resumed
  // explicitly: a reader before this one (a standby engine's order line) may have paused it.
  stdin.on('data', () => {});
  stdin.resume();
  stdin.once('end', done);
  stdin.once('error', done);
  stdin.once('close', done);
  return {
    gone,
    stop: () => {
      stdin.off('end', done);
      stdin.off('error', done);
      stdin.off('close', done);
      stdin.destroy();
    },
  };
}
