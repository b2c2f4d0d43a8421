// Whether a checkout's dist/ is current: the one rule the launcher (bin/switchyard.mjs) and the
// benchmarks that time it (bench/twin-speed.ts, bench/cli-startup.ts) apply, so they cannot disagree.
// Plain JavaScript with no dependencies: the launcher loads it before it knows whether tsx is needed.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Newest mtime (ms) of the non-test .ts files under `dir`; 0 when there is no such directory. */
export function newestSourceMs(dir) {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSourceMs(path));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
      newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * The build stamp of the checkout at `root`: dist/.built, written by `npm run build` after tsc
 * succeeds and dated when the build started, so an edit made during the build counts as newer.
 */
export function distStamp(root) {
  return join(root, 'dist', '.built');
}

/**
 * Why `root`'s dist/ cannot be run ('dist/ is not built', 'dist/ is older than src/'), or undefined
 * when it is current. `stampMs`: the stamp's mtime when the caller already has it.
 */
export function distProblem(root, stampMs = statSync(distStamp(root), { throwIfNoEntry: false })?.mtimeMs) {
  if (stampMs === undefined) return 'dist/ is not built';
  return newestSourceMs(join(root, 'src')) > stampMs ? 'dist/ is older than src/' : undefined;
}
