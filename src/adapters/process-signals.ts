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
  // From here on this watcher drains an orphan instead (ORPHAN_DRAIN_MS in run-engine.ts).
  disarmEarlyExit?.();
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

/** Removes the watcher `exitIfParentGoesBeforeServing` set, when one is set. */
let disarmEarlyExit: (() => void) | undefined;

/**
 * Under a supervisor (`PARENT_PIPE_ENV`), exits the process at once if the supervisor is gone before
 * the engine serves: a model load takes seconds to minutes, and an orphan would spend them, and the
 * model's memory, for nobody. The first `whenParentGone` (the engine now serves) takes over. The
 * watch does not hold the process open: an engine that fails to start still exits. Not for a
 * standby engine before its order line, which it reads from the same stdin.
 */
export function exitIfParentGoesBeforeServing(name: string): void {
  if (process.env[PARENT_PIPE_ENV] !== 'stdin' || disarmEarlyExit !== undefined) return;
  const stdin = process.stdin as NodeJS.ReadStream & { unref?(): void; ref?(): void };
  const gone = (): void => {
    // The supervisor held stderr's other end too: a write may fail with EPIPE, which is no news.
    process.stderr.on('error', () => {});
    process.stderr.write(`${name}: its supervisor is gone before it served; exiting\n`);
    process.exit(0);
  };
  const drop = (): void => {};
  stdin.on('data', drop);
  stdin.once('end', gone);
  stdin.once('error', gone);
  stdin.once('close', gone);
  stdin.resume();
  stdin.unref?.();
  disarmEarlyExit = () => {
    stdin.off('data', drop);
    stdin.off('end', gone);
    stdin.off('error', gone);
    stdin.off('close', gone);
    stdin.ref?.();
    disarmEarlyExit = undefined;
  };
}
