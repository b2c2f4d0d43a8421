/**
 * bin/switchyard.mjs chooses what to run: the build in dist/ when it is current, the sources through
 * tsx when dist/ is missing or older than a source file, and a one-line hint when neither can run.
 * Each case runs a copy of the real entry point in a temporary tree whose dist/ and src/ entry
 * points only say which of them ran.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A tree with bin/, dist/ (built an hour ago), src/ (two hours ago) and, optionally, node_modules. */
function makeTree(withNodeModules: boolean): string {
  const root = mkdtempSync(join(tmpdir(), 'switchyard-bin-'));
  mkdirSync(join(root, 'bin'));
  for (const file of ['bin/switchyard.mjs', 'bin/dist-stamp.mjs'])
    copyFileSync(join(REPO, file), join(root, file));
  writeFileSync(join(root, 'package.json'), '{"type":"module"}\n');
  mkdirSync(join(root, 'dist/cli'), { recursive: true });
  writeFileSync(
    join(root, 'dist/cli/main.js'),
    "export async function main(argv) { process.stdout.write('dist ' + argv.slice(2).join(' ')); return 0; }\n",
  );
  mkdirSync(join(root, 'src/cli'), { recursive: true });
  // Type annotations: this file only runs if something transpiles it.
  writeFileSync(
    join(root, 'src/cli/main.ts'),
    "export async function main(argv: readonly string[]): Promise<number> {\n  process.stdout.write('src ' + argv.slice(2).join(' '));\n  return 3;\n}\n",
  );
  writeFileSync(join(root, 'src/cli/main.test.ts'), '');
  writeFileSync(join(root, 'dist/.built'), '');
  const now = Date.now() / 1000;
  setMtime(root, 'dist/.built', now - 3600);
  setMtime(root, 'src/cli/main.ts', now - 7200);
  setMtime(root, 'src/cli/main.test.ts', now - 7200);
  if (withNodeModules) symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'), 'dir');
  return root;
}

function setMtime(root: string, file: string, seconds: number): void {
  utimesSync(join(root, file), seconds, seconds);
}

/**
 * Runs the tree's launcher with `--version`, in this process's environment without a parent
 * launcher's word (SWITCHYARD_DIST_CHECKED), with `env` added.
 */
function run(root: string, env: Record<string, string> = {}): Promise<Run> {
  const childEnv = { ...process.env, ...env };
  if (env['SWITCHYARD_DIST_CHECKED'] === undefined) delete childEnv['SWITCHYARD_DIST_CHECKED'];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(root, 'bin/switchyard.mjs'), '--version'],
      { cwd: root, timeout: 60_000, env: childEnv },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test('a current dist/ runs, and a newer test file does not make it stale', async (t) => {
  const root = makeTree(true);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  setMtime(root, 'src/cli/main.test.ts', Date.now() / 1000);
  const r = await run(root);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'dist --version');
});

test('a source file newer than the build runs src/ through tsx, quietly when stderr is not a terminal', async (t) => {
  const root = makeTree(true);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  setMtime(root, 'src/cli/main.ts', Date.now() / 1000);
  const r = await run(root);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'src --version');
  assert.equal(r.stderr, '');
});

test('without a build stamp it runs src/ through tsx', async (t) => {
  const root = makeTree(true);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  unlinkSync(join(root, 'dist/.built'));
  const r = await run(root);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'src --version');
});

test('without tsx it runs a stale dist/, and with no dist/ either prints one line naming the build', async (t) => {
  const root = makeTree(false);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  setMtime(root, 'src/cli/main.ts', Date.now() / 1000);
  const stale = await run(root);
  assert.equal(stale.code, 0, stale.stderr);
  assert.equal(stale.stdout, 'dist --version');

  rmSync(join(root, 'dist'), { recursive: true });
  const none = await run(root);
  assert.equal(none.code, 1);
  assert.equal(none.stdout, '');
  const lines = none.stderr.trim().split('\n');
  assert.equal(lines.length, 1, none.stderr);
  assert.match(lines[0] as string, /dist\/ is not built; run `npm ci` \(it builds\) or `npm run build`/);
});

test('a launcher that found dist/ current tells its children, which run it without walking src/ until it is rebuilt', async (t) => {
  const root = makeTree(true);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // This dist/ prints what a child of it would inherit.
  writeFileSync(
    join(root, 'dist/cli/main.js'),
    "export async function main() { process.stdout.write('dist ' + process.env.SWITCHYARD_DIST_CHECKED); return 0; }\n",
  );
  const parent = await run(root);
  assert.equal(parent.code, 0, parent.stderr);
  const stampMs = String(statSync(join(root, 'dist/.built')).mtimeMs);
  assert.equal(parent.stdout, `dist ${stampMs}`);

  // An edit after the parent's check: the child runs what its parent runs; a fresh start does not.
  setMtime(root, 'src/cli/main.ts', Date.now() / 1000);
  const child = await run(root, { SWITCHYARD_DIST_CHECKED: stampMs });
  assert.equal(child.code, 0, child.stderr);
  assert.equal(child.stdout, `dist ${stampMs}`);
  const fresh = await run(root);
  assert.equal(fresh.code, 3, fresh.stderr);
  assert.equal(fresh.stdout, 'src --version');

  // Rebuilt since the parent's check (another stamp, still older than the edit): the child checks.
  setMtime(root, 'dist/.built', Date.now() / 1000 - 1800);
  const rebuilt = await run(root, { SWITCHYARD_DIST_CHECKED: stampMs });
  assert.equal(rebuilt.code, 3, rebuilt.stderr);
  assert.equal(rebuilt.stdout, 'src --version');
});
