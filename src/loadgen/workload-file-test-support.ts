/**
 * What the `bench --workload FILE` unit tests share (workload-plan, workload-tenant,
 * priority-order): workload files written into a temporary folder, and the bench flags they start
 * from. Test support only; nothing in the product imports it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { stringify } from 'yaml';
import type { BenchFlags } from './options.ts';

/** Bench flags for a loopback target: streaming, ignore_eos, no progress line. */
export const WORKLOAD_BENCH_FLAGS: BenchFlags = {
  url: 'http://127.0.0.1:8000',
  stream: true,
  ignoreEos: true,
  progress: false,
};

/**
 * Makes a temporary folder named from `prefix` (removed by the file's `after` hook); `fileOf` puts
 * each `doc` there as a YAML (or JSON) file of its own and returns its path.
 */
export function workloadFiles(prefix: string): {
  /** The folder, for a path in it that no file holds. */
  readonly dir: string;
  readonly fileOf: (doc: unknown, ext?: 'yaml' | 'json') => string;
} {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  const fileOf = (doc: unknown, ext: 'yaml' | 'json' = 'yaml'): string => {
    const path = join(dir, `w${files++}.${ext}`);
    writeFileSync(path, ext === 'json' ? JSON.stringify(doc) : stringify(doc));
    return path;
  };
  return { dir, fileOf };
}
