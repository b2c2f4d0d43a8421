/**
 * The KV-state addon's stamp (kv-native.ts): one cut short or damaged is reported as unreadable, so
 * the build (scripts/build-kv-native.ts) rebuilds over it (before, its JSON.parse threw, the install
 * hook deleted the addon and printed "not built") and a load falls back to files with the reason.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lockModuleMismatch, readKvNativeStamp } from './kv-native.ts';

describe('readKvNativeStamp', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kv-native-stamp-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const stamp = {
    nodeLlamaCpp: '3.21.1',
    nodeModules: '115',
    libllama: { path: '/x/libllama.v0.4.0.so', size: 4564112 },
    builtAt: '2026-12-06T19:24:05.929Z',
    selfTest: '{"ok":true}',
  };

  it('reads a stamp the build wrote', () => {
    assert.deepEqual(readKvNativeStamp(at('good.json', JSON.stringify(stamp))), stamp);
  });

  it('says why a damaged, cut or missing stamp cannot be read (no throw)', () => {
    for (const [name, text] of [
      ['garbage.json', '{garbage'],
      ['cut.json', JSON.stringify(stamp).slice(0, 40)],
      ['empty.json', ''],
      ['null.json', 'null'],
      ['fields.json', JSON.stringify({ nodeLlamaCpp: '3.21.1', nodeModules: '115' })],
      ['types.json', JSON.stringify({ ...stamp, libllama: { path: 1, size: '2' } })],
    ] as const) {
      const got = readKvNativeStamp(at(name, text));
      assert.equal(typeof got, 'string', name);
    }
    assert.equal(typeof readKvNativeStamp(join(dir, 'none.json')), 'string');
  });
});

describe('lockModuleMismatch', () => {
  const root = mkdtempSync(join(tmpdir(), 'kv-native-locks-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const pkg = (dir: string, name: string): void => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'index.js' }));
    writeFileSync(join(dir, 'index.js'), '');
  };
  /** An install tree: lifecycle-utils hoisted, and with `nested` a copy under node-llama-cpp too. */
  const tree = (name: string, nested: boolean): { from: string; main: string } => {
    const at = join(root, name);
    const nlc = join(at, 'node_modules', 'node-llama-cpp');
    pkg(join(at, 'node_modules', 'lifecycle-utils'), 'lifecycle-utils');
    pkg(nlc, 'node-llama-cpp');
    if (nested) pkg(join(nlc, 'node_modules', 'lifecycle-utils'), 'lifecycle-utils');
    return { from: join(at, 'src', 'kv-native.js'), main: join(nlc, 'index.js') };
  };

  it('passes when node-llama-cpp resolves the same lifecycle-utils (hoisted, as installed now)', () => {
    const { from, main } = tree('hoisted', false);
    assert.equal(lockModuleMismatch(from, main), undefined);
    // This checkout's own install.
    assert.equal(
      lockModuleMismatch(
        fileURLToPath(new URL('./kv-native.ts', import.meta.url)),
        createRequire(import.meta.url).resolve('node-llama-cpp'),
      ),
      undefined,
    );
  });

  it('says so when node-llama-cpp has its own copy (its locks would not be ours)', () => {
    const { from, main } = tree('nested', true);
    assert.match(lockModuleMismatch(from, main) ?? '', /another lifecycle-utils/);
  });
});
