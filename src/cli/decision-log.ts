import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PlacementLogEntry } from '../twin/control-host.ts';
import type { DecisionLogEntry } from '../twin/simulator.ts';

/** Bytes buffered before a write: a million decisions must not sit in memory, nor cost a syscall each. */
const FLUSH_BYTES = 1 << 20;

/**
 * Writes the twin's decision log as JSON lines, buffered: routing decisions
 * (`{"request","atMs","instance"|"reject"}`) and, in a multi-model run, placement decisions
 * (`{"atMs","placement"}`; a P/D pool's scale lines add `"pool"`), in the order the twin makes them, which is time order.
 */
export class DecisionLogWriter {
  private readonly fd: number;
  private buffer: string[] = [];
  private bytes = 0;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'w');
  }

  /** Appends one decision (bound, so it can be passed as a callback). */
  readonly write = (entry: DecisionLogEntry): void => {
    const line =
      entry.code === undefined
        ? `{"request":${JSON.stringify(entry.requestId)},"atMs":${entry.atMs},"instance":${JSON.stringify(entry.instance)}}\n`
        : `{"request":${JSON.stringify(entry.requestId)},"atMs":${entry.atMs},"reject":${JSON.stringify(entry.code)}}\n`;
    this.append(line);
  };

  /** Appends one placement line (bound, so it can be passed as a callback). */
  readonly writePlacement = (entry: PlacementLogEntry): void => {
    // A P/D pool's scale line says which pool (src/twin/pd-pools.ts).
    const pool = entry.pool !== undefined ? `"pool":${JSON.stringify(entry.pool)},` : '';
    this.append(`{"atMs":${entry.atMs},${pool}"placement":${JSON.stringify(entry.placement)}}\n`);
  };

  close(): void {
    this.flush();
    closeSync(this.fd);
  }

  private append(line: string): void {
    this.buffer.push(line);
    this.bytes += line.length;
    if (this.bytes >= FLUSH_BYTES) this.flush();
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    writeSync(this.fd, this.buffer.join(''));
    this.buffer = [];
    this.bytes = 0;
  }
}
