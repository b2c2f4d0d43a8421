/**
 * Builds the optional KV-state addon (native/kv-state/kv_state.cc): llama.cpp's buffer forms of the
 * sequence-state API for node-llama-cpp's contexts, so that the llama P/D engines move KV states
 * without the two file copies (src/engine-servers/llama/kv-native.ts, docs/disaggregation.md).
 *
 *   node --import tsx scripts/build-kv-native.ts [--best-effort] [--force]
 *
 * Offline and small: one C++ file compiled with g++ against node-llama-cpp's own addon headers
 * (node_modules/node-llama-cpp/llama/addon/), llama.cpp's public headers taken from the git bundle
 * node-llama-cpp ships (the same tag as its prebuilt binaries), node-addon-api and Node's headers,
 * and linked to the prebuilt shared libllama (@node-llama-cpp/linux-x64). Nothing of llama.cpp is
 * compiled. The result is kept only after scripts/kv-native-self-test.ts passes in a child process
 * (a state taken into a buffer and set on another context gives the same tokens as the file path and
 * as one context, and equals the file's bytes); then native/kv-state/build/kv_state.node and its stamp
 * kv_state.json are written. About 10 s (most of it the self-test).
 *
 * --best-effort: any failure prints one line and exits 0 (npm's install hook: the engines then use
 * the file path). --force: rebuild even when the stamp says the build is current.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  KV_NATIVE_ADDON,
  KV_NATIVE_DIR,
  KV_NATIVE_NODE_LLAMA_CPP_VERSION,
  KV_NATIVE_STAMP,
  type KvNativeStamp,
  readKvNativeStamp,
} from '../src/engine-servers/llama/kv-native.ts';

const { values } = parseArgs({ options: { 'best-effort': { type: 'boolean' }, force: { type: 'boolean' } } });
const bestEffort = values['best-effort'] === true;
const root = join(import.meta.dirname, '..');
const source = join(root, 'native', 'kv-state', 'kv_state.cc');
const LIBLLAMA = 'libllama.v0.4.0.so';

class Skip extends Error {}

function run(command: string, args: string[], options: { cwd?: string; input?: string } = {}): string {
  // Bounded: this runs from npm's install hook, which a hung compiler or self-test must not hang.
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 300_000,
    killSignal: 'SIGKILL',
    ...options,
  });
  if (result.error !== undefined) throw new Skip(`${command}: ${result.error.message}`);
  if (result.status !== 0) {
    const lines = `${result.stderr}\n${result.stdout}`.trim().split('\n');
    throw new Skip(
      `${command} ${args[0] ?? ''} failed (${result.status ?? result.signal}): ${lines.slice(-6).join(' | ')}`,
    );
  }
  return result.stdout;
}

function packageDir(name: string): string {
  const require = createRequire(join(root, 'package.json'));
  let dir = dirname(require.resolve(name));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === name)
      return dir;
    dir = dirname(dir);
  }
  throw new Skip(`cannot find ${name}'s folder`);
}

function build(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Skip(`only linux-x64 is supported (this is ${process.platform}-${process.arch})`);
  }
  const nlc = packageDir('node-llama-cpp');
  const version = (JSON.parse(readFileSync(join(nlc, 'package.json'), 'utf8')) as { version: string })
    .version;
  if (version !== KV_NATIVE_NODE_LLAMA_CPP_VERSION) {
    throw new Skip(`written for node-llama-cpp ${KV_NATIVE_NODE_LLAMA_CPP_VERSION}, installed ${version}`);
  }
  const bins = join(dirname(nlc), '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');
  const libllama = join(bins, LIBLLAMA);
  if (!existsSync(libllama)) throw new Skip(`no prebuilt ${libllama}`);
  const addonHeaders = join(nlc, 'llama', 'addon');
  const bundle = join(nlc, 'llama', 'gitRelease.bundle');
  const napiDir = packageDir('node-addon-api');
  const nodeHeaders = join(dirname(dirname(process.execPath)), 'include', 'node');
  for (const need of [addonHeaders, bundle, nodeHeaders, source]) {
    if (!existsSync(need)) throw new Skip(`missing ${need}`);
  }
  const stampNow = {
    nodeLlamaCpp: version,
    nodeModules: process.versions.modules,
    libllama: { path: libllama, size: statSync(libllama).size },
  };
  if (values.force !== true && existsSync(KV_NATIVE_ADDON) && existsSync(KV_NATIVE_STAMP)) {
    // A stamp that cannot be read (a write cut short) means a rebuild, not a failed build.
    const old = readKvNativeStamp(KV_NATIVE_STAMP);
    const sourceTime = statSync(source).mtimeMs;
    if (
      typeof old !== 'string' &&
      old.nodeLlamaCpp === stampNow.nodeLlamaCpp &&
      old.nodeModules === stampNow.nodeModules &&
      old.libllama.path === libllama &&
      old.libllama.size === stampNow.libllama.size &&
      statSync(KV_NATIVE_ADDON).mtimeMs >= sourceTime
    ) {
      return 'up to date';
    }
  }

  const work = mkdtempSync(join(tmpdir(), 'switchyard-kv-native-'));
  try {
    // llama.cpp's public headers at the commit the bundle holds (the prebuilt's tag).
    const heads = run('git', ['bundle', 'list-heads', bundle]).trim().split('\n');
    const commit = heads.map((line) => line.split(' ')[0]).find((sha) => /^[0-9a-f]{40}$/.test(sha ?? ''));
    if (commit === undefined) throw new Skip('the llama.cpp bundle names no commit');
    const git = join(work, 'llama.git');
    run('git', ['init', '-q', '--bare', git]);
    run('git', ['-C', git, 'bundle', 'unbundle', bundle]);
    const tar = join(work, 'headers.tar');
    run('git', ['-C', git, 'archive', '-o', tar, commit, 'include', 'ggml/include']);
    const headers = join(work, 'headers');
    mkdirSync(headers);
    run('tar', ['-xf', tar, '-C', headers]);
    rmSync(git, { recursive: true, force: true });

    const out = join(work, 'kv_state.node');
    run('g++', [
      '-std=c++17',
      '-O2',
      '-fPIC',
      '-shared',
      '-fexceptions',
      '-DNAPI_VERSION=7',
      '-DNAPI_CPP_EXCEPTIONS',
      '-DBUILDING_NODE_EXTENSION',
      `-I${nodeHeaders}`,
      `-I${napiDir}`,
      `-I${join(headers, 'include')}`,
      `-I${join(headers, 'ggml', 'include')}`,
      `-I${addonHeaders}`,
      source,
      '-o',
      out,
      `-L${bins}`,
      `-l:${LIBLLAMA}`,
      `-Wl,-rpath,${bins}`,
    ]);

    const test = run(
      process.execPath,
      ['--import', 'tsx', join(root, 'scripts', 'kv-native-self-test.ts'), out],
      {
        cwd: root,
      },
    );
    const result = test.trim().split('\n').at(-1) ?? '';
    mkdirSync(KV_NATIVE_DIR, { recursive: true });
    renameSync(out, `${KV_NATIVE_ADDON}.tmp`);
    renameSync(`${KV_NATIVE_ADDON}.tmp`, KV_NATIVE_ADDON);
    const stamp: KvNativeStamp = { ...stampNow, builtAt: new Date().toISOString(), selfTest: result };
    writeFileSync(`${KV_NATIVE_STAMP}.tmp`, `${JSON.stringify(stamp, null, 2)}\n`);
    renameSync(`${KV_NATIVE_STAMP}.tmp`, KV_NATIVE_STAMP);
    const parsed = JSON.parse(result) as { stateBytes: number; promptTokens: number };
    return `built ${KV_NATIVE_ADDON} (self-test: ${parsed.promptTokens}-token prompt, ${parsed.stateBytes}-byte state, same tokens and bytes as the file path)`;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const started = performance.now();
try {
  const what = build();
  console.log(`kv-native: ${what} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  // A failed build leaves no addon behind: a stale one from another node-llama-cpp must not load.
  rmSync(KV_NATIVE_DIR, { recursive: true, force: true });
  const line = `kv-native: not built (${(error as Error).message}); the llama P/D engines move KV states through files`;
  console.error(line);
  process.exitCode = bestEffort ? 0 : 1;
}
