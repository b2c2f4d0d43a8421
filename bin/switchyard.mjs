#!/usr/bin/env node
// Entry point: runs the compiled CLI (dist/, from `npm run build`, which `npm ci` runs through the
// `prepare` script). Every engine child and the gateway start through here, so starting from plain
// JavaScript instead of transpiling the sources through tsx is what makes start-up quick.
//
// When dist/ is missing or older than a source file (a developer edited src/ or pulled and has not
// rebuilt), it runs the sources through tsx instead: slower to start, but never stale code (an
// engine child of `serve` runs what its parent runs: CHECKED below). The notice goes only to a
// terminal, so the output that tests and scripts read stays the same.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distStamp, distProblem as staleDist } from './dist-stamp.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Written by `npm run build` (bin/dist-stamp.mjs says when it is current). */
const STAMP = distStamp(ROOT);
/** Set for this process's children, so a whole `serve` with its engines says it once. */
const NOTED = 'SWITCHYARD_FROM_SOURCE_NOTED';
/**
 * Set for this process's children when it found dist/ current: the stamp's mtime then. A child
 * (each engine of `serve`) that sees the same stamp runs dist/ without walking src/ again (about
 * 360 files, a stat each: 0.04 s of CPU, 0.1 s of wall time per start on the loaded 2-core
 * machine): it runs the code its parent runs, even after an edit to src/ since. A rebuild (another
 * stamp) makes it check for itself.
 */
const CHECKED = 'SWITCHYARD_DIST_CHECKED';

/** Why dist/ cannot be used (missing, or older than src/), or undefined when it is current. */
function distProblem() {
  const stamp = statSync(STAMP, { throwIfNoEntry: false });
  if (stamp === undefined) return 'dist/ is not built';
  const stampMs = String(stamp.mtimeMs);
  if (process.env[CHECKED] === stampMs) return undefined;
  const problem = staleDist(ROOT, stamp.mtimeMs);
  if (problem !== undefined) return problem;
  process.env[CHECKED] = stampMs;
  return undefined;
}

async function loadMain() {
  const problem = distProblem();
  if (problem === undefined) return import('../dist/cli/main.js');
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    // No tsx (dependencies not installed, or installed without dev dependencies).
    if (existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) return import('../dist/cli/main.js');
    console.error(`switchyard: ${problem}; run \`npm ci\` (it builds) or \`npm run build\``);
    process.exit(1);
  }
  if (process.stderr.isTTY && process.env[NOTED] === undefined)
    console.error(`switchyard: ${problem}; running src/ through tsx (slower start); \`npm run build\``);
  process.env[NOTED] = '1';
  register();
  return import('../src/cli/main.ts');
}

const { main } = await loadMain();
process.exitCode = await main(process.argv);
