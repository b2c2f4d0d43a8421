/**
 * Runs every unit test file (src/**\/*.test.ts) in this one process, each as a suite named by its
 * path. Started one process per file, the unit tests spent most of their time starting Node and
 * tsx and transpiling the same modules again; here that happens once. `npm run test:unit` runs
 * this file beside the end-to-end files (test/**\/*.test.ts), which keep a process each since they
 * start servers and engines of their own.
 *
 * Arguments narrow the run to paths that start with one of them (run it without `--test`, which
 * would take them as more test files):
 * `node --import tsx test/unit-suite.ts src/cli src/loadgen/options.test.ts`.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The unit test files under src/, as repository-relative paths with `/`, sorted. */
export function unitTestFiles(root: string = ROOT): string[] {
  return readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.test.ts'))
    .map((name) => `src/${name.split('\\').join('/')}`)
    .sort();
}

const only = process.argv.slice(2);
for (const file of unitTestFiles()) {
  if (only.length > 0 && !only.some((prefix) => file.startsWith(prefix))) continue;
  // Tests and hooks declared while the file loads belong to this suite, so a file's `after` hooks
  // run when its own tests are done. A file that fails to load fails one test of its own: a failed
  // suite alone would not show in the `ℹ fail` count that CI reads.
  describe(file, async () => {
    try {
      await import(pathToFileURL(join(ROOT, file)).href);
    } catch (error) {
      test('loads', () => {
        throw error;
      });
    }
  });
}
