/**
 * Finding the processes an e2e test started, by a marker in their command line (a random served
 * model name, say), their environment (a preload path) or their parent (serve's engine children),
 * through /proc; freezing and thawing them.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { after } from 'node:test';
import { killAll } from './wait.ts';

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

/** The processes whose parent is `pid` (/proc/<pid>/task/<pid>/children): serve's engines, say. */
export function childPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .split(' ')
    .filter((t) => t.trim() !== '')
    .map(Number);
}

/** A process's argv (/proc/<pid>/cmdline), or [] once it is gone. */
export function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== '');
  } catch {
    return [];
  }
}

/** Whether `pid` is alive and not a zombie (an exited child its parent has not reaped yet). */
export function alive(pid: number): boolean {
  try {
    // "pid (comm) state ...": comm may hold spaces, so read after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Sends `signal` to the process group `pid` leads (SIGSTOP/SIGCONT to freeze an engine); gone is fine. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Gone already.
  }
}

/**
 * The pids of `ppid`'s engine children that run the engine in a process group of their own. Before
 * its exec a fresh child still holds its parent's descriptors (and command line): frozen then, it
 * would keep serve's pipes open.
 */
export function engineChildren(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // "pid (comm) state ppid pgrp ...": comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const [, parent, group] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(parent) !== ppid || group !== name) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes('engine')) out.push(Number(name));
    } catch {
      // It exited while we looked.
    }
  }
  return out;
}

/**
 * Process groups a test froze (SIGSTOP), a slow start or sleep made deterministic: `thaw` one when
 * the test goes on; `thawAll` in the file's `after` (before killing) leaves none stopped.
 */
export class Freezer {
  private readonly frozen = new Set<number>();

  freeze(pid: number): void {
    signalGroup(pid, 'SIGSTOP');
    this.frozen.add(pid);
  }

  thaw(pid: number): void {
    signalGroup(pid, 'SIGCONT');
    this.frozen.delete(pid);
  }

  thawAll(): void {
    for (const pid of this.frozen) this.thaw(pid);
  }
}

/**
 * A test file's set-up for freezing serve's engines: the children it starts and a Freezer, with the
 * file's `after` hook registered, which thaws every frozen group and then kills the children.
 */
export function freezingHooks(): { readonly children: ChildProcess[]; readonly freezer: Freezer } {
  const children: ChildProcess[] = [];
  const freezer = new Freezer();
  after(async () => {
    freezer.thawAll();
    await killAll(children);
  });
  return { children, freezer };
}
