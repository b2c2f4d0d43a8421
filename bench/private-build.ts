/**
 * What the llama start-up benches share (bench/cold-start.ts, bench/serve-cold-start.ts,
 * bench/swap-in-place.ts): a private build of the CLI, so someone's edit that leaves dist/ stale
 * never puts tsx's start-up in a figure; a plain sequential read of a file, the bandwidth a start is
 * measured against; and the median the benches report.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** 1 MiB reads, as `dd bs=1M`: the copy stays in the CPU's caches, the fastest plain read here. */
const READ_CHUNK_BYTES = 1 << 20;

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Seconds to read the whole file sequentially (1 MiB reads into one buffer), and the bytes read. */
export function sequentialReadS(path: string): { s: number; bytes: number } {
  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  const fd = openSync(path, 'r');
  const start = performance.now();
  let bytes = 0;
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, READ_CHUNK_BYTES, bytes);
      if (n === 0) break;
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return { s: (performance.now() - start) / 1000, bytes };
}

/**
 * Compiles src/ into `buildDir`/dist (tsc with tsconfig.build.json, no type check beyond it, as
 * `npm run build` does) and writes at `bin` the launcher bin/switchyard.mjs would be, importing that
 * dist/. Returns the seconds it took.
 */
export function buildPrivateCli(buildDir: string, bin: string): number {
  const t = performance.now();
  const dist = join(buildDir, 'dist');
  execFileSync(
    join(ROOT, 'node_modules', '.bin', 'tsc'),
    ['-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dist, '--sourceMap', 'false'],
    { stdio: 'inherit' },
  );
  mkdirSync(dirname(bin), { recursive: true });
  const path = relative(dirname(bin), join(dist, 'cli', 'main.js'))
    .split('\\')
    .join('/');
  const specifier = path.startsWith('.') ? path : `./${path}`;
  writeFileSync(
    bin,
    `const { main } = await import('${specifier}');\nprocess.exitCode = await main(process.argv);\n`,
  );
  return (performance.now() - t) / 1000;
}
