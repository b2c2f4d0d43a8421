/**
 * End-to-end: `switchyard serve --standby-reserve-mib N` with real processes. serve fronts a llama
 * model at zero engines with one standby engine; that standby process (a child of serve) runs with
 * `--standby-reserve-mib N` on its command line and holds N MiB resident while it waits
 * (src/engine-servers/llama/memory-reserve.ts); handed the model, it serves. A reserve past the
 * engine's bound, one for sim engines, and one with no standby engine are one usage line each.
 * Reads /proc, so Linux only. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { runCli } from './support/cli.ts';
import { argvOf, childPids } from './support/processes.ts';
import { chatStatus, startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const RESERVE_MIB = 256;
const linuxOnly = { skip: process.platform !== 'linux' && 'reads /proc' };

const children: ChildProcess[] = [];
after(() => killAll(children));

/** The process's resident anonymous memory, MiB (/proc/<pid>/status RssAnon). */
function rssAnonMib(pid: number): number {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m !== null, 'no RssAnon');
  return Number(m[1]) / 1024;
}

async function idleStandby(url: string): Promise<number> {
  const stats = (await (await fetch(`${url}/stats`)).json()) as {
    warmStart: { standby: { idle: number } | null };
  };
  return stats.warmStart.standby?.idle ?? 0;
}

it(
  'serve passes --standby-reserve-mib to its standby llama engines, which hold it while they wait',
  linuxOnly,
  async () => {
    const tiny = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
    const serve = await startServe(
      [
        '--engine',
        'llama',
        '--model',
        `a=${tiny}`,
        '--autoscaler',
        'static',
        '--min-instances',
        '0',
        '--max-instances',
        '1',
        '--standby-engines',
        '1',
        '--warm-cache-mb',
        '0',
        '--standby-reserve-mib',
        String(RESERVE_MIB),
      ],
      children,
    );
    const { url, stderr } = serve;
    await until('a standby engine waiting', async () => (await idleStandby(url)) === 1, HANG_GUARD_MS, 25);
    const standby = childPids(serve.proc.pid as number).filter((pid) => argvOf(pid).includes('--standby'));
    assert.equal(standby.length, 1, stderr.join('\n'));
    const pid = standby[0] as number;
    const argv = argvOf(pid);
    assert.equal(argv[argv.indexOf('--standby-reserve-mib') + 1], String(RESERVE_MIB), argv.join(' '));
    // Touched before the engine said standby (the pool counts it idle only then): all of it resident.
    const standing = rssAnonMib(pid);
    assert.ok(standing >= RESERVE_MIB, `${standing.toFixed(0)} MiB resident while standing by`);
    assert.ok(stderr.some((l) => l.includes(`holding ${RESERVE_MIB} MiB each while they wait`)));
    // Handed the model, the same process frees the reserve and serves.
    assert.equal(await chatStatus(url, 'a'), 200, stderr.join('\n'));
    assert.ok(
      stderr.some((l) => l.includes(`handed to standby engine (pid ${pid})`)),
      stderr.join('\n'),
    );
    const serving = rssAnonMib(pid);
    assert.ok(serving < standing - RESERVE_MIB / 2, `${serving.toFixed(0)} MiB resident once serving`);
    assert.equal(await serve.stop(), 0);
  },
);

it('refuses a reserve past the bound, for sim engines, and with no standby engine', async () => {
  const llama = [
    '--engine',
    'llama',
    '--model',
    'a=x.gguf',
    '--autoscaler',
    'static',
    '--min-instances',
    '0',
  ];
  const cases: [string[], RegExp][] = [
    [[...llama, '--standby-reserve-mib', '65537'], /standby-reserve-mib.*65537.*<=65536/],
    [
      ['--autoscaler', 'static', '--min-instances', '0', '--standby-reserve-mib', '64'],
      /--standby-reserve-mib applies to --engine llama only/,
    ],
    [
      [...llama, '--standby-engines', '0', '--standby-reserve-mib', '64'],
      /--standby-reserve-mib is held by standby engines/,
    ],
  ];
  const runs = await Promise.all(
    cases.map(([args]) => runCli(['serve', '--port', '0', ...args], HANG_GUARD_MS)),
  );
  for (const [k, run] of runs.entries()) {
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, (cases[k] as [string[], RegExp])[1]);
    assert.match(run.stderr, /SY_ERR_INVALID_ARGUMENT/);
  }
});
