/**
 * Finding the processes an e2e test started, by a marker in their command line (a random served
 * model name, say) or their environment (a preload path), through /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Pids of live processes other than this one whose command line (or environment) holds `marker`. */
export function pidsWith(marker: string, where: 'cmdline' | 'environ' = 'cmdline'): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/${where}`, 'utf8').includes(marker)) pids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Sends `signal` to the process group `pid` leads (SIGSTOP/SIGCONT to freeze an engine); gone is fine. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Gone already.
  }
}
