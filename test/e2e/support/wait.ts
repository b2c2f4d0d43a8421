/**
 * Helpers the e2e tests of long-running processes share: polling a condition with a hang guard,
 * killing the children a file started, and reading a Prometheus text page.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `check` every `everyMs` until it returns true; throws naming `what` after `guardMs`. The
 * guard catches hangs: it is not a performance bound, and no assertion depends on it.
 */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  guardMs: number,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + guardMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** SIGKILLs every child still running and waits for each to close (an `after` hook's job). */
export async function killAll(children: readonly ChildProcess[]): Promise<void> {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const closed = new Promise((resolve) => child.once('close', resolve));
    child.kill('SIGKILL');
    await closed;
  }
}

/** The samples of a Prometheus text page at `${url}/metrics`, by `name{labels}` as printed. */
export async function scrapeMetrics(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}
