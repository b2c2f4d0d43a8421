/**
 * The `llama` engine speaking SGLang's prefill/decode flow (`switchyard engine llama --pd-role
 * prefill|decode --pd-protocol sglang`), with the real KV state of pd.ts moving between the engines.
 *
 * SGLang's flow (its router sends one request to both engines at once, with `bootstrap_host`,
 * `bootstrap_port` and `bootstrap_room`):
 *
 * - prefill: runs the prompt only (one token, whatever `max_tokens` says, as SGLang's prefill server
 *   does), saves its sequence state, offers it on the engine's KV server and files it under the room.
 *   Its one-token answer goes back to whoever sent it (the gateway reads and drops it).
 * - bootstrap: `GET /pd/bootstrap/{room}?wait_ms=N`, on the engine's own port and, with
 *   `--bootstrap-port`, on a listener of its own (SGLang's `--disaggregation-bootstrap-port`). It
 *   waits for the room's prefill (the decode usually asks first) and hands the room over once: where
 *   the KV server is and the state's transfer id. 410: the room's prefill failed; 504: it did not end
 *   within the wait.
 * - decode: asks the bootstrap for the room, fetches the state over TCP (the same transfer as the vLLM
 *   flow, with its retry) into a file, and only then queues the request, which loads the state and
 *   evaluates just the prompt's last token. A room that failed, never came within
 *   `kvWaitTimeoutMs`, a prefill engine out of reach, or a transfer that failed after its retry ends
 *   the request with 502 SY_ERR_KV_TRANSFER_FAILED: SGLang's decode aborts such a request (500,
 *   "Decode transfer failed for request ...") rather than prefill it itself, and so does this one.
 *
 * Rooms are bounded (ROOMS_MAX) and every room ends: a room whose state no decode claims is dropped
 * a second before `kvReleaseTimeoutMs` (the KV server deletes the state on that timeout: ROOM_RELEASE_GUARD_MS), a room a decode
 * asked for that no prefill fills is dropped after the wait bound, a failed room after the wait bound.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOn } from '../../adapters/listen.ts';
import { SwitchyardError } from '../../core/errors.ts';
import {
  FRONT_BODY_BYTES_MAX,
  PdFrontBase,
  PREFILL_ANSWER_BYTES_MAX,
  readBody,
  sendError,
  sendJson,
} from '../pd-front.ts';
import type { KvStateRef, LlamaBackend } from './llama-backend.ts';
import {
  clientTarget,
  type LlamaPd,
  parseJsonObject,
  type ServeLlamaPdOptions,
  serveLlamaFront,
} from './pd.ts';

/** Rooms a prefill engine keeps at once (pending, ready or failed); one more is refused 429. */
export const ROOMS_MAX = 1024;
/** A decode's bootstrap call may take this long past the wait it asked for (connect, answer). */
const BOOTSTRAP_CALL_MARGIN_MS = 5_000;
/** Longest room id accepted in a path: SGLang draws 63-bit rooms, the gateway 53-bit ones. */
const ROOM_DIGITS_MAX = 20;

/** Counters of the SGLang side (`sglang` in `GET /pd/stats`). */
export interface SglangPdStats {
  /** Prefill: rooms held now (any state), and how rooms ended. */
  rooms: number;
  roomsFilled: number;
  roomsFailed: number;
  /** A decode took the room's state. */
  roomsClaimed: number;
  /** A filled room no decode claimed, dropped a guard before kvReleaseTimeoutMs (roomReleaseMs). */
  roomsReleasedTimeout: number;
  /** A room a decode asked for that no prefill filled within the wait bound. */
  roomsAbandoned: number;
  /** Decode: requests ended with 502 because the room's KV did not arrive. */
  transferFailures: number;
}

/** Where a claimed room's state is. */
export interface RoomOffer {
  readonly transferId: string;
  readonly bytes: number;
  readonly tokens: number;
}

/** One room on the prefill side. */
interface Room {
  state: 'pending' | 'ready' | 'failed';
  offer: RoomOffer | undefined;
  failure: string | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Decodes waiting for the room to be filled or to fail. */
  waiters: (() => void)[];
}

/** What a decode's claim got. */
export type RoomClaim =
  | { readonly state: 'ready'; readonly offer: RoomOffer }
  | { readonly state: 'failed'; readonly message: string }
  | { readonly state: 'pending' };

/**
 * The prefill side's rooms: filled by prefills, claimed once by decodes, each ended by a timer when
 * nobody comes. Timers stand in for SGLang's bootstrap and waiting timeouts.
 */
export class SglangRooms {
  private readonly rooms = new Map<string, Room>();

  constructor(
    readonly stats: SglangPdStats,
    private readonly releaseTimeoutMs: number,
    private readonly waitTimeoutMs: number,
  ) {}

  /** The room, created pending (a decode may ask before its prefill arrives); 429 past ROOMS_MAX. */
  open(room: string): Room {
    let r = this.rooms.get(room);
    if (r !== undefined) return r;
    if (this.rooms.size >= ROOMS_MAX) {
      throw new SwitchyardError(
        'SY_ERR_OVERLOADED',
        `this prefill engine holds ${ROOMS_MAX} bootstrap rooms (ROOMS_MAX); retry later`,
      );
    }
    r = { state: 'pending', offer: undefined, failure: undefined, timer: undefined, waiters: [] };
    this.rooms.set(room, r);
    this.stats.rooms = this.rooms.size;
    this.arm(room, r, this.waitTimeoutMs);
    return r;
  }

  /** The room's prefill saved its state as `offer`: held until claimed or kvReleaseTimeoutMs. */
  fill(room: string, offer: RoomOffer): void {
    const r = this.open(room);
    r.state = 'ready';
    r.offer = offer;
    this.stats.roomsFilled++;
    this.arm(room, r, roomReleaseMs(this.releaseTimeoutMs));
    wake(r);
  }

  /** The room's prefill failed: a decode waiting or still to come hears `message`. */
  fail(room: string, message: string): void {
    const r = this.open(room);
    r.state = 'failed';
    r.failure = message;
    this.stats.roomsFailed++;
    this.arm(room, r, this.waitTimeoutMs);
    wake(r);
  }

  /**
   * Waits up to `waitMs` for the room; a ready room is handed over (and forgotten) once, unless the
   * asker is `gone` by then (its state then stays for a decode that asks again, or the timeout).
   */
  async claim(room: string, waitMs: number, gone: () => boolean = () => false): Promise<RoomClaim> {
    const r = this.open(room);
    if (r.state === 'pending') {
      await new Promise<void>((resolve) => {
        const waiter = (): void => {
          clearTimeout(timer);
          resolve();
        };
        // A claim that stops waiting leaves the list: a decode polling a pending room would grow it
        // by one closure a poll until the room is dropped.
        const timer = setTimeout(() => {
          removeWaiter(r, waiter);
          resolve();
        }, waitMs);
        r.waiters.push(waiter);
      });
    }
    // A room dropped meanwhile keeps its state: pending (abandoned at the wait bound) or failed.
    if (r.state === 'failed') return { state: 'failed', message: r.failure ?? 'the prefill failed' };
    if (r.state === 'pending' || this.rooms.get(room) !== r || gone()) return { state: 'pending' };
    this.drop(room, r);
    this.stats.roomsClaimed++;
    return { state: 'ready', offer: r.offer as RoomOffer };
  }

  /** Claims waiting on `room` now (0 for a room not held). */
  waitersOf(room: string): number {
    return this.rooms.get(room)?.waiters.length ?? 0;
  }

  /** Drops every room (shutdown); waiting decodes hear it. */
  clear(): void {
    for (const [room, r] of this.rooms) this.drop(room, r);
  }

  private arm(room: string, r: Room, ms: number): void {
    if (r.timer !== undefined) clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      if (r.state === 'ready') this.stats.roomsReleasedTimeout++;
      else if (r.state === 'pending') this.stats.roomsAbandoned++;
      this.drop(room, r);
    }, ms);
    r.timer.unref();
  }

  private drop(room: string, r: Room): void {
    if (this.rooms.get(room) !== r) return;
    this.rooms.delete(room);
    this.stats.rooms = this.rooms.size;
    if (r.timer !== undefined) clearTimeout(r.timer);
    wake(r);
  }
}

/**
 * How much sooner a filled room is dropped than the KV server deletes its state. The server's timer
 * starts at the offer, a moment before the room is filled; without a margin a decode claiming the room
 * in that gap would be handed a state already deleted and fail with 502. One second covers the gap
 * and a claim's connect.
 */
export const ROOM_RELEASE_GUARD_MS = 1000;

/** A filled room's lifetime for a KV server release timeout of `releaseTimeoutMs`. */
export function roomReleaseMs(releaseTimeoutMs: number): number {
  return Math.max(releaseTimeoutMs - ROOM_RELEASE_GUARD_MS, releaseTimeoutMs / 2);
}

function removeWaiter(r: Room, waiter: () => void): void {
  const at = r.waiters.indexOf(waiter);
  if (at >= 0) r.waiters.splice(at, 1);
}

function wake(r: Room): void {
  const waiters = r.waiters;
  r.waiters = [];
  for (const w of waiters) w();
}

/** Options of the SGLang side beyond LlamaPd's. */
export interface LlamaSglangOptions {
  /** Prefill: a listener of its own for the bootstrap endpoint (0: a free port); unset: none. */
  readonly bootstrapPort?: number | undefined;
  /** Decode: how long to wait for the room's prefill; prefill: the longest wait it grants. */
  readonly kvWaitTimeoutMs: number;
  /** Prefill: a filled room no decode claims is dropped after this long (the KV server's timeout). */
  readonly kvReleaseTimeoutMs: number;
}

/** SGLang counters all at zero. */
export function newSglangPdStats(): SglangPdStats {
  return {
    rooms: 0,
    roomsFilled: 0,
    roomsFailed: 0,
    roomsClaimed: 0,
    roomsReleasedTimeout: 0,
    roomsAbandoned: 0,
    transferFailures: 0,
  };
}

/** The SGLang state of one llama engine: the LlamaPd it moves states with, and the rooms. */
export class LlamaSglang {
  readonly stats: SglangPdStats = newSglangPdStats();
  readonly rooms: SglangRooms;
  bootstrapPort: number | undefined;
  private bootstrapServer: Server | undefined;

  constructor(
    readonly pd: LlamaPd,
    readonly options: LlamaSglangOptions,
  ) {
    this.rooms = new SglangRooms(this.stats, options.kvReleaseTimeoutMs, options.kvWaitTimeoutMs);
    pd.stats.sglang = this.stats;
  }

  /** Starts the KV server and, when asked for, the bootstrap listener. */
  async start(): Promise<void> {
    await this.pd.start();
    if (this.options.bootstrapPort === undefined || this.pd.options.role !== 'prefill') return;
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (req.method === 'GET' && BOOTSTRAP_PATH.test(path)) void this.bootstrap(req, res);
      else sendJson(res, 404, { error: 'not found: this port serves GET /pd/bootstrap/{room} only' });
    });
    this.bootstrapServer = server;
    this.bootstrapPort = await listenOn(server, this.pd.options.kvHost, this.options.bootstrapPort);
  }

  async close(): Promise<void> {
    this.rooms.clear();
    const server = this.bootstrapServer;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.pd.close();
  }

  /** The bootstrap endpoint: waits for the room (up to ?wait_ms, at most kvWaitTimeoutMs). */
  async bootstrap(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://bootstrap');
    const room = BOOTSTRAP_PATH.exec(url.pathname)?.[1];
    if (room === undefined || this.pd.options.role !== 'prefill')
      return sendJson(res, 404, { error: 'not found' });
    const asked = Number(url.searchParams.get('wait_ms') ?? this.options.kvWaitTimeoutMs);
    const waitMs = Number.isFinite(asked) ? Math.max(0, Math.min(asked, this.options.kvWaitTimeoutMs)) : 0;
    let claim: RoomClaim;
    try {
      claim = await this.rooms.claim(room, waitMs, () => res.destroyed);
    } catch (error) {
      // ROOMS_MAX: an unknown room is a room too (its prefill may come later).
      return sendError(res, error as SwitchyardError);
    }
    if (claim.state === 'pending') return sendJson(res, 504, { state: 'pending', room });
    if (claim.state === 'failed')
      return sendJson(res, 410, { state: 'failed', room, message: claim.message });
    sendJson(res, 200, {
      state: 'ready',
      room,
      kv_host: this.pd.options.kvHost,
      kv_port: this.pd.kvPort,
      transfer_id: claim.offer.transferId,
      bytes: claim.offer.bytes,
      tokens: claim.offer.tokens,
    });
  }
}

const BOOTSTRAP_PATH = new RegExp(`^/pd/bootstrap/(\\d{1,${ROOM_DIGITS_MAX}})$`);

/**
 * SGLang's three fields, taken out of the body; undefined when the body has no room. Both engines
 * read the same JSON number, so a room past 2^53 (SGLang draws 63-bit ones) still names one room.
 */
function takeBootstrap(
  body: Record<string, unknown>,
): { host: unknown; port: unknown; room: string } | undefined {
  const { bootstrap_host: host, bootstrap_port: port, bootstrap_room: room } = body;
  delete body['bootstrap_host'];
  delete body['bootstrap_port'];
  delete body['bootstrap_room'];
  if (room === undefined || room === null) return undefined;
  if (typeof room === 'number' && Number.isInteger(room) && room >= 0 && room < ROOM_MAX_EXCLUSIVE)
    return { host, port, room: String(room) };
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `bootstrap_room '${String(room)}': expected a non-negative integer below 1e${ROOM_DIGITS_MAX}`,
    { param: 'bootstrap_room' },
  );
}

/** A bootstrap_host: a host name, IPv4 or bare IPv6 address (no brackets, path, port or userinfo). */
const BOOTSTRAP_HOST = /^[A-Za-z0-9._:-]{1,253}$/;

/** Whether `port` is a TCP port a server can listen on. */
function isTcpPort(port: unknown): port is number {
  return Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65_535;
}

/** Rooms below this print as plain digits. */
const ROOM_MAX_EXCLUSIVE = 10 ** ROOM_DIGITS_MAX;

/** The SGLang P/D front of a llama engine: the bootstrap fields and endpoint; the rest proxied. */
export class LlamaSglangFront extends PdFrontBase {
  constructor(
    private readonly sg: LlamaSglang,
    innerPort: number,
  ) {
    super(innerPort, 'llama P/D front (sglang)');
  }

  private get pd(): LlamaPd {
    return this.sg.pd;
  }

  /** A request that ended before its generation ran leaves no state file behind. */
  protected override untag(tag: string): void {
    this.pd.forget(tag);
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path === '/pd/stats') return sendJson(res, 200, this.pd.statsJson());
    if (req.method === 'GET' && BOOTSTRAP_PATH.test(path)) return this.sg.bootstrap(req, res);
    if (req.method !== 'POST' || (path !== '/v1/chat/completions' && path !== '/v1/completions')) {
      this.proxy(res, clientTarget(req, req));
      return;
    }
    const raw = await readBody(req, FRONT_BODY_BYTES_MAX);
    const body = parseJsonObject(raw);
    if (body !== undefined) this.nameFromBody(res, body);
    const many = body === undefined ? undefined : this.choicesRefusal(path, body);
    if (many !== undefined) return sendError(res, many);
    const fields = body === undefined ? undefined : takeBootstrap(body);
    if (body === undefined || fields === undefined) {
      this.proxy(res, clientTarget(req, body === undefined ? raw : Buffer.from(JSON.stringify(body))));
      return;
    }
    this.pd.noteRequest(body['max_tokens'] ?? body['max_completion_tokens']);
    if (this.pd.options.role === 'prefill') await this.prefill(req, res, body, fields.room);
    else await this.decode(req, res, body, fields);
  }

  /** Runs the prompt (one token), saves and offers its state, and files the offer under the room. */
  private async prefill(
    req: IncomingMessage,
    res: ServerResponse,
    body: Record<string, unknown>,
    room: string,
  ): Promise<void> {
    this.sg.rooms.open(room);
    // SGLang's prefill server runs the prefill only: one token, whatever the request asked.
    body['max_tokens'] = 1;
    if (Object.hasOwn(body, 'max_completion_tokens')) body['max_completion_tokens'] = 1;
    // vLLM's min_tokens (the decode side reads the client's) may not pass that one token: past it
    // the leg was refused 400 (max_tokens 1), and with it the request the colocated engine serves.
    if (typeof body['min_tokens'] === 'number' && body['min_tokens'] > 1) body['min_tokens'] = 1;
    body['stream'] = false;
    delete body['stream_options'];
    const tag = this.newTag();
    this.pd.expectExport(tag);
    try {
      const answer = await this.inner(req.url ?? '/v1/completions', body, PREFILL_ANSWER_BYTES_MAX, tag);
      if (answer.status < 200 || answer.status >= 300) {
        this.sg.rooms.fail(room, `the prefill answered ${answer.status}`);
        return this.relay(res, answer);
      }
      const got = this.pd.takeExport(tag);
      if (got === undefined || got instanceof Error) {
        throw new SwitchyardError(
          'SY_ERR_KV_TRANSFER_FAILED',
          `the prefill's KV state could not be saved: ${got?.message ?? 'the generation ended without it'}`,
        );
      }
      this.sg.rooms.fill(room, got);
      this.relay(res, answer);
    } catch (error) {
      this.sg.rooms.fail(room, (error as Error).message);
      throw error;
    } finally {
      this.pd.forget(tag);
    }
  }

  /** Claims the room's state from the prefill's bootstrap, fetches it, then runs the request. */
  private async decode(
    req: IncomingMessage,
    res: ServerResponse,
    body: Record<string, unknown>,
    fields: { host: unknown; port: unknown; room: string },
  ): Promise<void> {
    const { host, port, room } = fields;
    // Checked here, so a bad address is the client's 400 rather than a failed transfer (502), and
    // a host cannot carry a path or userinfo into the bootstrap URL.
    if (typeof host !== 'string' || !BOOTSTRAP_HOST.test(host) || !isTcpPort(port)) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `bootstrap_host '${String(host)}' and bootstrap_port '${String(port)}': expected the prefill engine's bootstrap address (a host name or IP, a port 1-65535) beside bootstrap_room`,
        { param: 'bootstrap_host' },
      );
    }
    // A client that leaves stops the wait for the room and the TCP fetch (its connection is closed,
    // not retried); a state fetched all the same is dropped below.
    const left = new AbortController();
    res.on('close', () => left.abort(new Error('the client left')));
    let state: KvStateRef;
    try {
      state = await this.receive(host, port, room, left.signal);
    } catch (error) {
      if (res.destroyed) return;
      this.sg.stats.transferFailures++;
      throw new SwitchyardError(
        'SY_ERR_KV_TRANSFER_FAILED',
        `KV transfer failed for bootstrap room ${room}: ${(error as Error).message}`,
      );
    }
    if (res.destroyed) {
      this.pd.doneWith(state);
      return;
    }
    const tag = this.newTag();
    this.pd.expectLoad(tag, state);
    this.proxy(res, clientTarget(req, Buffer.from(JSON.stringify(body))), tag);
  }

  /**
   * The room's state, here (in memory or a local file): the bootstrap's answer, then the TCP fetch
   * (with its retry).
   */
  private async receive(host: string, port: number, room: string, signal: AbortSignal): Promise<KvStateRef> {
    const waitMs = this.sg.options.kvWaitTimeoutMs;
    const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    let response: Response;
    try {
      response = await fetch(`http://${where}/pd/bootstrap/${room}?wait_ms=${waitMs}`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(waitMs + BOOTSTRAP_CALL_MARGIN_MS)]),
      });
    } catch (error) {
      throw new Error(`bootstrap ${where} unreachable (${(error as Error).message})`);
    }
    const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (response.status !== 200) {
      const why =
        response.status === 504
          ? `no prefill within ${waitMs} ms`
          : String(answer['message'] ?? response.status);
      throw new Error(`room ${room} on ${where}: ${why}`);
    }
    return this.pd.fetchRemote({
      host: String(answer['kv_host']),
      port: Number(answer['kv_port']),
      transferId: String(answer['transfer_id']),
      signal,
    });
  }
}

/**
 * Serves a llama backend as one side of an SGLang P/D pair until SIGTERM or SIGINT (or its
 * supervisor's death): the OpenAI server on a loopback port, the KV server and bootstrap listener
 * (prefill), the front server on `host:port`, the ready line naming them.
 */
export function serveLlamaSglangEngine(
  backend: LlamaBackend,
  sg: LlamaSglang,
  options: ServeLlamaPdOptions,
): Promise<void> {
  const { pd } = sg;
  return serveLlamaFront(backend, pd.options.role, options, {
    front: (innerPort) => new LlamaSglangFront(sg, innerPort),
    start: () => sg.start(),
    addressWhat: ', --kv-port or --bootstrap-port',
    listening: (port) => ({
      pdProtocol: 'sglang',
      kvTransfer: pd.server === undefined ? null : `tcp://${pd.options.kvHost}:${pd.kvPort}`,
      // Where a gateway's `bootstrapPort` points: the own listener, or the engine's port.
      bootstrap:
        pd.options.role === 'prefill'
          ? `http://${pd.options.kvHost}:${sg.bootstrapPort ?? port}/pd/bootstrap`
          : null,
    }),
    close: () => sg.close(),
  });
}
