/**
 * `switchyard sim --kv-store LINK` as a real child process, on the Mooncake sample: engines fetch
 * prefixes other instances hold (summary `kvStore` in the JSON), fewer prompt tokens are computed
 * than when no fetch is made, the flag and a config file's `engine.kvStore` agree (the flag keeps
 * the file's minTokens), the same seed gives the same JSON, and an unknown link is refused.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-kv-store-'));
const BASE = ['sim', '--trace', 'sample:mooncake-conversation', '--requests', '600', '--instances', '4'];

interface RunJson {
  completed: number;
  kvStore?: { fetches: number; fetchedTokens: number; promptTokensComputed: number; link: string };
}

function json(name: string): Record<string, unknown> {
  const { wallSeconds, eventsPerWallS, decisionUs, ...rest } = JSON.parse(
    readFileSync(join(dir, `${name}.json`), 'utf8'),
  ) as Record<string, unknown>;
  return rest;
}

function config(name: string, kvStore: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, `engine:\n  kvStore: ${kvStore}\n`);
  return path;
}

test('--kv-store: fetches counted in the JSON, fewer prompt tokens computed; file and flag agree; same seed, same JSON', async () => {
  const runs: [string, string[]][] = [
    ['flag-a', ['--kv-store', 'roce-200']],
    ['flag-b', ['--kv-store', 'roce-200']],
    ['file', ['--config', config('file', '{ kind: peer, link: roce-200 }')]],
    // A store that never fetches counts what the engines compute without one.
    ['never', ['--config', config('never', '{ kind: peer, link: roce-200, minTokens: 10000000 }')]],
    // The flag names the link and keeps the file's minTokens.
    [
      'flag-over-file',
      [
        '--config',
        config('over', '{ kind: peer, link: tcp-100, minTokens: 10000000 }'),
        '--kv-store',
        'roce-200',
      ],
    ],
    ['none', []],
  ];
  const results = await Promise.all(
    runs.map(([name, args]) =>
      runCli([...BASE, ...args, '--no-progress', '--json', join(dir, `${name}.json`)]),
    ),
  );
  for (const run of results) assert.equal(run.code, 0, run.stderr);
  const store = json('flag-a') as unknown as RunJson;
  const never = json('never') as unknown as RunJson;
  assert.ok(
    store.kvStore !== undefined && store.kvStore.fetches > 0,
    'the sample shares prefixes across instances',
  );
  assert.equal(store.kvStore.link, 'roce-200');
  assert.equal(never.kvStore?.fetches, 0);
  assert.ok(store.kvStore.promptTokensComputed < (never.kvStore?.promptTokensComputed ?? 0));
  assert.equal('kvStore' in json('none'), false, 'no store, no kvStore field');
  const { kvStore: _k, ...neverRest } = json('never');
  assert.deepEqual(neverRest, json('none'), 'a store that never fetches runs as none');
  assert.deepEqual(json('flag-b'), json('flag-a'));
  assert.deepEqual(json('file'), json('flag-a'));
  const over = json('flag-over-file') as unknown as RunJson;
  assert.equal(over.kvStore?.link, 'roce-200');
  assert.equal(over.kvStore?.fetches, 0, "the file's minTokens stays");
});

test('--kv-store: an unknown link is refused, naming the valid ones', async () => {
  const run = await runCli([...BASE, '--kv-store', 'carrier-pigeon', '--no-progress']);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /roce-200/);
});
