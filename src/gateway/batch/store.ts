/**
 * The Batch API's state on disk (node:fs; the host layer). Layout under the configured directory:
 *
 *   files/<id>.json            a file object (atomically rewritten: temp file, then rename)
 *   files/<id>.data            an uploaded file's bytes
 *   batches/<id>.json          a batch record (atomically rewritten on every change of status)
 *   batches/<id>.output.jsonl  results of requests that succeeded, appended as they finish
 *   batches/<id>.errors.jsonl  results of requests that failed, appended likewise
 *
 * A result line is written once, in one write; after a crash the only damage is a torn last line,
 * which `readResults` cuts off (its request runs again). A request is done exactly when its
 * `custom_id` is in one of the two result files, which is what makes a resumed batch write no line
 * twice and lose none.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/** A file object as stored (`owner` and `data` are stripped from answers). */
export interface StoredFile {
  readonly id: string;
  readonly object: 'file';
  readonly bytes: number;
  readonly created_at: number;
  readonly filename: string;
  readonly purpose: 'batch' | 'batch_output';
  readonly owner: string;
  /** Where the bytes are, relative to the store's directory. */
  readonly data: string;
  /** When it expires (Unix seconds; expiry.ts), absent when it stays until deleted. */
  readonly expires_at?: number;
}

/** What a result file holds after a crash is repaired. */
export interface ResultsRead {
  readonly customIds: Set<string>;
  readonly lines: number;
}

/** The directory and the few operations the service needs. */
export class BatchStore {
  readonly filesDir: string;
  readonly batchesDir: string;

  constructor(readonly dir: string) {
    this.filesDir = join(dir, 'files');
    this.batchesDir = join(dir, 'batches');
    mkdirSync(this.filesDir, { recursive: true });
    mkdirSync(this.batchesDir, { recursive: true });
  }

  /** Writes `value` as JSON to `path` so a reader sees the old or the new version, never half. */
  writeJsonAtomic(path: string, value: unknown): void {
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(value));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }

  /** Every `*.json` in `dir`, parsed; leftovers of interrupted writes (`*.tmp`) are removed. */
  readAll<T>(dir: string): T[] {
    const out: T[] = [];
    for (const name of readdirSync(dir)) {
      if (name.endsWith('.tmp')) {
        rmSync(join(dir, name), { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      out.push(JSON.parse(readFileSync(join(dir, name), 'utf8')) as T);
    }
    return out;
  }

  fileMetaPath(id: string): string {
    return join(this.filesDir, `${id}.json`);
  }

  /** Where an upload's bytes go (relative to the directory). */
  uploadData(id: string): string {
    return join('files', `${id}.data`);
  }

  batchPath(id: string): string {
    return join(this.batchesDir, `${id}.json`);
  }

  /** Relative paths of a batch's two result files. */
  resultPaths(id: string): { output: string; errors: string } {
    return { output: join('batches', `${id}.output.jsonl`), errors: join('batches', `${id}.errors.jsonl`) };
  }

  abs(relative: string): string {
    return join(this.dir, relative);
  }

  /** Opens a result file for appending (created if missing). */
  openAppend(relative: string): number {
    return openSync(this.abs(relative), 'a');
  }

  /** Appends one line in one write. */
  appendLine(fd: number, line: string): void {
    writeSync(fd, `${line}\n`);
  }

  /**
   * The custom ids a result file holds. A torn last line (no newline: the process died mid-write) is
   * cut off the file, so its request counts as not done and runs again.
   */
  readResults(relative: string): ResultsRead {
    const path = this.abs(relative);
    const customIds = new Set<string>();
    if (!existsSync(path)) return { customIds, lines: 0 };
    const text = readFileSync(path, 'utf8');
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) truncateSync(path, Buffer.byteLength(text.slice(0, end)));
    let lines = 0;
    for (const line of text.slice(0, end).split('\n')) {
      if (line.length === 0) continue;
      lines++;
      customIds.add((JSON.parse(line) as { custom_id: string }).custom_id);
    }
    return { customIds, lines };
  }

  remove(relative: string): void {
    rmSync(this.abs(relative), { force: true });
  }

  removeAbs(path: string): void {
    rmSync(path, { force: true });
  }
}
