/**
 * The Batch API's engine room (host layer): stored files, batch records, and the runner that sends
 * each batch request through the gateway's own admission (offline band, dispatched only into spare
 * capacity), routing and proxying, then appends its result. State lives in `BatchStore`; on start-up
 * every batch picks up where it was (validating again, running the requests not yet done, or
 * finishing its files).
 *
 * Bounds: `inFlightMax` requests out at once across all batches, `activeBatchesMax` batches held in
 * memory, `filesMax` stored uploads, `uploadsInFlightMax` uploads being received at once,
 * `batchesMax` stored records, `fileBytesMax` per upload,
 * `linesMax` per batch. A request admission refused for lack of room is offered again after
 * `retryDelayMs`, until the batch's completion window closes. A file with an `expires_at` (an
 * upload's `expires_after`, a batch's `output_expires_after`) is gone once it passes: 404, out of
 * the list, and its bytes removed at the next tick (kept on disk, though already 404, while an
 * unfinished batch still reads it as its input).
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { closeSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { SwitchyardError } from '../../core/errors.ts';
import type { OfferHints } from '../../policies/admission/types.ts';
import type { ExchangeKind } from '../proxy.ts';
import { type CapturedAnswer, CaptureResponse } from './capture.ts';
import type { BatchConfig } from './config.ts';
import { type ExpiresAfter, expiresAt, isExpired } from './expiry.ts';
import {
  BATCH_ENDPOINTS,
  type BatchEndpoint,
  type BatchLine,
  type FileError,
  type RefusedLine,
  validateInput,
} from './lines.ts';
import { advance, type BatchEvent, type BatchRecord, isTerminal, newBatch } from './state.ts';
import { BatchStore, type StoredFile } from './store.ts';

/** What the service needs from the gateway. */
export interface BatchHost {
  /** Sends one request down the clients' path (admission with `hints`, routing, proxy) into `res`. */
  dispatch(kind: ExchangeKind, body: Buffer, tenant: string, hints: OfferHints, res: ServerResponse): void;
  /** The host clock admission runs on (ms). */
  nowMs(): number;
  /**
   * Wall-clock time, Unix ms: the objects' `*_at` stamps, the completion window and file expiry
   * (expiry.ts). The gateway's is Date.now; a test passes its own (GatewayOptions.batchWallClockMs).
   */
  wallClockMs(): number;
  /** Requests the offline band's queue can still take (nothing is offered while it is full). */
  offlineRoom(): number;
  log(line: string): void;
}

/** What a `GET /v1/files` asks for (OpenAI's query parameters, checked by the route). */
export interface FileListQuery {
  readonly purpose: string | undefined;
  readonly order: 'asc' | 'desc';
  readonly after: string | undefined;
  readonly limit: number;
}

/** Gateway codes that mean "no room now": the request is offered again later, not failed. */
const NO_ROOM = new Set([
  'SY_ERR_OVERLOADED',
  'SY_ERR_NO_INSTANCE',
  'SY_ERR_DRAINING',
  'SY_ERR_RATE_LIMITED',
]);

/** A batch being validated, run or wound down: its requests and open result files. */
interface Active {
  record: BatchRecord;
  lines: readonly BatchLine[];
  /** Next index into `lines` not yet offered. */
  next: number;
  /** custom_ids with a result written. */
  readonly done: Set<string>;
  /** Requests refused for lack of room, with when to offer them again (host ms). */
  readonly retry: { line: BatchLine; atMs: number }[];
  inFlight: number;
  /** Timeouts so far, by custom_id (only requests that timed out). */
  readonly timeouts: Map<string, number>;
  outFd: number | undefined;
  errFd: number | undefined;
}

function newId(prefix: string): string {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}

/** Stored files and batches, and the runner. */
export class BatchService {
  private readonly store: BatchStore;
  private readonly files = new Map<string, StoredFile>();
  /** Every stored batch, oldest first. */
  private readonly batches = new Map<string, BatchRecord>();
  private readonly active = new Map<string, Active>();
  private inFlight = 0;
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  /** Round-robin position among active batches. */
  private turn = 0;
  private pumping = false;
  private pumpAgain = false;
  /** Uploads being received now, against `config.uploadsInFlightMax`. */
  private uploadsInFlight = 0;
  /** Uploads refused because `uploadsInFlightMax` were being received. */
  private uploadsRefused = 0;
  /** The earliest `expires_at` among stored files (Infinity: none): the tick sweeps only from then. */
  private nextExpiryS = Number.POSITIVE_INFINITY;

  constructor(
    readonly config: BatchConfig,
    private readonly host: BatchHost,
  ) {
    this.store = new BatchStore(config.dir);
    // Uploads in time order, as they were before a restart (the directory's order is the ids').
    const files = this.store.readAll<StoredFile>(this.store.filesDir);
    files.sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
    for (const f of files) this.files.set(f.id, f);
    for (const f of files) this.noteExpiry(f);
    const records = this.store.readAll<BatchRecord>(this.store.batchesDir);
    records.sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
    for (const r of records) this.batches.set(r.id, r);
  }

  /** Resumes every unfinished batch and starts the retry/expiry tick. */
  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => this.tick(), Math.min(this.config.retryDelayMs, 1000));
    this.timer.unref();
    for (const record of this.batches.values()) if (!isTerminal(record.status)) this.resume(record);
  }

  /** Stops sending (the gateway drains); requests out finish and are recorded, the rest wait for a restart. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.closeFilesIfIdle();
  }

  /** Once stopped and nothing is out, the result files are closed (a restart reopens them). */
  private closeFilesIfIdle(): void {
    if (!this.stopped || this.inFlight > 0) return;
    for (const a of this.active.values()) closeFds(a);
  }

  // ---- files ----

  /** Counts an upload against `filesMax` before any byte is stored. */
  checkRoomForFile(): void {
    let uploads = 0;
    for (const f of this.files.values()) if (f.purpose === 'batch') uploads++;
    if (uploads >= this.config.filesMax)
      throw new SwitchyardError(
        'SY_ERR_CAPACITY',
        `${uploads} files are stored (batch.filesMax ${this.config.filesMax}); delete some first`,
      );
  }

  /**
   * Takes one of `uploadsInFlightMax` upload slots before any byte is read. Returns the function that
   * gives it back (the first call counts, later ones do nothing), or undefined when all are taken.
   */
  beginUpload(): (() => void) | undefined {
    if (this.uploadsInFlight >= this.config.uploadsInFlightMax) {
      this.uploadsRefused++;
      return undefined;
    }
    this.uploadsInFlight++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.uploadsInFlight--;
    };
  }

  /** The upload bound's state, for `/stats` `batch`. */
  get stats(): { uploadsInFlight: number; uploadsInFlightMax: number; uploadsRefused: number } {
    return {
      uploadsInFlight: this.uploadsInFlight,
      uploadsInFlightMax: this.config.uploadsInFlightMax,
      uploadsRefused: this.uploadsRefused,
    };
  }

  /** A fresh id and the absolute path an upload's bytes are streamed to. */
  newUpload(): { id: string; path: string } {
    const id = newId('file-');
    return { id, path: this.store.abs(this.store.uploadData(id)) };
  }

  /** Registers an upload whose bytes are at `newUpload().path`; `expiresAfter`: its expires_after. */
  addFile(
    id: string,
    owner: string,
    filename: string,
    bytes: number,
    expiresAfter?: ExpiresAfter,
  ): StoredFile {
    const createdAt = this.nowS();
    const expires = expiresAt(createdAt, expiresAfter);
    const file: StoredFile = {
      id,
      object: 'file',
      bytes,
      created_at: createdAt,
      filename,
      purpose: 'batch',
      owner,
      data: this.store.uploadData(id),
      ...(expires === undefined ? {} : { expires_at: expires }),
    };
    this.store.writeJsonAtomic(this.store.fileMetaPath(id), file);
    this.files.set(id, file);
    this.noteExpiry(file);
    return file;
  }

  /** Wall-clock Unix seconds (the host's clock). */
  private nowS(): number {
    return Math.floor(this.host.wallClockMs() / 1000);
  }

  private noteExpiry(file: StoredFile): void {
    if (file.expires_at !== undefined && file.expires_at < this.nextExpiryS)
      this.nextExpiryS = file.expires_at;
  }

  /**
   * Removes the files whose `expires_at` has come (metadata and bytes), but an input an unfinished
   * batch still reads: already 404 (`file` checks the clock), it goes once that batch ends. Runs
   * only once the earliest expiry is due, so a tick costs nothing while none is.
   */
  private sweepExpiredFiles(nowS: number): void {
    if (nowS < this.nextExpiryS) return;
    const inUse = new Set<string>();
    for (const b of this.batches.values()) if (!isTerminal(b.status)) inUse.add(b.input_file_id);
    let next = Number.POSITIVE_INFINITY;
    for (const f of [...this.files.values()]) {
      if (f.expires_at === undefined) continue;
      if (isExpired(f, nowS) && !inUse.has(f.id)) {
        this.removeFile(f);
        continue;
      }
      // Kept for a batch that reads it: looked at again on the next tick.
      next = Math.min(next, isExpired(f, nowS) ? nowS + 1 : f.expires_at);
    }
    this.nextExpiryS = next;
  }

  private removeFile(f: StoredFile): void {
    this.store.removeAbs(this.store.fileMetaPath(f.id));
    this.store.remove(f.data);
    this.files.delete(f.id);
  }

  /** Removes an abandoned upload's bytes. */
  discardUpload(path: string): void {
    this.store.removeAbs(path);
  }

  file(id: string, owner: string): StoredFile {
    const f = this.files.get(id);
    // An expired file is gone, as OpenAI's, from the second its expires_at comes (the sweep that
    // removes its bytes may come a tick later).
    if (f === undefined || f.owner !== owner || isExpired(f, this.nowS()))
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `no file '${id}'`, { param: 'file_id' });
    return f;
  }

  /**
   * A page of `owner`'s files, as OpenAI's `GET /v1/files` pages them: only `purpose`'s when given,
   * in upload order (`asc`) or newest first (`desc`), starting after the file `after` names (an id
   * not in the list: an empty page).
   */
  listFiles(owner: string, query: FileListQuery): { data: StoredFile[]; hasMore: boolean } {
    const now = this.nowS();
    const mine = [...this.files.values()].filter(
      (f) =>
        f.owner === owner &&
        (query.purpose === undefined || f.purpose === query.purpose) &&
        !isExpired(f, now),
    );
    if (query.order === 'desc') mine.reverse();
    let start = 0;
    if (query.after !== undefined) {
      const i = mine.findIndex((f) => f.id === query.after);
      start = i < 0 ? mine.length : i + 1;
    }
    return { data: mine.slice(start, start + query.limit), hasMore: start + query.limit < mine.length };
  }

  /** Absolute path of a file's bytes. */
  contentPath(file: StoredFile): string {
    return this.store.abs(file.data);
  }

  deleteFile(id: string, owner: string): void {
    const f = this.file(id, owner);
    for (const b of this.batches.values())
      if (b.input_file_id === id && !isTerminal(b.status))
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `file '${id}' is the input of batch '${b.id}', which is ${b.status}`,
          { param: 'file_id' },
        );
    this.removeFile(f);
  }

  // ---- batches ----

  /** Creates a batch (status validating) and validates it in the background. */
  create(
    owner: string,
    inputFileId: string,
    endpoint: BatchEndpoint,
    metadata: Record<string, string> | null,
    outputExpiresAfter?: ExpiresAfter,
  ): BatchRecord {
    const input = this.file(inputFileId, owner);
    if (input.purpose !== 'batch')
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `file '${inputFileId}' has purpose '${input.purpose}', not 'batch'`,
        {
          param: 'input_file_id',
        },
      );
    if (this.active.size >= this.config.activeBatchesMax)
      throw new SwitchyardError(
        'SY_ERR_OVERLOADED',
        `${this.active.size} batches are running (batch.activeBatchesMax ${this.config.activeBatchesMax})`,
      );
    this.makeRoomForBatch();
    const record = newBatch(
      newId('batch_'),
      owner,
      endpoint,
      inputFileId,
      metadata,
      this.nowS(),
      outputExpiresAfter,
    );
    this.save(record);
    this.resume(record);
    return record;
  }

  batch(id: string, owner: string): BatchRecord {
    const b = this.batches.get(id);
    if (b === undefined || b.owner !== owner)
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `no batch '${id}'`, { param: 'batch_id' });
    return b;
  }

  /** The owner's batches, newest first, after `after` (an id), at most `limit`. */
  list(owner: string, limit: number, after: string | undefined): { data: BatchRecord[]; hasMore: boolean } {
    const mine = [...this.batches.values()].filter((b) => b.owner === owner).reverse();
    let start = 0;
    if (after !== undefined) {
      const i = mine.findIndex((b) => b.id === after);
      start = i < 0 ? mine.length : i + 1;
    }
    const data = mine.slice(start, start + limit);
    return { data, hasMore: start + limit < mine.length };
  }

  cancel(id: string, owner: string): BatchRecord {
    const record = this.batch(id, owner);
    if (record.status === 'cancelling' || record.status === 'cancelled') return record;
    const next = advance(record, 'cancel', this.nowS());
    if (next === undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `batch '${id}' is ${record.status}; it cannot be cancelled`,
        {
          param: 'batch_id',
        },
      );
    this.save(next);
    const a = this.active.get(id);
    if (a !== undefined) {
      a.record = next;
      a.retry.length = 0;
      a.next = a.lines.length;
    }
    this.windDown(id);
    return next;
  }

  /** Forgets the oldest finished batch records when the store is full (their files stay). */
  private makeRoomForBatch(): void {
    if (this.batches.size < this.config.batchesMax) return;
    for (const b of this.batches.values()) {
      if (!isTerminal(b.status)) continue;
      this.store.removeAbs(this.store.batchPath(b.id));
      this.batches.delete(b.id);
      if (this.batches.size < this.config.batchesMax) return;
    }
    throw new SwitchyardError(
      'SY_ERR_CAPACITY',
      `${this.batches.size} batches are stored and none has finished (batch.batchesMax ${this.config.batchesMax})`,
    );
  }

  private save(record: BatchRecord): void {
    this.store.writeJsonAtomic(this.store.batchPath(record.id), record);
    this.batches.set(record.id, record);
  }

  /** Moves a batch on and stores it; a move the machine lacks is a bug here. */
  private move(a: Active, event: BatchEvent, changes: Parameters<typeof advance>[3] = {}): void {
    const next = advance(a.record, event, this.nowS(), changes);
    if (next === undefined)
      throw new Error(`batch ${a.record.id}: no move '${event}' from ${a.record.status}`);
    a.record = next;
    this.save(next);
  }

  // ---- running ----

  /** Brings a stored, unfinished batch back into memory and carries on from its status. */
  private resume(record: BatchRecord): void {
    const paths = this.store.resultPaths(record.id);
    const out = this.store.readResults(paths.output);
    const err = this.store.readResults(paths.errors);
    const done = new Set([...out.customIds, ...err.customIds]);
    const counts = { total: record.request_counts.total, completed: out.lines, failed: err.lines };
    const a: Active = {
      record: { ...record, request_counts: counts },
      lines: [],
      next: 0,
      done,
      retry: [],
      inFlight: 0,
      timeouts: new Map(),
      outFd: undefined,
      errFd: undefined,
    };
    this.active.set(record.id, a);
    if (record.status === 'validating' || record.status === 'in_progress') {
      void this.load(a).catch((error: Error) =>
        this.host.log(`switchyard: batch ${record.id}: ${error.stack ?? error}`),
      );
      return;
    }
    // finalizing or cancelling: nothing is out after a restart, so finish the files.
    this.windDown(record.id);
  }

  /** Reads and validates the input; refused lines go straight to the error file. */
  private async load(a: Active): Promise<void> {
    const input = this.files.get(a.record.input_file_id);
    let bytes: Buffer;
    try {
      if (input === undefined) throw new Error('the input file was deleted');
      bytes = await readFile(this.contentPath(input));
    } catch (error) {
      this.failValidation(a, [
        {
          code: 'SY_ERR_NOT_FOUND',
          message: `input file: ${(error as Error).message}`,
          param: 'input_file_id',
          line: null,
        },
      ]);
      return;
    }
    // Decoding would turn bad bytes into U+FFFD and serve altered prompts, as a request body is
    // refused for (400): the whole file is refused instead.
    if (!isUtf8(bytes)) {
      this.failValidation(a, [
        {
          code: 'SY_ERR_INVALID_ARGUMENT',
          message: 'input file: not valid UTF-8',
          param: 'input_file_id',
          line: null,
        },
      ]);
      return;
    }
    const text = bytes.toString('utf8');
    if (a.record.status !== 'validating' && a.record.status !== 'in_progress') {
      this.windDown(a.record.id);
      return;
    }
    const result = validateInput(text, a.record.endpoint, {
      linesMax: this.config.linesMax,
      errorsMax: this.config.errorsMax,
    });
    if (result.kind === 'failed') {
      this.failValidation(a, result.errors);
      return;
    }
    const paths = this.store.resultPaths(a.record.id);
    a.outFd = this.store.openAppend(paths.output);
    a.errFd = this.store.openAppend(paths.errors);
    for (const r of result.refused) this.record(a, r.customId, refusedLine(r), false);
    a.lines = result.lines.filter((l) => !a.done.has(l.customId));
    const total = result.lines.length + result.refused.length;
    const counts = { ...a.record.request_counts, total };
    if (a.record.status === 'validating') this.move(a, 'validated', { request_counts: counts });
    else {
      a.record = { ...a.record, request_counts: counts };
      this.save(a.record);
    }
    this.pump();
    this.maybeDrained(a);
  }

  private failValidation(a: Active, errors: readonly FileError[]): void {
    if (a.record.status === 'validating')
      this.move(a, 'invalid', { errors: { object: 'list', data: errors } });
    else if (a.record.status === 'in_progress')
      this.move(a, 'expire', { errors: { object: 'list', data: errors } });
    this.closeActive(a);
  }

  /**
   * Sends requests while there is room, one batch at a time in turn. A request can be answered
   * synchronously (refused at once), and that answer pumps again: such calls only mark the running
   * pump to go round once more, so the stack stays flat however many requests fail at once.
   */
  private pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain && !this.stopped);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    const nowMs = this.host.nowMs();
    let idle = 0;
    while (
      this.inFlight < this.config.inFlightMax &&
      idle < this.active.size &&
      this.host.offlineRoom() > 0
    ) {
      const ids = [...this.active.keys()];
      const a = this.active.get(ids[this.turn++ % ids.length] as string) as Active;
      const line = a.record.status === 'in_progress' ? this.takeLine(a, nowMs) : undefined;
      if (line === undefined) {
        idle++;
        continue;
      }
      idle = 0;
      this.send(a, line);
    }
  }

  private takeLine(a: Active, nowMs: number): BatchLine | undefined {
    const due = a.retry[0];
    if (due !== undefined && due.atMs <= nowMs) {
      a.retry.shift();
      return due.line;
    }
    while (a.next < a.lines.length) {
      const line = a.lines[a.next++] as BatchLine;
      if (!a.done.has(line.customId)) return line;
    }
    return undefined;
  }

  private send(a: Active, line: BatchLine): void {
    a.inFlight++;
    this.inFlight++;
    const deadlineMs = this.host.nowMs() + Math.max(0, a.record.expires_at * 1000 - this.host.wallClockMs());
    const res = new CaptureResponse((answer) => this.answered(a, line, answer));
    this.host.dispatch(
      BATCH_ENDPOINTS[a.record.endpoint],
      line.body,
      a.record.owner,
      { offline: true, deadlineMs },
      res.asServerResponse(),
    );
  }

  private answered(a: Active, line: BatchLine, answer: CapturedAnswer): void {
    a.inFlight--;
    this.inFlight--;
    const code = answer.kind === 'answer' ? errorCodeOf(answer.body) : undefined;
    if (code !== undefined && this.offerAgain(a, line, code)) {
      // No room now: not a result. Offered again later (or after a restart, if the gateway stops).
      // Stopped (the gateway drains): dropped here, it has no result, so a restart runs it.
      if (a.record.status === 'in_progress' && !this.stopped)
        a.retry.push({ line, atMs: this.host.nowMs() + this.config.retryDelayMs });
    } else if (a.record.status === 'in_progress' || a.record.status === 'cancelling') {
      const ok = answer.kind === 'answer' && answer.status >= 200 && answer.status < 300;
      this.record(a, line.customId, resultLine(line.customId, answer), ok);
    }
    if (a.record.status === 'cancelling') this.windDown(a.record.id);
    else this.maybeDrained(a);
    this.pump();
    this.closeFilesIfIdle();
  }

  /**
   * Whether an error answer means "try later" rather than a result: no room now, or a timeout (the
   * request deadline counts from the offer, so a request held long in the offline band can time
   * out on release), the latter at most `timeoutRetriesMax` times per request.
   */
  private offerAgain(a: Active, line: BatchLine, code: string): boolean {
    if (code === 'SY_ERR_TIMEOUT') {
      const timeouts = (a.timeouts.get(line.customId) ?? 0) + 1;
      if (timeouts > this.config.timeoutRetriesMax) return false;
      a.timeouts.set(line.customId, timeouts);
    } else if (!NO_ROOM.has(code)) return false;
    return true;
  }

  /** Appends one result unless the request already has one; updates the counts. */
  private record(a: Active, customId: string, line: Record<string, unknown>, ok: boolean): void {
    if (a.done.has(customId)) return;
    const fd = ok ? a.outFd : a.errFd;
    if (fd === undefined) return;
    this.store.appendLine(fd, JSON.stringify(line));
    a.done.add(customId);
    a.timeouts.delete(customId);
    const c = a.record.request_counts;
    a.record = {
      ...a.record,
      request_counts: {
        total: c.total,
        completed: c.completed + (ok ? 1 : 0),
        failed: c.failed + (ok ? 0 : 1),
      },
    };
    this.batches.set(a.record.id, a.record);
  }

  /** Every request has a result: finalize. */
  private maybeDrained(a: Active): void {
    if (a.record.status !== 'in_progress' || a.inFlight > 0) return;
    if (a.done.size < a.record.request_counts.total) return;
    this.move(a, 'drained');
    this.move(a, 'finalized', this.resultFiles(a));
    this.closeActive(a);
  }

  /** A cancelling batch with nothing out, or a finalizing one after a restart: finish it. */
  private windDown(id: string): void {
    const a = this.active.get(id);
    if (a === undefined || a.inFlight > 0) return;
    if (a.record.status === 'validating') return;
    if (a.record.status === 'cancelling') this.move(a, 'stopped', this.resultFiles(a));
    else if (a.record.status === 'finalizing') this.move(a, 'finalized', this.resultFiles(a));
    else return;
    this.closeActive(a);
  }

  /** Registers the result files as file objects (ids fixed by the batch id, so a rerun is harmless). */
  private resultFiles(a: Active): { output_file_id: string | null; error_file_id: string | null } {
    const paths = this.store.resultPaths(a.record.id);
    const suffix = a.record.id.slice('batch_'.length);
    const register = (id: string, relative: string, name: string): string | null => {
      const read = this.store.readResults(relative);
      if (read.lines === 0) return null;
      // output_expires_after counts from the file's creation (now), not the batch's.
      const createdAt = this.nowS();
      const expires = expiresAt(createdAt, a.record.output_expires_after);
      const file: StoredFile = {
        id,
        object: 'file',
        bytes: readFileSync(this.store.abs(relative)).length,
        created_at: createdAt,
        filename: name,
        purpose: 'batch_output',
        owner: a.record.owner,
        data: relative,
        ...(expires === undefined ? {} : { expires_at: expires }),
      };
      this.store.writeJsonAtomic(this.store.fileMetaPath(id), file);
      this.files.set(id, file);
      this.noteExpiry(file);
      return id;
    };
    return {
      output_file_id: register(`file-${suffix}-output`, paths.output, `${a.record.id}_output.jsonl`),
      error_file_id: register(`file-${suffix}-errors`, paths.errors, `${a.record.id}_errors.jsonl`),
    };
  }

  private closeActive(a: Active): void {
    closeFds(a);
    this.active.delete(a.record.id);
  }

  /** Re-offers due retries, closes the windows that have passed and removes expired files. */
  private tick(): void {
    const now = this.nowS();
    for (const a of [...this.active.values()])
      if (a.record.status === 'in_progress' && now >= a.record.expires_at) this.expire(a);
    this.sweepExpiredFiles(now);
    this.pump();
  }

  /** The window closed: what never ran goes to the error file as `batch_expired`. */
  private expire(a: Active): void {
    for (const line of a.lines)
      if (!a.done.has(line.customId))
        this.record(
          a,
          line.customId,
          failedLine(line.customId, 'batch_expired', 'the completion window closed before this request ran'),
          false,
        );
    a.retry.length = 0;
    a.next = a.lines.length;
    this.move(a, 'expire', this.resultFiles(a));
    this.closeActive(a);
  }

  /** For /stats and tests: batch requests out now. */
  get requestsInFlight(): number {
    return this.inFlight;
  }
}

function closeFds(a: Active): void {
  if (a.outFd !== undefined) closeSync(a.outFd);
  if (a.errFd !== undefined) closeSync(a.errFd);
  a.outFd = undefined;
  a.errFd = undefined;
}

/** The `error.code` of an OpenAI-style error body, if it is one. */
function errorCodeOf(body: Buffer): string | undefined {
  if (body.length === 0 || body[0] !== 0x7b) return undefined;
  try {
    const error = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown } }).error;
    return typeof error?.code === 'string' ? error.code : undefined;
  } catch {
    return undefined;
  }
}

function requestId(): string {
  return newId('batch_req_');
}

function failedLine(customId: string, code: string, message: string): Record<string, unknown> {
  return { id: requestId(), custom_id: customId, response: null, error: { code, message } };
}

function refusedLine(r: RefusedLine): Record<string, unknown> {
  return failedLine(r.customId, r.code, `line ${r.line}: ${r.message}`);
}

/** The result line of an answered request: the output file's shape, with `error` set when it failed. */
function resultLine(customId: string, answer: CapturedAnswer): Record<string, unknown> {
  if (answer.kind === 'cut')
    return failedLine(customId, 'SY_ERR_UPSTREAM', 'the upstream answer was cut before it finished');
  const text = answer.body.toString('utf8');
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: kept as text.
  }
  const id = typeof (body as { id?: unknown })?.id === 'string' ? (body as { id: string }).id : requestId();
  const response = { status_code: answer.status, request_id: id, body };
  if (answer.status >= 200 && answer.status < 300)
    return { id: requestId(), custom_id: customId, response, error: null };
  const e = (body as { error?: { code?: unknown; message?: unknown } })?.error;
  return {
    id: requestId(),
    custom_id: customId,
    response,
    error: {
      code: typeof e?.code === 'string' ? e.code : `http_${answer.status}`,
      message: typeof e?.message === 'string' ? e.message : `the request answered HTTP ${answer.status}`,
    },
  };
}
