/**
 * The Batch API's HTTP routes, shaped like OpenAI's: /v1/files (multipart upload with
 * purpose=batch, retrieve, content, delete, list) and /v1/batches (create, retrieve, list, cancel).
 *
 * Uploads are parsed by busboy, streaming to disk with `fileBytesMax` enforced as bytes arrive:
 * undici's `Request.formData()` would also parse multipart, but it buffers the whole body in memory
 * before any limit could apply.
 *
 * Every error answered here goes through the host's `rejectEarly`, so it counts in `/stats`
 * `rejected{code}` (and `switchyard_gateway_requests_rejected_total{code}`) as the main path's
 * refusals do: an operator sees uploads refused, bodies timed out and keys refused on these routes.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import busboy from 'busboy';
import { SwitchyardError } from '../../core/errors.ts';
import type { LimitsConfig } from '../config.ts';
import { bodyTimeBound, readBody, sendError, sendJson, sideBodyBounds, trackSideRead } from '../http-util.ts';
import { parseExpiresAfter, parseExpiresAfterFields } from './expiry.ts';
import { BATCH_ENDPOINTS, isBatchEndpoint } from './lines.ts';
import type { BatchService } from './service.ts';
import { publicBatch } from './state.ts';
import type { StoredFile } from './store.ts';

/** Size of a POST /v1/batches body, at most; its time bound is the main path's. */
const CREATE_BODY_BYTES_MAX = 64 * 1024;
/** Metadata of a batch: OpenAI allows 16 pairs, keys up to 64 and values up to 512 characters. */
const METADATA_PAIRS_MAX = 16;
const METADATA_KEY_CHARS_MAX = 64;
const METADATA_VALUE_CHARS_MAX = 512;
/**
 * Retry-After of an upload refused because `uploadsInFlightMax` are being received: the bound's slots
 * free as uploads end, which no one can predict; a second is the smallest Retry-After there is.
 */
const UPLOADS_FULL_RETRY_AFTER_MS = 1000;
/** A batch list's page size, at most and by default (OpenAI's). */
const LIST_LIMIT_MAX = 100;
const LIST_LIMIT_DEFAULT = 20;
/** A file list's page size, at most and by default (OpenAI's: 1 to 10,000, default 10,000). */
const FILE_LIST_LIMIT_MAX = 10_000;

/** True for a path this module answers. */
export function isBatchApiPath(path: string): boolean {
  return (
    path === '/v1/files' ||
    path.startsWith('/v1/files/') ||
    path === '/v1/batches' ||
    path.startsWith('/v1/batches/')
  );
}

function publicFile(f: StoredFile): Omit<StoredFile, 'owner' | 'data'> & { status: 'processed' } {
  const { owner: _o, data: _d, ...rest } = f;
  return { ...rest, status: 'processed' };
}

function invalid(message: string, param: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', message, { param });
}

function notFound(method: string, path: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_NOT_FOUND', `unknown route ${method} ${path}`, { param: 'path' });
}

/** The gateway's limits a Batch API route reads: the time bounds of a create's and an upload's body. */
export type BatchApiLimits = Pick<LimitsConfig, 'bodyReadTimeoutMs' | 'requestTimeoutMs'>;

/** What a Batch API route needs of the gateway (the LiveGateway itself). */
export interface BatchApiHost {
  readonly limits: BatchApiLimits;
  /** Answers a refusal (Retry-After from `retryAfterMs`) and counts it in `/stats` `rejected`. */
  rejectEarly(res: ServerResponse, error: SwitchyardError, retryAfterMs?: number): void;
}

/** Answers one Batch API request for tenant `owner`. A SwitchyardError thrown is the caller's to answer. */
export function handleBatchApi(
  service: BatchService,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  url: URL,
  owner: string,
  host: BatchApiHost,
): void {
  const [resource, id, action, ...extra] = url.pathname.split('/').slice(2);
  if (extra.length > 0 || id?.length === 0) throw notFound(method, url.pathname);
  const route = `${method} ${resource}${id === undefined ? '' : '/:id'}${action === undefined ? '' : `/${action}`}`;
  // Uploads and creates read their bodies; every other route has none to read.
  if (route !== 'POST files' && route !== 'POST batches') req.resume();
  const key = id ?? '';
  switch (route) {
    case 'POST files':
      upload(service, req, res, owner, host);
      break;
    case 'GET files':
      listFiles(service, res, url, owner);
      break;
    case 'GET files/:id':
      sendJson(res, 200, publicFile(service.file(key, owner)));
      break;
    case 'DELETE files/:id':
      service.deleteFile(key, owner);
      sendJson(res, 200, { id: key, object: 'file', deleted: true });
      break;
    case 'GET files/:id/content':
      content(service, res, key, owner, host);
      break;
    case 'POST batches':
      createBatch(service, req, res, owner, host);
      break;
    case 'GET batches':
      listBatches(service, res, url, owner);
      break;
    case 'GET batches/:id':
      sendJson(res, 200, publicBatch(service.batch(key, owner)));
      break;
    case 'POST batches/:id/cancel':
      sendJson(res, 200, publicBatch(service.cancel(key, owner)));
      break;
    default:
      throw notFound(method, url.pathname);
  }
}

function content(
  service: BatchService,
  res: ServerResponse,
  id: string,
  owner: string,
  host: BatchApiHost,
): void {
  const file = service.file(id, owner);
  const stream = createReadStream(service.contentPath(file));
  stream.once('open', () => {
    res.writeHead(200, { 'content-type': 'application/jsonl', 'content-length': file.bytes });
    stream.pipe(res);
  });
  stream.once('error', (error) => {
    if (!res.headersSent)
      host.rejectEarly(
        res,
        new SwitchyardError('SY_ERR_NOT_FOUND', `file '${id}' content: ${error.message}`),
      );
    else res.destroy();
  });
}

/** A list's `limit` query parameter: `fallback` when absent, else an integer from 1 to `max` (400 otherwise). */
function pageLimit(url: URL, fallback: number, max: number): number {
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? fallback : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > max)
    throw invalid(`limit: expected an integer from 1 to ${max}, got '${limitText}'`, 'limit');
  return limit;
}

/** A page as OpenAI's cursor lists answer it (the SDKs page on `has_more` and `last_id`). */
function sendPage<T extends { readonly id: string }>(
  res: ServerResponse,
  page: { readonly data: readonly T[]; readonly hasMore: boolean },
  shape: (item: T) => unknown,
): void {
  sendJson(res, 200, {
    object: 'list',
    data: page.data.map(shape),
    first_id: page.data[0]?.id ?? null,
    last_id: page.data[page.data.length - 1]?.id ?? null,
    has_more: page.hasMore,
  });
}

function listBatches(service: BatchService, res: ServerResponse, url: URL, owner: string): void {
  const limit = pageLimit(url, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX);
  const after = url.searchParams.get('after') ?? undefined;
  sendPage(res, service.list(owner, limit, after), publicBatch);
}

/**
 * GET /v1/files with OpenAI's query: `purpose`, `order` (`desc`, newest first, by default), `after`
 * and `limit` (up to 10,000). They were ignored: the openai SDK's `files.list({ purpose: 'batch' })`
 * got the batches' output files too, oldest first, and `limit: 1` got every file.
 */
function listFiles(service: BatchService, res: ServerResponse, url: URL, owner: string): void {
  const limit = pageLimit(url, FILE_LIST_LIMIT_MAX, FILE_LIST_LIMIT_MAX);
  const order = url.searchParams.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc')
    throw invalid(`order: expected 'asc' or 'desc', got '${order}'`, 'order');
  const purpose = url.searchParams.get('purpose') ?? undefined;
  const after = url.searchParams.get('after') ?? undefined;
  sendPage(res, service.listFiles(owner, { purpose, order, after, limit }), publicFile);
}

function createBatch(
  service: BatchService,
  req: IncomingMessage,
  res: ServerResponse,
  owner: string,
  host: BatchApiHost,
): void {
  const bounds = sideBodyBounds(host.limits, CREATE_BODY_BYTES_MAX, 'the batch create body bound');
  readBody(req, res, bounds, (result) => {
    try {
      if (!result.ok) throw result.error;
      let json: unknown;
      try {
        json = JSON.parse(result.body.toString('utf8'));
      } catch (error) {
        throw invalid(`request body is not valid JSON: ${(error as Error).message}`, 'body');
      }
      if (typeof json !== 'object' || json === null)
        throw invalid('request body: expected a JSON object', 'body');
      const o = json as Record<string, unknown>;
      if (typeof o['input_file_id'] !== 'string')
        throw invalid('input_file_id: expected a string', 'input_file_id');
      if (!isBatchEndpoint(o['endpoint']))
        throw invalid(
          `endpoint: expected one of ${Object.keys(BATCH_ENDPOINTS).join(', ')}, got ${JSON.stringify(o['endpoint'])}`,
          'endpoint',
        );
      if (o['completion_window'] !== '24h')
        throw invalid(
          `completion_window: expected '24h', got ${JSON.stringify(o['completion_window'])}`,
          'completion_window',
        );
      const batch = service.create(
        owner,
        o['input_file_id'],
        o['endpoint'],
        metadataOf(o['metadata']),
        parseExpiresAfter(o['output_expires_after'], 'output_expires_after'),
      );
      sendJson(res, 200, publicBatch(batch));
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      host.rejectEarly(res, error);
    }
  });
}

function metadataOf(value: unknown): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value))
    throw invalid('metadata: expected an object', 'metadata');
  const entries = Object.entries(value);
  if (entries.length > METADATA_PAIRS_MAX)
    throw invalid(`metadata: at most ${METADATA_PAIRS_MAX} pairs, got ${entries.length}`, 'metadata');
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (k.length > METADATA_KEY_CHARS_MAX || typeof v !== 'string' || v.length > METADATA_VALUE_CHARS_MAX)
      throw invalid(
        `metadata.${k}: keys up to ${METADATA_KEY_CHARS_MAX} characters, string values up to ${METADATA_VALUE_CHARS_MAX}`,
        'metadata',
      );
    out[k] = v;
  }
  return out;
}

/**
 * POST /v1/files: one `file` part streamed to disk, one `purpose` field that must be 'batch'. Holds
 * one of `uploadsInFlightMax` slots from before its first byte is read until its answer (or its
 * abandonment) once the file is closed; with none free it is refused 429 at once.
 */
function upload(
  service: BatchService,
  req: IncomingMessage,
  res: ServerResponse,
  owner: string,
  host: BatchApiHost,
): void {
  service.checkRoomForFile();
  const type = req.headers['content-type'] ?? '';
  if (!type.toLowerCase().startsWith('multipart/form-data'))
    throw invalid(`content-type: expected multipart/form-data, got '${type}'`, 'content-type');
  const declared = req.headers['content-length'];
  // The multipart framing adds a little; a declared size far past the limit is refused unread.
  if (declared !== undefined && Number(declared) > service.config.fileBytesMax + 64 * 1024) {
    res.shouldKeepAlive = false;
    throw tooLarge(service);
  }
  const release = service.beginUpload();
  if (release === undefined) {
    req.resume();
    host.rejectEarly(res, uploadsFull(service), UPLOADS_FULL_RETRY_AFTER_MS);
    return;
  }
  try {
    receive(service, req, res, owner, host, release);
  } catch (error) {
    // Refused before any handler could end it (a content-type busboy cannot parse): the slot is free.
    release();
    throw error;
  }
}

/** Streams an upload whose slot is taken to disk; `release` gives the slot back once it has ended. */
function receive(
  service: BatchService,
  req: IncomingMessage,
  res: ServerResponse,
  owner: string,
  host: BatchApiHost,
  release: () => void,
): void {
  const parser = multipartParser(req, service);
  const { id, path } = service.newUpload();
  let purpose: string | undefined;
  // OpenAI's expires_after, as the SDKs and curl -F send an object in a form: one field per key.
  let expiresAnchor: string | undefined;
  let expiresSeconds: string | undefined;
  let filename: string | undefined;
  let bytes = 0;
  let failure: SwitchyardError | undefined;
  let written: Promise<void> | undefined;
  let out: WriteStream | undefined;
  const fail = (error: SwitchyardError): void => {
    failure ??= error;
  };
  parser.on('field', (name, value) => {
    if (name === 'purpose') purpose = value;
    else if (name === 'expires_after[anchor]') expiresAnchor = value;
    else if (name === 'expires_after[seconds]') expiresSeconds = value;
  });
  parser.on('file', (name, stream, info) => {
    if (name !== 'file' || written !== undefined) {
      stream.resume();
      return;
    }
    filename = info.filename ?? 'input.jsonl';
    const file = createWriteStream(path);
    out = file;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    stream.on('limit', () => fail(tooLarge(service)));
    // Busboy errors the part when the body ends (or the upload is abandoned) inside it. Unheard,
    // that error was an uncaught exception in the gateway; and a pipe does not end its destination
    // when the source errors, so the file is closed here (else `written` never settles).
    stream.on('error', (error: Error) => {
      fail(invalid(`malformed multipart body: ${error.message}`, 'body'));
      file.destroy();
    });
    written = new Promise<void>((resolve) => {
      file.on('close', resolve);
      file.on('error', (error) => {
        fail(new SwitchyardError('SY_ERR_INTERNAL', `could not store the upload: ${error.message}`));
        resolve();
      });
    });
    stream.pipe(file);
  });
  parser.on('filesLimit', () => fail(invalid('only one file per upload', 'file')));
  parser.on('error', (error: Error) => {
    fail(invalid(`malformed multipart body: ${error.message}`, 'body'));
    req.unpipe(parser);
    req.resume();
    // The upload is refused: its file is closed now, so `written` settles and the slot frees.
    out?.destroy();
  });
  const finish = async (): Promise<void> => {
    await written;
    try {
      if (failure !== undefined) throw failure;
      if (filename === undefined) throw invalid("missing the 'file' part", 'file');
      if (purpose !== 'batch')
        throw invalid(`purpose: expected 'batch', got ${JSON.stringify(purpose ?? null)}`, 'purpose');
      const expiresAfter = parseExpiresAfterFields(expiresAnchor, expiresSeconds);
      sendJson(res, 200, publicFile(service.addFile(id, owner, filename, bytes, expiresAfter)));
    } catch (error) {
      service.discardUpload(path);
      if (!(error instanceof SwitchyardError)) throw error;
      if (error.code === 'SY_ERR_REQUEST_TOO_LARGE') res.shouldKeepAlive = false;
      host.rejectEarly(res, error);
    }
  };
  let finished = false;
  const once = (): void => {
    if (finished) return;
    finished = true;
    stopTimers();
    untrack();
    // Every end of an upload comes here exactly once (answered, refused, timed out, client gone,
    // malformed): the slot is given back after the file is closed and the answer written.
    void finish()
      .catch((error: Error) => sendError(res, new SwitchyardError('SY_ERR_INTERNAL', error.message)))
      .finally(release);
  };
  /**
   * Gives the upload up: its file is closed (and removed by `finish`), and the answer, if anyone is
   * left to hear it, closes the connection. Without this a client that stopped sending, or left,
   * kept the parser waiting and the file open for good: Node's pipe does not end the parser when
   * the request closes early.
   */
  const abandon = (error: SwitchyardError): void => {
    if (finished) return;
    fail(error);
    res.shouldKeepAlive = false;
    req.unpipe(parser);
    req.resume();
    parser.destroy();
    out?.destroy();
    once();
    const socket = req.socket;
    setTimeout(() => socket.destroy(), UPLOAD_CLOSE_LINGER_MS).unref();
  };
  parser.on('close', once);
  parser.on('error', once);
  req.pipe(parser);
  const stopTimers = uploadTimers(host.limits, req, abandon);
  // A client that half-closes mid-body (FIN) makes Node's parser fail: the server's clientError
  // must find this upload and give it up, else the slot and the file were held until the timer.
  const untrack = trackSideRead(req, res, {
    fail: abandon,
    expire: () =>
      abandon(
        new SwitchyardError('SY_ERR_REQUEST_TIMEOUT', 'upload body not received in time', { param: 'body' }),
      ),
  });
  req.on('close', () => {
    if (!req.complete) abandon(invalid('the client closed the connection mid-upload', 'body'));
  });
}

/**
 * The upload's multipart parser. Busboy throws at once on a content-type it cannot use (no boundary,
 * say): that is the client's error, 400, not the 500 an uncaught throw would be.
 */
function multipartParser(req: IncomingMessage, service: BatchService): busboy.Busboy {
  try {
    return busboy({
      headers: req.headers,
      // A plain filename="..." is read as UTF-8: the openai SDKs (undici's FormData, httpx) and curl
      // write it so, and busboy's default, latin1, turned "données.jsonl" into "donnÃ©es.jsonl".
      defParamCharset: 'utf8',
      limits: { files: 1, fields: 8, fieldSize: 1024, fileSize: service.config.fileBytesMax, parts: 16 },
    });
  } catch (error) {
    throw invalid(`content-type: ${(error as Error).message}`, 'content-type');
  }
}

/** Longest wait for an abandoned upload's answer to drain before its connection is cut (as body-reader.ts). */
const UPLOAD_CLOSE_LINGER_MS = 2000;

/**
 * An upload's time bounds: no byte for min(limits.bodyReadTimeoutMs, limits.requestTimeoutMs)
 * (an upload of up to fileBytesMax may take longer than a completion body in all, so the main path's
 * bound applies between bytes here), and the whole body within limits.requestTimeoutMs. Either
 * calls `late` with the 408. Returns a function that stops both.
 */
function uploadTimers(
  limits: BatchApiLimits,
  req: IncomingMessage,
  late: (error: SwitchyardError) => void,
): () => void {
  const idle = bodyTimeBound(limits);
  const timeout = (ms: number, what: string, limit: string): SwitchyardError =>
    new SwitchyardError('SY_ERR_REQUEST_TIMEOUT', `upload body: ${what} ${ms} ms (${limit})`, {
      param: 'body',
    });
  const idleTimer = setTimeout(
    () => late(timeout(idle.timeoutMs, 'no byte received for', idle.timeoutName)),
    idle.timeoutMs,
  ).unref();
  const totalTimer = setTimeout(
    () => late(timeout(limits.requestTimeoutMs, 'not received within', 'limits.requestTimeoutMs')),
    limits.requestTimeoutMs,
  ).unref();
  const onData = (): void => {
    idleTimer.refresh();
  };
  req.on('data', onData);
  return () => {
    clearTimeout(idleTimer);
    clearTimeout(totalTimer);
    req.off('data', onData);
  };
}

function uploadsFull(service: BatchService): SwitchyardError {
  const max = service.config.uploadsInFlightMax;
  return new SwitchyardError(
    'SY_ERR_OVERLOADED',
    `${max} uploads are being received (batch.uploadsInFlightMax ${max}); retry later`,
    { param: 'file' },
  );
}

function tooLarge(service: BatchService): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_REQUEST_TOO_LARGE',
    `the file exceeds ${service.config.fileBytesMax} bytes (batch.fileBytesMax)`,
    { param: 'file' },
  );
}
