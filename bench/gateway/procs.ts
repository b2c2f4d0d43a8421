/**
 * Child processes for the gateway benchmark: start one (optionally pinned with taskset), wait for
 * its port, read the CPU time of it and its descendants from /proc, stop them all at the end.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/** taskset's path when it runs here, else undefined (processes then run unpinned). */
export function findTaskset(): string | undefined {
  const r = spawnSync('taskset', ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0 ? 'taskset' : undefined;
}

/**
 * The argv prefix that runs a command at niceness `nice` (0: unchanged; negative needs root) and
 * pinned to `cpus` (e.g. "1" or "0,1"; undefined or no taskset: unpinned).
 */
export function pinPrefix(taskset: string | undefined, cpus: string | undefined, nice = 0): string[] {
  const niceness = nice === 0 ? [] : ['nice', '-n', String(nice)];
  return taskset === undefined || cpus === undefined ? niceness : [...niceness, taskset, '-c', cpus];
}

const children: ChildProcess[] = [];

/** Starts `argv` in the background; its output goes to the returned log (kept for errors). */
export function startChild(
  argv: readonly string[],
  name: string,
): { child: ChildProcess; log: () => string } {
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d: Buffer): void => {
    log = (log + d.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (e) => {
    log += `\n${name}: ${e.message}`;
  });
  children.push(child);
  return { child, log: () => log };
}

/** Stops every child started here (SIGTERM, by pid). */
export function stopChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
}

/** `count` distinct free loopback ports (bound and released; fine on an otherwise quiet machine). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import('node:net').Server>((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === 'string') throw new Error('no port');
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Resolves once something accepts TCP connections on `port`, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`${what} did not listen on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const TICKS_PER_S = 100;

function descendants(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    try {
      for (const t of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(' ')) {
        if (t.trim() !== '') out.push(Number(t));
      }
    } catch {
      // Gone, or no /proc: counts as nothing.
    }
  }
  return out;
}

/**
 * CPU seconds (user + system) used so far by `pid` and its descendants, from /proc/PID/stat; 0
 * where /proc is missing. Resolution 10 ms.
 */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let ticks = 0;
  for (const p of descendants(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Fields after the command name start at field 3 (state); utime is 14, stime 15.
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Exited between listing and reading.
    }
  }
  return ticks / TICKS_PER_S;
}

/**
 * Busy CPU seconds of every core together so far (user, nice, system and steal from /proc/stat;
 * not irq and softirq, which no process's own time includes); NaN without /proc.
 */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[7] ?? 0)) / TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU seconds of this process plus its children that have exited and been reaped (wrk, the
 * open-loop generator: /proc/self/stat utime, stime, cutime, cstime).
 */
export function selfAndReapedSeconds(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

/** Runs a command to its end and resolves with its exit code and stdout and stderr together. */
export function runToEnd(argv: readonly string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const collect = (d: Buffer): void => {
      out += d.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}
