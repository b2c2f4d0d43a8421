/**
 * End-to-end: `switchyard serve --standby-reserve-mib auto` with real processes. serve fronts two
 * llama models of different shapes at zero engines with one standby engine; it sizes the reserve
 * from their GGUFs (the larger KV cache at the engines' default context, plus 64 MiB), starts the
 * standby process with that many MiB on its command line, says what sized it, reports it in /stats,
 * and both models are answered. The expected sizes are worked out here by hand from the shapes.
 * Reads /proc, so Linux only. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { TINY_LLAMA_SHAPE, writeLlamaGguf } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { argvOf, childPids } from './support/processes.ts';
import { chatStatus, startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const linuxOnly = { skip: process.platform !== 'linux' && 'reads /proc' };

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-reserve-auto-'));
const SMALL = join(dir, 'small.gguf');
const WIDE = join(dir, 'wide.gguf');
/**
 * KV caches at the default context, 4 sequences x 4,096 tokens (both trained on 4,096), F16 K and V:
 * small: 4 layers x 16,384 cells x 2 x (2 KV heads x 64/4) x 2 B = 8 MiB;
 * wide: 4 layers x 16,384 cells x 2 x (4 KV heads x 128/4) x 2 B = 32 MiB.
 */
const EXPECTED_MIB = 32 + 64;

const children: ChildProcess[] = [];
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

before(() => {
  writeLlamaGguf(SMALL, TINY_LLAMA_SHAPE);
  writeLlamaGguf(WIDE, { ...TINY_LLAMA_SHAPE, embeddingLength: 128, headCountKv: 4 });
});

interface WarmStats {
  readonly standby: { idle: number } | null;
  readonly standbyReserveMib: number;
}

async function warmStats(url: string): Promise<WarmStats> {
  return ((await (await fetch(`${url}/stats`)).json()) as { warmStart: WarmStats }).warmStart;
}

it(
  'serve --standby-reserve-mib auto starts its standby engine with the largest KV cache + 64 MiB, and answers',
  linuxOnly,
  async () => {
    const serve = await startServe(
      [
        '--engine',
        'llama',
        '--model',
        `small=${SMALL}`,
        '--model',
        `wide=${WIDE}`,
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
        'auto',
      ],
      children,
    );
    const { url, stderr } = serve;
    const log = () => stderr.join('\n');
    await until(
      'a standby engine waiting',
      async () => ((await warmStats(url)).standby?.idle ?? 0) === 1,
      HANG_GUARD_MS,
      25,
    );
    assert.ok(
      stderr.some((l) =>
        l.includes(
          `standby reserve auto: ${EXPECTED_MIB} MiB (the largest KV cache, ${WIDE}'s 32 MiB, + 64 MiB)`,
        ),
      ),
      log(),
    );
    assert.ok(
      stderr.some((l) => l.includes(`holding ${EXPECTED_MIB} MiB each while they wait`)),
      log(),
    );
    assert.equal((await warmStats(url)).standbyReserveMib, EXPECTED_MIB);
    const standby = childPids(serve.proc.pid as number).filter((pid) => argvOf(pid).includes('--standby'));
    assert.equal(standby.length, 1, log());
    const argv = argvOf(standby[0] as number);
    assert.equal(argv[argv.indexOf('--standby-reserve-mib') + 1], String(EXPECTED_MIB), argv.join(' '));
    // Handed a model, the standby engine serves; the other model is answered too.
    assert.equal(await chatStatus(url, 'small'), 200, log());
    assert.ok(
      stderr.some((l) => l.includes(`handed to standby engine (pid ${standby[0]})`)),
      log(),
    );
    assert.equal(await chatStatus(url, 'wide'), 200, log());
    assert.equal(await serve.stop(), 0);
  },
);
