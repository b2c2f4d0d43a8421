/**
 * Checking a backend's configured P/D role against the one its engine reports, at its first
 * successful health check: prefill and decode swapped in a config would otherwise serve, each
 * engine answering the other's leg of the protocol. Where an engine reports its role:
 *
 * - `sim`: its /metrics carries `switchyard_pd_requests_total{role="prefill"|"decode",...}` when it
 *   runs as one side of a P/D pair (`--pd-role`), and no such series otherwise (role `both`).
 * - `sglang`: `GET /server_info` (older servers: `/get_server_info`) returns its server arguments,
 *   `disaggregation_mode` among them: `null` (the string), `prefill` or `decode`.
 *
 * vLLM does not: its `kv_transfer_config` is visible only on `/server_info` under
 * VLLM_SERVER_DEV_MODE (a development switch), and NIXL's P/D setups give both sides `kv_both`, the
 * proxy choosing each request's leg. llama.cpp, `llama` and hosted OpenAI-compatible APIs do not
 * either. Those backends are not checked.
 */
import { type Dispatcher, request } from 'undici';
import type { BackendConfig } from './config.ts';

/** The phases an engine serves. */
export type EngineRole = 'both' | 'prefill' | 'decode';

/** Bytes of a role answer read (a metrics page, a server-info object); the rest is not read. */
export const ROLE_ANSWER_BYTES_MAX = 1 << 20;

/** Where one engine type reports its role and how to read it. */
interface RoleSource {
  /** Paths tried in order: a 404 moves to the next. */
  readonly paths: readonly string[];
  /** The role in a 2xx answer's body; undefined when the answer does not say. */
  read(body: string): EngineRole | undefined;
}

const SIM_ROLE_SERIES = /^switchyard_pd_requests_total\{[^}]*\brole="(prefill|decode)"/m;

const SOURCES: Partial<Record<BackendConfig['type'], RoleSource>> = {
  sim: {
    paths: ['/metrics'],
    read: (body) => (SIM_ROLE_SERIES.exec(body)?.[1] as EngineRole | undefined) ?? 'both',
  },
  sglang: {
    paths: ['/server_info', '/get_server_info'],
    read: (body) => sglangRole(body),
  },
};

/** The role in SGLang's server info (`disaggregation_mode`), or undefined when it does not say. */
export function sglangRole(body: string): EngineRole | undefined {
  let info: unknown;
  try {
    info = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof info !== 'object' || info === null) return undefined;
  const mode = (info as Record<string, unknown>)['disaggregation_mode'];
  if (mode === 'prefill' || mode === 'decode') return mode;
  if (mode === 'null' || mode === null) return 'both';
  return undefined;
}

/** What a role check found. */
export type RoleFinding =
  /** The engine reports the configured role, or has no way to report one: not asked again. */
  | { readonly kind: 'match' }
  /** The engine reports another role. */
  | { readonly kind: 'mismatch'; readonly reason: string }
  /** No answer this time (a connection error, a 5xx): asked again at the next successful check. */
  | { readonly kind: 'unknown'; readonly reason: string };

/**
 * One backend's role check: asked at successful health checks until it matched once. A P/D side
 * (`gates`) takes no request before that: the gateway registers it ejected, and a check that gets no
 * answer on the role keeps it out.
 */
export class RoleCheck {
  /** Set once the engine reported the configured role (or cannot report one). */
  matched = false;

  constructor(
    readonly backendId: string,
    readonly configured: EngineRole,
    private readonly baseUrl: string,
    private readonly source: RoleSource,
  ) {}

  /** A prefill or decode side: out of service until its engine confirmed the role. */
  get gates(): boolean {
    return this.configured !== 'both';
  }

  /** Where the engine is asked (its first path), for log lines and `/stats`. */
  get where(): string {
    return this.source.paths[0] ?? '';
  }

  /** Asks the engine its role (`headers` as the health check's, `signal` the round's). */
  async ask(
    dispatcher: Dispatcher,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<RoleFinding> {
    for (const path of this.source.paths) {
      let answer: { status: number; body: string; truncated: boolean };
      try {
        answer = await fetchBounded(this.baseUrl + path, dispatcher, headers, signal);
      } catch (error) {
        const why = signal.aborted ? "no answer within the check's timeout" : (error as Error).message;
        return { kind: 'unknown', reason: `GET ${path} failed: ${why}` };
      }
      if (answer.status === 404) continue;
      if (answer.status < 200 || answer.status >= 300)
        return { kind: 'unknown', reason: `GET ${path} answered ${answer.status}` };
      // A page cut at the bound may lack what it would have said: trusted as configured.
      if (answer.truncated) return { kind: 'match' };
      const reported = this.source.read(answer.body);
      // An engine that cannot say (an older version, a field it lacks) is trusted as configured.
      if (reported === undefined || reported === this.configured) return { kind: 'match' };
      return { kind: 'mismatch', reason: roleMismatchReason(this.configured, reported, path) };
    }
    return { kind: 'match' };
  }
}

/** The ejection reason for an engine that reports `reported` on `path` where `configured` was set. */
export function roleMismatchReason(configured: EngineRole, reported: EngineRole, path: string): string {
  const engine = reported === 'both' ? 'serves whole requests (no P/D role)' : `runs as ${reported}`;
  return `role mismatch: configured role ${configured}, but the engine ${engine} (its ${path}); fix the backend's role in the config or the engine's flags`;
}

/**
 * The role check of backend `b`, or undefined where its engine type does not report a role.
 * `both` is checked too: a P/D engine behind a whole-request backend answers with one leg only.
 */
export function roleCheckOf(b: Pick<BackendConfig, 'id' | 'type' | 'url' | 'role'>): RoleCheck | undefined {
  const source = SOURCES[b.type];
  return source === undefined ? undefined : new RoleCheck(b.id, b.role, b.url, source);
}

/**
 * GET `url`: its status and its body, read up to ROLE_ANSWER_BYTES_MAX bytes (`truncated` past them).
 * Also what reads a backend's /v1/models (model-len.ts).
 */
export async function fetchBounded(
  url: string,
  dispatcher: Dispatcher,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<{ status: number; body: string; truncated: boolean }> {
  const res = await request(url, { dispatcher, method: 'GET', headers, signal });
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes > ROLE_ANSWER_BYTES_MAX) {
      res.body.destroy();
      return { status: res.statusCode, body: '', truncated: true };
    }
  }
  return { status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), truncated: false };
}
