/**
 * The live gateway: the second host of the routing and admission policies (the twin is the first).
 * It drives them the way src/twin/simulator.ts does, in wall time: a request is parsed, offered to
 * admission (dispatch now, queue, or reject), routed by the active policy over the live view, and
 * proxied; the policy hears onRouted / onFirstToken / onCompleted / onFailed and the engines' KV
 * events, admission hears onDispatched / onCompleted / onFailed, and the queue is drained after
 * every arrival, completion, failure, scrape and wake-up.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent } from 'undici';
import type { z } from 'zod';
import { listenOn } from '../adapters/listen.ts';
import { kvEventsRefusal, policyTypeOf } from '../adapters/tokenizer/config.ts';
import type { PromptTokenizer } from '../adapters/tokenizer/load.ts';
import { loadModelTokenizers } from '../adapters/tokenizer/models.ts';
import { contentTypeRefusal } from '../core/content-type.ts';
import { SwitchyardError } from '../core/errors.ts';
import type { Request, Slo } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import type { ClusterView, InstanceRole, InstanceView } from '../core/view.ts';
import { gpuSpec } from '../model/gpus.ts';
import { kvBlocksThatFit } from '../model/kv.ts';
import { modelSpec } from '../model/models.ts';
import { admissionConfigSchema } from '../policies/admission/config.ts';
import { createAdmissionController } from '../policies/admission/controller.ts';
import { AdmissionDriver, type AdmissionHost } from '../policies/admission/driver.ts';
import type { AdmissionQueue, OfferHints } from '../policies/admission/types.ts';
import { isEligible } from '../policies/routing/eligible.ts';
import { createConfiguredPolicy, routingPolicyNames } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { adapterFeeds } from './adapter-feeds.ts';
import { handleAdmin } from './admin.ts';
import { handleBatchApi, isBatchApiPath } from './batch/http.ts';
import { BatchService } from './batch/service.ts';
import { BATCH_PRIORITY } from './batch/state.ts';
import { BodyReader, type BodyReaderHost, bodyTooLarge, type Reading, ReadingBudget } from './body-reader.ts';
import { admitConnection, ClientConnections } from './client-connections.ts';
import { answerClientError, answerConnect, type ClientErrorHost, wasRefused } from './client-errors.ts';
import {
  admissionInput,
  type BackendConfig,
  backendConfigSchema,
  connectionsMaxOf,
  type GatewayConfig,
  type GatewayConfigInput,
  type GatewayPerfModels,
  gatewayPerfModels,
  healthPathOf,
  type LimitsConfig,
  metricsPathOf,
  parseGatewayConfig,
  perfModelIdOf,
} from './config.ts';
import { ACCEPTED_ENCODING, contentEncodingRefusal } from './content-encoding.ts';
import { Cors, handleCors } from './cors.ts';
import { roleCheckOf } from './engine-role.ts';
import type { FeedTarget, SignalFeeds } from './feeds.ts';
import { HealthChecker, HealthState, type HealthTarget, pendingRole } from './health.ts';
import { bearerToken, bodyTimeBound, sendError, sendJson, sideReadFor } from './http-util.ts';
import { type LiveInstance, LiveView } from './live-view.ts';
import { GatewayMetrics, GatewayStats, reasonOf } from './metrics.ts';
import { KEEP_ALIVE_MS_DEFAULT, ModelBuffer } from './model-buffer.ts';
import { ModelLenProbe, smallestModelLen } from './model-len.ts';
import { PARSE_FULL_RETRY_AFTER_MS, ParsePool } from './parse-pool.ts';
import {
  attemptPrefillTokens,
  attemptRoleOf,
  type PdHost,
  PdRuntime,
  rolePool,
  takeDecodeFirst,
} from './pd/pd-exchange.ts';
import { Backend, Exchange, type ExchangeHost, type ExchangeKind, type ExchangeOutcome } from './proxy.ts';
import { QueuedBytes, queuedBytesOf } from './queued-bytes.ts';
import {
  type BodyFields,
  bodyFields,
  embeddingsInputCapped,
  priorityRule,
  type RequestBuildContext,
  requestOf,
  type TenantEntry,
} from './request-build.ts';
import { assignRequestId } from './request-id.ts';
import { expandPrevious, ResponseCapture, ResponseStore } from './response-store.ts';
import { answerStoredResponse, responseRouteOf } from './response-store-http.ts';
import { type AttemptFailure, backoffMs } from './retry.ts';
import { findStalls } from './stall.ts';
import {
  serveTokenization,
  serveTokenizerInfo,
  TOKENIZE_PATHS,
  TOKENIZER_INFO_PATH,
  type TokenizeRouteHost,
} from './tokenize-route.ts';
import { VERSION_BODY } from './version.ts';

/** Host-side options that are not configuration. */
export interface GatewayOptions {
  /** Where log lines go (ejections, re-admissions, feed errors). Default: stderr. */
  readonly log?: (line: string) => void;
  /** Engine signal and KV-event sources. Default: the metrics scraper and KV-event subscriber (NO_FEEDS: none). */
  readonly feeds?: SignalFeeds;
  /** Wait for the first health-check round before resolving (default true). */
  readonly awaitFirstHealthCheck?: boolean;
  /**
   * Models that may have no instance (`switchyard serve --min-instances 0`): listed in /v1/models and
   * servable without a backend; their requests wait in a bounded buffer (model-buffer.ts) while
   * `wake` asks the host for an instance, and go on when one is added.
   */
  readonly scaleFromZero?: {
    readonly models: readonly string[];
    /** Their keep-alive when a request sets none (default KEEP_ALIVE_MS_DEFAULT, Ollama's 5 min). */
    readonly keepAliveMs?: number;
    wake(model: string, waiting: number): void;
    /**
     * An engine for `model` is starting now (it will be added with addBackend once ready). On a
     * drain, the requests such a model holds wait for it, within drainTimeoutMs; the others fail at
     * once with SY_ERR_DRAINING. Default: none is (all fail at once).
     */
    starting?(model: string): boolean;
  };
  /**
   * The Batch API's wall clock, Unix ms (default Date.now): its `*_at` stamps, the completion
   * window and file expiry. Tests pass their own to reach an hour's expiry without waiting it.
   */
  readonly batchWallClockMs?: () => number;
}

/** A request held for a model with no instance: what `accept` needs to go on with it. */
interface HeldRequest {
  readonly kind: ExchangeKind;
  readonly request: Request;
  readonly body: Buffer;
  readonly stream: boolean;
  readonly res: ServerResponse;
  readonly hints: OfferHints | undefined;
  /** What it holds against limits.queuedBytesMax while it waits (as a queued request does). */
  readonly bytes: number;
}

/**
 * What the gateway reports about each request it parsed, for a host-side observer (the live control
 * runner builds its traffic windows from it, src/control/live-runner.ts). Called on the hot path:
 * implementations only count.
 */
export interface RequestTap {
  /** A parsed request for `request.model` reached admission. */
  arrived(request: Request, nowMs: number): void;
  /** Its first response byte came from an engine (each attempt's; the first one counts). */
  firstByte(request: Request, nowMs: number): void;
  /** It ended: completed (`ok`, with the tokens it generated), failed, or refused by admission. */
  ended(request: Request, ok: boolean, outputTokens: number, nowMs: number): void;
}

/** A running gateway. */
export interface Gateway {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  readonly config: GatewayConfig;
  readonly stats: GatewayStats;
  /** The live view policies read (for tests and dashboards). */
  readonly view: LiveView;
  /** The active routing policy's name. */
  readonly policyName: string;
  /** Switches the active routing policy (a configured name or a registered type). */
  setPolicy(name: string): void;
  /** Marks an instance drained (no new requests) or back in service; false for an unknown id. */
  setDraining(id: string, draining: boolean): boolean;
  /** The Prometheus side; a host may register gauges of its own on `metrics.registry`. */
  readonly metrics: GatewayMetrics;
  /** Hears every parsed request (undefined: nobody listens). */
  requestTap: RequestTap | undefined;
  /** Sections a host adds to /stats (serve's loaded-model cap: `loadedModels`); read on each call. */
  hostStats: Record<string, () => unknown>;
  /** The held requests and keep-alives of `scaleFromZero` models (undefined: none configured). */
  readonly modelBuffer: ModelBuffer<unknown> | undefined;
  /**
   * Adds a backend at run time, in service at once (the caller checked its health): in the view,
   * health-checked and scraped. A prefill or decode side whose engine reports its role (sim,
   * sglang) is in service once a check, run at once, confirmed the role (engine-role.ts). It may serve only models the gateway started with (/v1/models is
   * fixed). Throws SY_ERR_INVALID_CONFIG for a bad or duplicate backend.
   */
  addBackend(backend: z.input<typeof backendConfigSchema>): void;
  /**
   * Removes a backend with no request in flight on it (drain it first: `setDraining`); false for an
   * unknown id. Throws SY_ERR_INVALID_ARGUMENT while requests are in flight there.
   */
  removeBackend(id: string): boolean;
  /** Stops taking requests: /ready and new requests answer 503. Resolves when in-flight requests finished (bounded). */
  drain(): Promise<void>;
  /** drain(), then stops everything. Idempotent. */
  close(): Promise<void>;
  /**
   * Ends a drain now instead of at drainTimeoutMs: close() goes on at once and ends what is still
   * open with an error (an SSE error event and `[DONE]` for a stream). Starts the drain if needed.
   */
  stopDraining(): void;
  /** What a drain still waits for: live requests, of them streams already answering, and queued ones. */
  drainStatus(): { readonly inFlight: number; readonly streaming: number; readonly queued: number };
}

/** KV blocks an instance is assumed to have until it reports its own (catalogue, or a round guess). */
function defaultKvBlocks(gpu: string, model: string | undefined, tp: number): number {
  try {
    return kvBlocksThatFit(gpuSpec(gpu), modelSpec(model ?? ''), tp, 0.9, 16);
  } catch {
    return 65_536;
  }
}

/** The gateway's own fixed paths and the methods each takes (the Allow header of a 405). */
const GATEWAY_ROUTE_METHODS: ReadonlyMap<string, string> = new Map([
  ['/v1/chat/completions', 'POST'],
  ['/v1/completions', 'POST'],
  ['/v1/embeddings', 'POST'],
  ['/v1/responses', 'POST'],
  ['/v1/models', 'GET, HEAD'],
  ['/tokenize', 'POST'],
  ['/detokenize', 'POST'],
  ['/tokenizer_info', 'GET, HEAD'],
  ['/version', 'GET, HEAD'],
  ['/health', 'GET, HEAD'],
  ['/ready', 'GET, HEAD'],
  ['/metrics', 'GET, HEAD'],
  ['/stats', 'GET, HEAD'],
]);

/**
 * The OpenAI route a client meant when it asked for `path`, if its base URL was off by the `/v1`
 * segment: `/chat/completions` (an OpenAI SDK given `http://host:port` as its baseURL, which must
 * end in `/v1`) or `/v1/v1/chat/completions` (`/v1` written twice); the Batch API's paths only when
 * `batchApi` (it is served). Undefined for any other path.
 */
export function meantRoute(path: string, batchApi: boolean): string | undefined {
  const meant = path.startsWith('/v1/v1/') ? path.slice('/v1'.length) : `/v1${path}`;
  const openAi =
    (GATEWAY_ROUTE_METHODS.has(meant) && meant.startsWith('/v1/')) ||
    meant.startsWith('/v1/models/') ||
    (batchApi && isBatchApiPath(meant));
  return openAi ? meant : undefined;
}

/**
 * Whether a Responses body says `"store": false` (its answer is then not held to be stored): a byte
 * search, not a parse. A nested `"store": false` (in metadata) reads the same; such an answer is not
 * stored.
 */
function saysStoreFalse(body: Buffer): boolean {
  for (let at = body.indexOf('"store"'); at >= 0; at = body.indexOf('"store"', at + 7))
    if (/^"store"\s*:\s*false/.test(body.toString('latin1', at, at + 40))) return true;
  return false;
}

/** The most bytes of one JSON Responses answer held to store it (response-store.ts). */
const CAPTURE_BYTES_MAX = 16 * 1024 * 1024;

/** The Responses API's routes below /v1/responses/ that name no response id (OpenAI's token count and compaction). */
const RESPONSES_UNSERVED: ReadonlySet<string> = new Set([
  '/v1/responses/input_tokens',
  '/v1/responses/compact',
]);

/** SGLang's native generation routes, which `bench_serving --backend sglang` (its default) calls. */
const SGLANG_NATIVE_ROUTES: ReadonlySet<string> = new Set(['/generate']);

/**
 * What an unknown route's 404 adds to "unknown route METHOD PATH" for a client that took the
 * gateway for another server: a base URL off by `/v1` (meantRoute); a response route by id the
 * gateway does not serve (cancel, or any with its response store off); the id-less
 * Responses routes (`input_tokens`, `compact`), told what is served; SGLang's native `/generate`
 * (SGLang's `bench_serving` by default).
 * Empty for any other path.
 */
export function unknownRouteHint(path: string, batchApi: boolean): string {
  const meant = meantRoute(path, batchApi);
  if (meant !== undefined)
    return `; did you mean ${meant}? An OpenAI client's base URL ends in /v1 (http://host:port/v1)`;
  if (RESPONSES_UNSERVED.has(path))
    return '; the gateway routes only POST /v1/responses of the Responses API';
  if (path.startsWith('/v1/responses/'))
    return (
      '; of stored responses the gateway serves GET and DELETE /v1/responses/{id} and ' +
      'GET /v1/responses/{id}/input_items (with limits.responseStoreMax above 0); none is cancelled'
    );
  if (SGLANG_NATIVE_ROUTES.has(path))
    return (
      "; this is SGLang's native API: the gateway serves the OpenAI API (/v1/completions, " +
      "/v1/chat/completions); SGLang's bench_serving reaches it with --backend sglang-oai or sglang-oai-chat"
    );
  return '';
}

/**
 * The /v1/models entries, one per served model, with vLLM's ModelCard fields. `root` is what vLLM
 * names the model's path (its tokenizer): `vllm bench serve` without `--model` reads
 * `data[0]["root"]` as the tokenizer to load (a KeyError without it, `get_first_model_from_server`
 * in vllm/benchmarks/serve.py). The gateway knows only the served name, which is vLLM's `root` too
 * when the engine runs without --served-model-name; `parent` is null, as the built-in engines say
 * (vLLM names a LoRA adapter's base there; the config does not say which names are adapters). A
 * model only built-in engines (sim, llama) serve says `"embeddings": "hash"`: their /v1/embeddings
 * are deterministic hash vectors, not meaning. `max_model_len` (vLLM's and SGLang's context length)
 * is `lenOf(id)`: the smallest its backends' own listings report (model-len.ts), absent when none does.
 */
function modelEntries(
  backends: readonly BackendConfig[],
  onDemand: readonly string[],
  createdS: number,
  lenOf: (id: string) => number | undefined,
): Record<string, unknown>[] {
  const ids = [...new Set([...backends.flatMap((b) => b.models), ...onDemand])].sort();
  return ids.map((id) => {
    const builtinOnly = backends.every(
      (b) => !b.models.includes(id) || b.type === 'sim' || b.type === 'llama',
    );
    return {
      id,
      object: 'model',
      created: createdS,
      owned_by: 'switchyard',
      root: id,
      parent: null,
      ...(lenOf(id) === undefined ? {} : { max_model_len: lenOf(id) }),
      ...(builtinOnly ? { embeddings: 'hash' } : {}),
    };
  });
}

/** Where a backend's signals come from. */
function feedTargetOf(b: BackendConfig): FeedTarget {
  const metricsPath = metricsPathOf(b);
  return {
    id: b.id,
    metricsUrl: metricsPath === null ? null : b.url + metricsPath,
    kvEvents: b.kvEvents ?? null,
    kvEventsTopic: b.kvEventsTopic,
  };
}

/** Starts a gateway (validating the config) and resolves when it listens. */
export async function startGateway(
  config: GatewayConfigInput | GatewayConfig,
  options: GatewayOptions = {},
): Promise<Gateway> {
  const gateway = new LiveGateway(parseGatewayConfig(config), options);
  await gateway.listen(options.awaitFirstHealthCheck ?? true);
  return gateway;
}

/** @internal The gateway's state. `startGateway` is the interface. */
export class LiveGateway implements Gateway, ExchangeHost, PdHost, BodyReaderHost {
  readonly config: GatewayConfig;
  readonly limits: LimitsConfig;
  readonly stats = new GatewayStats();
  readonly view: LiveView;
  readonly backends: Backend[] = [];
  readonly backendById = new Map<string, Backend>();
  readonly metrics: GatewayMetrics;
  readonly admission: AdmissionQueue;
  readonly adminKey: string | undefined;
  private policy: RoutingPolicy;
  private readonly perfModels: GatewayPerfModels;
  private readonly routingRng: Rng;
  private readonly jitterRng: Rng;
  private readonly models: Set<string>;
  /** Models whose prompts are tokenized for exact engine block hashes (a backend's `tokenizer`). */
  private readonly tokenizers: Map<string, PromptTokenizer>;
  private readonly instancesByModel = new Map<string, LiveInstance[]>();
  /** The /v1/models answer, rebuilt when the backends or their reported context lengths change. */
  private modelsJson = '';
  /** The models only scale-from-zero serves (listed with no backend yet). */
  private readonly onDemandModels: readonly string[];
  /** `created` of every /v1/models entry: when this gateway began serving, in Unix seconds. */
  private readonly createdS: number;
  private readonly tenants = new Map<string, TenantEntry>();
  private readonly slo: Slo | undefined;
  private readonly server: Server;
  private readonly health: HealthChecker;
  /** The health checker's list: backends added or removed at run time change it. */
  private readonly healthTargets: HealthTarget[] = [];
  requestTap: RequestTap | undefined;
  hostStats: Record<string, () => unknown> = {};
  readonly modelBuffer: ModelBuffer<HeldRequest> | undefined;
  /** `scaleFromZero.starting`: whether an engine for a model is starting (a drain waits for it). */
  private scaleFromZeroStarting: ((model: string) => boolean) | undefined;
  private readonly healthAgent = new Agent({ connections: 4, keepAliveTimeout: 10_000 });
  private readonly feeds: SignalFeeds;
  private readonly log: (line: string) => void;
  /** Queued in admission, by request id. */
  private readonly pending = new Map<string, Exchange>();
  /** Request bodies still arriving. */
  private readonly reading = new Set<Reading>();
  /** Bytes those bodies hold, against limits.readingBytesMax. */
  readonly readingBudget: ReadingBudget;
  /** Open client connections, per address (limits.connectionsPerClientMax) and in all (connectionsMax). */
  private readonly clientConnections: ClientConnections;
  /** What the raw-socket refusals (client-errors.ts) need of the gateway. */
  private readonly clientErrorHost: ClientErrorHost;
  /** Every exchange not yet finished. */
  private readonly live = new Set<Exchange>();
  private nextId = 0;
  /** `nowMs()` as of the last sweep tick: the proxy's per-chunk progress stamps (ExchangeHost). */
  coarseNowMs = performance.now();
  /** What request-build.ts needs of the gateway. */
  private readonly requestContext: RequestBuildContext;
  /**
   * Parses bodies of limits.offThreadParseBytes or more on worker threads (parse-pool.ts); none when
   * that is 0 or a tokenizer is configured (tokenizing runs on the event loop, with the body's JSON).
   */
  private readonly parsePool: ParsePool | undefined;
  /** Bytes held by requests in the admission queue, bounded in total and per tenant. */
  readonly queuedBytes: QueuedBytes;
  /** Stored Responses API answers, per tenant (`previous_response_id`, GET/DELETE by id). */
  readonly responseStore: ResponseStore;
  private draining = false;
  private drainPromise: Promise<void> | undefined;
  private closePromise: Promise<void> | undefined;
  private drainWaiters: (() => void)[] = [];
  /** Ends the drain in progress at once (set while one runs). */
  private endDrain: (() => void) | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  /** The shared admission drive loop (the twin runs the same one). */
  private readonly driver: AdmissionDriver;
  /** One periodic sweep enforces every request's timeouts. */
  private sweepTimer: NodeJS.Timeout | undefined;
  /** The Batch API (config `batch:`), or undefined when it is off. */
  private readonly batch: BatchService | undefined;
  /** Prefill/decode disaggregation: the models whose requests run an engine P/D protocol (src/gateway/pd/). */
  private readonly pd: PdRuntime;
  /** What cross-origin (browser) requests are answered with (config `cors`, cors.ts). */
  private readonly cors: Cors;
  url = '';
  port = 0;

  constructor(config: GatewayConfig, options: GatewayOptions) {
    this.config = config;
    this.limits = config.limits;
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.feeds =
      options.feeds ??
      adapterFeeds({ scrapeIntervalMs: config.scrapeIntervalMs, now: () => performance.now() });
    this.adminKey = config.adminKey;
    this.slo = config.slo;
    this.view = new LiveView(config.signalStaleAfterMs ?? 3 * config.scrapeIntervalMs);
    const rng = new Rng(config.seed);
    this.routingRng = rng.fork('routing');
    this.jitterRng = rng.fork('retry-jitter');
    for (const b of config.backends) this.registerBackend(b);
    this.pd = new PdRuntime(config.backends, config.seed);
    const onDemand = options.scaleFromZero?.models ?? [];
    this.models = new Set([...config.backends.flatMap((b) => b.models), ...onDemand]);
    this.modelBuffer = onDemand.length > 0 ? this.createModelBuffer(onDemand, options) : undefined;
    this.tokenizers = loadModelTokenizers(config.backends);
    this.parsePool =
      config.limits.offThreadParseBytes > 0 && this.tokenizers.size === 0
        ? new ParsePool({ bytesMax: config.limits.readingBytesMax })
        : undefined;
    // `created`: when this gateway began serving the models, in Unix seconds, read here on the host.
    // vLLM stamps each ModelCard with the time of the /v1/models call (ModelCard.created's
    // default_factory, vllm/entrypoints/openai/models/protocol.py); a start time is as real and does
    // not change between two calls of one client.
    this.createdS = Math.floor(Date.now() / 1000);
    this.onDemandModels = onDemand;
    this.describeModels();
    this.cors = new Cors(config.cors);
    for (const t of config.tenants) this.tenants.set(t.key, { name: t.name, priority: t.priority });
    this.requestContext = {
      models: this.models,
      tokenizers: this.tokenizers,
      slo: this.slo,
      nextId: () => `r${++this.nextId}`,
      embeddingsCapped: (model) => embeddingsInputCapped(this.backends, model),
      priority: priorityRule(
        (config.admission ?? admissionConfigSchema.parse({})).bands,
        config.tenants.length > 0,
        config.limits.clientPriorityMax,
      ),
    };
    this.queuedBytes = new QueuedBytes(config.limits.queuedBytesMax, config.limits.tenantQueuedBytesMax);
    this.responseStore = new ResponseStore(
      {
        countMax: config.limits.responseStoreMax,
        bytesMax: config.limits.responseStoreBytesMax,
        ttlMs: config.limits.responseStoreTtlMs,
      },
      () => this.nowMs(),
    );
    // Stale engine signals: the gate bounds such an instance by the gateway's own accounting.
    this.admission = createAdmissionController(admissionInput(config), {
      signalStaleAfterMs: this.view.staleAfterMs,
    });
    this.driver = new AdmissionDriver(this.admission, this.admissionHost());
    this.batch = this.createBatchService(options);
    // Refuse to start, not answer every request 500, when a policy that predicts time has no model.
    this.perfModels = gatewayPerfModels(config);
    this.perfModels.require([this.defaultPolicyName(), ...Object.keys(config.routing?.policies ?? {})]);
    this.policy = createConfiguredPolicy(
      this.defaultPolicyName(),
      config.routing?.policies ?? {},
      this.perfModels.context,
    );
    this.pd.usePairPolicy(config.pd, this.perfModels, this.view.instances);
    this.metrics = new GatewayMetrics(this.stats, this.view, () => this.policy.name);
    this.pd.registerMetrics(this.metrics.registry);
    this.health = new HealthChecker(
      this.healthTargets,
      config.healthCheck,
      this.healthAgent,
      (id, healthy, reason) => this.healthChanged(id, healthy, reason),
    );
    // A request head must arrive within requestTimeoutMs (at most 60 s); the body is bounded by the
    // sweep (Node's own requestTimeout is set just past it, as a backstop).
    const headersTimeoutMs = Math.min(this.limits.requestTimeoutMs, 60_000);
    this.readingBudget = new ReadingBudget(this.limits.readingBytesMax);
    this.clientConnections = new ClientConnections(
      this.limits.connectionsPerClientMax,
      connectionsMaxOf(this.limits),
    );
    this.clientErrorHost = {
      readingFor: (res) => {
        for (const r of this.reading) if (r.res === res) return r;
        return sideReadFor(res);
      },
      countRejection: (code) => this.stats.reject(code),
      countIdleTimeout: () => {
        this.stats.idleConnectionsTimedOut++;
      },
    };
    this.server = createServer(
      {
        keepAliveTimeout: 65_000,
        headersTimeout: headersTimeoutMs,
        requestTimeout: this.limits.requestTimeoutMs + 1000,
        connectionsCheckingInterval: Math.min(30_000, Math.max(100, headersTimeoutMs / 4)),
        // Node would answer a Host-less HTTP/1.1 request with an empty 400; route() answers it in JSON.
        requireHostHeader: false,
      },
      (req, res) => this.handle(req, res),
    );
    this.server.on('connection', (socket: Socket) =>
      admitConnection(this.clientConnections, this.clientErrorHost, socket),
    );
    this.server.on('checkContinue', (req, res) => this.checkContinue(req, res));
    this.server.on('checkExpectation', (req, res) => {
      req.resume();
      if (this.first(req, res)) return;
      res.shouldKeepAlive = false;
      this.rejectEarly(
        res,
        new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `unsupported Expect header '${String(req.headers.expect)}': only 100-continue is supported`,
          { param: 'expect' },
        ),
      );
    });
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) =>
      answerClientError(this.clientErrorHost, error, socket),
    );
    this.server.on('connect', (req: IncomingMessage, socket: Duplex) =>
      answerConnect(this.clientErrorHost, req, socket),
    );
  }

  /**
   * `Expect: 100-continue`: a completion body declared over limits.bodyBytesMax is refused 413
   * before the client sends it (RFC 9110 section 10.1.1); anything else gets its 100 and goes on.
   */
  private checkContinue(req: IncomingMessage, res: ServerResponse): void {
    if (wasRefused(req.socket) || this.first(req, res)) return;
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const completion =
      path === '/v1/chat/completions' ||
      path === '/v1/completions' ||
      path === '/v1/embeddings' ||
      path === '/v1/responses';
    if (completion && Number(req.headers['content-length']) > this.limits.bodyBytesMax) {
      res.shouldKeepAlive = false;
      this.rejectEarly(res, bodyTooLarge(this.limits.bodyBytesMax));
      return;
    }
    res.writeContinue();
    this.guard(res, () => this.route(req, res));
  }

  private defaultPolicyName(): string {
    if (this.config.routing !== undefined) return this.config.routing.policy;
    return this.config.backends.some((b) => b.kvEvents !== undefined) ? 'kv-events' : 'prefix-affinity';
  }

  get policyName(): string {
    return this.policy.name;
  }

  /** Binds the port, starts health checks and feeds. */
  async listen(awaitHealth: boolean): Promise<void> {
    this.port = await listenOn(this.server, this.config.host, this.config.port);
    const address = this.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.url = `http://${host}:${this.port}`;
    this.feeds.start(
      this.backends.map((b) => feedTargetOf(b.config)),
      {
        signals: (id, signals, atMs) => {
          this.view.applySignals(id, signals, atMs);
          if (this.stats.queued > 0) this.step();
        },
        kvEvents: (id, events) => {
          this.pd.kvEvents(id, events, this.nowMs());
          const hook = this.policy.onKvEvent;
          if (hook === undefined) return;
          const now = this.nowMs();
          for (const event of events) hook.call(this.policy, id, event, now);
        },
        error: (id, source, error) => this.log(`switchyard: ${source} of ${id}: ${error.message}`),
      },
    );
    const l = this.limits;
    const sweepMs = Math.min(
      100,
      Math.max(
        5,
        Math.min(l.firstByteTimeoutMs, l.requestTimeoutMs, l.stallAfterMs, l.streamIdleTimeoutMs) / 8,
      ),
    );
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();
    if (awaitHealth && this.backends.length > 0) await this.health.checkAll();
    this.health.start();
    this.batch?.start();
  }

  nowMs(): number {
    return performance.now();
  }

  /**
   * Times out what is overdue (request deadline, first-byte deadline and idle bound of the current
   * attempt), and ejects stalled backends so that checkTimers re-routes their unanswered requests.
   */
  private sweep(): void {
    const now = this.nowMs();
    this.coarseNowMs = now;
    if (this.live.size === 0 && this.reading.size === 0) return;
    this.detectStalls(now);
    for (const ex of this.live) ex.checkTimers(now);
    for (const r of this.reading) if (now >= r.deadlineMs) r.expire();
  }

  setPolicy(name: string): void {
    // Requests already routed keep reporting to the policy that routed them (Exchange.policy).
    const named = this.config.routing?.policies ?? {};
    if (policyTypeOf(name, named) === 'kv-events')
      for (const b of this.config.backends) {
        const refusal = kvEventsRefusal(b);
        if (refusal !== undefined)
          throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', refusal, { param: 'policy' });
      }
    this.perfModels.require([name]);
    this.policy = createConfiguredPolicy(name, named, this.perfModels.context);
  }

  /** Names a PUT /admin/policy may use. */
  policyNames(): string[] {
    return [
      ...new Set([...routingPolicyNames(), ...Object.keys(this.config.routing?.policies ?? {})]),
    ].sort();
  }

  /** A backend in the view, the health checks and the per-model lists (not yet in the feeds). */
  private registerBackend(b: BackendConfig): Backend {
    const instance = this.view.add({
      id: b.id,
      models: b.models,
      gpu: b.gpu,
      tp: b.tp,
      role: b.role,
      kvBlocksTotal: defaultKvBlocks(b.gpu, perfModelIdOf(b) ?? b.models[0], b.tp),
      blockSize: 16,
    });
    const role = roleCheckOf(b);
    const health: HealthTarget = {
      id: b.id,
      url: b.url + healthPathOf(b),
      headers: b.apiKey === undefined ? {} : { authorization: `Bearer ${b.apiKey}` },
      state: new HealthState(this.config.healthCheck),
      role,
      modelLen: new ModelLenProbe(b.url, b.models, () => this.describeModels()),
    };
    if (role?.gates === true) {
      // A P/D side takes no request before its engine confirmed the role: out until a check admits it.
      health.state.healthy = false;
      instance.healthy = false;
      health.ejectedReason = `${pendingRole(health)}: not asked yet`;
    }
    this.healthTargets.push(health);
    const backend = new Backend(b, instance, health);
    this.backends.push(backend);
    this.backendById.set(b.id, backend);
    for (const m of b.models) {
      const list = this.instancesByModel.get(m) ?? [];
      list.push(instance);
      this.instancesByModel.set(m, list);
    }
    return backend;
  }

  addBackend(input: z.input<typeof backendConfigSchema>): void {
    const parsed = backendConfigSchema.safeParse(input);
    if (!parsed.success)
      throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `backend: ${parsed.error.issues[0]?.message}`, {
        param: 'backend',
      });
    const b = parsed.data;
    if (this.backendById.has(b.id))
      throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `duplicate backend id '${b.id}'`, { param: 'id' });
    const unknown = b.models.find((m) => !this.models.has(m));
    if (unknown !== undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `backend '${b.id}' serves model '${unknown}', which the gateway did not start with`,
        { param: 'models' },
      );
    this.perfModels.add(b, [this.policy.name, ...Object.keys(this.config.routing?.policies ?? {})]);
    const backend = this.registerBackend(b);
    this.feeds.add?.(feedTargetOf(b));
    // A P/D side is asked its role now, not at the next round (it is out of service until then).
    if (backend.health.role?.gates === true) void this.health.checkNow(backend.health);
    this.step();
    this.releaseHeld();
  }

  removeBackend(id: string): boolean {
    const backend = this.backendById.get(id);
    if (backend === undefined) return false;
    if (backend.instance.inFlight > 0)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `backend '${id}' has ${backend.instance.inFlight} request(s) in flight; drain it first`,
        { param: 'id' },
      );
    this.backendById.delete(id);
    this.backends.splice(this.backends.indexOf(backend), 1);
    this.healthTargets.splice(this.healthTargets.indexOf(backend.health), 1);
    for (const m of backend.config.models) {
      const list = this.instancesByModel.get(m);
      if (list !== undefined) list.splice(list.indexOf(backend.instance), 1);
    }
    this.view.remove(id);
    this.feeds.remove?.(id);
    // Its reported context length no longer bounds the model's.
    this.describeModels();
    this.pd.conditional?.forgetBackend(id);
    void backend.pool.destroy();
    return true;
  }

  setDraining(id: string, draining: boolean): boolean {
    const backend = this.backendById.get(id);
    if (backend === undefined) return false;
    backend.instance.draining = draining;
    if (!draining) this.step();
    if (!draining) this.releaseHeld();
    return true;
  }

  /**
   * Ready: not draining, and every configured model has a healthy, undrained instance that has not
   * failed every health check so far. Ejection waits for `failuresToEject` strikes, so a backend with
   * nothing listening stayed `healthy` for the first rounds after start-up, and /ready said ready
   * while every request to it failed (a readiness probe would have sent traffic to the gateway).
   * A prefill/decode model needs such an instance on each side: its completions take both legs.
   */
  readiness(): { ready: boolean; reason: string } {
    if (this.draining) return { ready: false, reason: 'gateway is draining' };
    const serves = (b: Backend, model: string, role?: 'prefill' | 'decode'): boolean =>
      b.instance.healthy &&
      !b.health.state.neverAnswered &&
      !b.instance.draining &&
      b.instance.models.includes(model) &&
      (role === undefined || b.config.role === role);
    for (const model of this.models) {
      // A model on demand at zero instances is served all the same (its requests wait for one).
      if (this.modelBuffer?.serves(model) === true) continue;
      if (this.pd.protocolOf(model) !== undefined) {
        for (const role of ['prefill', 'decode'] as const)
          if (!this.backends.some((b) => serves(b, model, role)))
            return { ready: false, reason: `no healthy ${role} instance serves model '${model}'` };
        continue;
      }
      if (!this.backends.some((b) => serves(b, model)))
        return { ready: false, reason: `no healthy instance serves model '${model}'` };
    }
    if (this.models.size === 0) return { ready: false, reason: 'no backends configured' };
    return { ready: true, reason: 'ok' };
  }

  // ---- HTTP ----

  private handle(req: IncomingMessage, res: ServerResponse): void {
    // A connection refused on its raw socket (over connectionsPerClientMax) was answered already.
    if (wasRefused(req.socket)) return;
    this.guard(res, () => {
      if (!this.first(req, res)) this.route(req, res);
    });
  }

  /**
   * What every request gets before routing: its X-Request-Id on the answer (request-id.ts) and CORS
   * (cors.ts). True when that answered it (a CORS preflight).
   */
  private first(req: IncomingMessage, res: ServerResponse): boolean {
    assignRequestId(req, res);
    // The host's counter, made once: no closure per request (most requests have no Origin at all).
    return handleCors(this.cors, req, res, this.clientErrorHost.countRejection);
  }

  /** Runs `f`; a throw answers 500 (or cuts a started answer) instead of crashing the process. */
  private guard(res: ServerResponse, f: () => void): void {
    try {
      f();
    } catch (error) {
      this.internalError(res, error);
    }
  }

  /** A throw while handling a request: 500 (or cut a started answer) instead of crashing the process. */
  private internalError(res: ServerResponse, error: unknown): void {
    const e =
      error instanceof SwitchyardError
        ? error
        : new SwitchyardError('SY_ERR_INTERNAL', `internal error: ${(error as Error).message}`);
    if (!(error instanceof SwitchyardError)) this.log(`switchyard: ${(error as Error).stack ?? error}`);
    if (!res.headersSent) sendError(res, e);
    else res.destroy();
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      // RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400.
      this.drainBody(req);
      res.shouldKeepAlive = false;
      const e = new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'HTTP/1.1 request without a Host header', {
        param: 'host',
      });
      this.rejectEarly(res, e);
      return;
    }
    if (method === 'POST') {
      if (path === '/v1/chat/completions') {
        this.completion(req, res, 'chat');
        return;
      }
      if (path === '/v1/completions') {
        this.completion(req, res, 'completion');
        return;
      }
      if (path === '/v1/embeddings') {
        this.completion(req, res, 'embeddings');
        return;
      }
      if (path === '/v1/responses') {
        this.completion(req, res, 'responses');
        return;
      }
      if (TOKENIZE_PATHS.has(path)) {
        this.tokenization(req, res, path);
        return;
      }
    } else if (method === 'GET' || method === 'HEAD') {
      if (path === TOKENIZER_INFO_PATH) {
        this.tokenizerInfo(req, res, method, q < 0 ? '' : url.slice(q + 1));
        return;
      }
      switch (path) {
        case '/health': {
          sendJson(res, 200, { status: 'ok' });
          return;
        }
        case '/version':
          // vLLM's route, outside /v1 (so no API key, as vLLM's --api-key guards /v1 only): the
          // gateway's own version, not an engine's (its engines may differ, and it names no model).
          res.writeHead(200, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(VERSION_BODY),
          });
          res.end(VERSION_BODY);
          return;
        case '/ready': {
          const r = this.readiness();
          sendJson(res, r.ready ? 200 : 503, {
            status: r.ready ? 'ready' : 'not ready',
            reason: r.reason,
          });
          return;
        }
        case '/v1/models':
          if (!this.modelsAllowed(req, res)) return;
          res.writeHead(200, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(this.modelsJson),
          });
          res.end(this.modelsJson);
          return;
        case '/metrics':
          void this.metrics.registry.metrics().then(
            (text) => {
              res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
              res.end(text);
            },
            (error: Error) => sendError(res, new SwitchyardError('SY_ERR_INTERNAL', error.message)),
          );
          return;
        case '/stats': {
          sendJson(res, 200, this.statsJson());
          return;
        }
      }
    }
    if (path === '/admin' || path.startsWith('/admin/')) {
      handleAdmin(this, req, res, method, path);
      return;
    }
    if (this.batch !== undefined && isBatchApiPath(path)) {
      this.batchApi(this.batch, req, res, method);
      return;
    }
    this.drainBody(req);
    const stored = responseRouteOf(path);
    if (stored !== undefined && this.responseStore.enabled && !RESPONSES_UNSERVED.has(path)) {
      this.storedResponse(req, res, method, stored, q < 0 ? '' : url.slice(q + 1));
      return;
    }
    const get = method === 'GET' || method === 'HEAD';
    if (get && path.startsWith('/v1/models/')) {
      if (!this.modelsAllowed(req, res)) return;
      this.modelById(res, path.slice('/v1/models/'.length));
      return;
    }
    const allow = GATEWAY_ROUTE_METHODS.get(path);
    if (allow !== undefined) {
      res.setHeader('allow', allow);
      const message = `method ${method} not allowed on ${path}; use ${allow}`;
      sendError(res, new SwitchyardError('SY_ERR_METHOD_NOT_ALLOWED', message, { param: 'method' }));
      return;
    }
    // vLLM answers only "Not Found"; a client that took the gateway for another API is told so.
    const hint = unknownRouteHint(path, this.batch !== undefined);
    sendError(
      res,
      new SwitchyardError('SY_ERR_NOT_FOUND', `unknown route ${method} ${path}${hint}`, { param: 'path' }),
    );
  }

  /**
   * `GET`/`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items` from the response
   * store, for the request's tenant (its API key, 401 without one when tenants are configured).
   */
  private storedResponse(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    route: { id: string; items: boolean },
    query: string,
  ): void {
    let tenant = 'default';
    if (this.tenants.size > 0) {
      const key = bearerToken(req.headers.authorization);
      const entry = key === undefined ? undefined : this.tenants.get(key);
      if (entry === undefined) {
        this.clientErrorHost.countRejection('SY_ERR_UNAUTHORIZED');
        sendError(
          res,
          new SwitchyardError(
            'SY_ERR_UNAUTHORIZED',
            key === undefined ? 'missing API key (Authorization: Bearer <key>)' : 'invalid API key',
            {
              param: 'authorization',
            },
          ),
        );
        return;
      }
      tenant = entry.name;
    }
    if (answerStoredResponse(this.responseStore, tenant, res, method, route, new URLSearchParams(query)))
      return;
    const allow = route.items ? 'GET' : 'GET, DELETE';
    res.setHeader('allow', allow);
    const message = `method ${method} not allowed on ${route.items ? "a stored response's input items" : 'a stored response'}; use ${allow}`;
    sendError(res, new SwitchyardError('SY_ERR_METHOD_NOT_ALLOWED', message, { param: 'method' }));
  }

  /**
   * With tenants configured, /v1/models and /v1/models/{id} answer a tenant's key only (401
   * otherwise, counted), as every completion route does and as vLLM's --api-key guards every /v1
   * route: a client with a wrong key learns it at `models.list()`, not at its first completion.
   * True when the request may go on.
   */
  private modelsAllowed(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.tenants.size === 0) return true;
    const key = bearerToken(req.headers.authorization);
    if (key !== undefined && this.tenants.has(key)) return true;
    const message = key === undefined ? 'missing API key (Authorization: Bearer <key>)' : 'invalid API key';
    this.rejectEarly(res, new SwitchyardError('SY_ERR_UNAUTHORIZED', message, { param: 'authorization' }));
    return false;
  }

  /**
   * vLLM's `POST /tokenize` and `POST /detokenize` (tokenize-route.ts): the tenant's key and the
   * content type checked as on a completion, then forwarded to an instance of the body's model.
   */
  private tokenization(req: IncomingMessage, res: ServerResponse, path: string): void {
    const type = contentTypeRefusal(req.headers['content-type']);
    const refusal = this.draining ? new SwitchyardError('SY_ERR_DRAINING', 'gateway is shutting down') : type;
    if (refusal !== undefined || !this.modelsAllowed(req, res)) {
      this.drainBody(req);
      if (refusal !== undefined) this.rejectEarly(res, refusal);
      this.stats.tokenizerRequest(path, 'rejected');
      return;
    }
    serveTokenization(this.tokenizeHost(), req, res, path);
  }

  /** What tokenize-route.ts needs of this gateway. */
  private tokenizeHost(): TokenizeRouteHost {
    return {
      models: this.models,
      bounds: {
        bytesMax: this.limits.bodyBytesMax,
        bytesMaxName: 'limits.bodyBytesMax',
        ...bodyTimeBound(this.limits),
      },
      answerTimeoutMs: this.limits.firstByteTimeoutMs,
      pick: (model) => this.pickLeastLoaded(this.view.at(this.nowMs()), model),
      reject: (r, error) => this.rejectEarly(r, error),
      count: (route, outcome) => this.stats.tokenizerRequest(route, outcome),
    };
  }

  /**
   * vLLM's `GET /tokenizer_info` (tokenize-route.ts serveTokenizerInfo): the tenant's key checked as
   * on /v1/models, then an instance of the `?model=` query's model (or the one model) answers.
   */
  private tokenizerInfo(
    req: IncomingMessage,
    res: ServerResponse,
    method: 'GET' | 'HEAD',
    query: string,
  ): void {
    this.drainBody(req);
    if (this.draining) {
      this.rejectEarly(res, new SwitchyardError('SY_ERR_DRAINING', 'gateway is shutting down'));
      this.stats.tokenizerRequest(TOKENIZER_INFO_PATH, 'rejected');
      return;
    }
    if (!this.modelsAllowed(req, res)) {
      this.stats.tokenizerRequest(TOKENIZER_INFO_PATH, 'rejected');
      return;
    }
    serveTokenizerInfo(this.tokenizeHost(), res, method, query);
  }

  /**
   * Builds the /v1/models answer: the models the gateway started with (its configured backends' and
   * scale-from-zero's), each with the smallest `max_model_len` its current backends reported
   * (model-len.ts).
   */
  private describeModels(): void {
    // A probe's lengths are of its own backend's models only, so the smallest over all is the model's.
    const probes = this.backends.flatMap((b) => b.health.modelLen ?? []);
    this.modelsJson = JSON.stringify({
      object: 'list',
      data: modelEntries(this.config.backends, this.onDemandModels, this.createdS, (id) =>
        smallestModelLen(probes, id),
      ),
    });
  }

  /** `GET /v1/models/{id}`: the model's entry from /v1/models, or 404 naming it. */
  private modelById(res: ServerResponse, encodedId: string): void {
    let id = encodedId;
    try {
      id = decodeURIComponent(encodedId);
    } catch {
      // Not valid percent-encoding: look the raw text up (it will not be found).
    }
    const models = (JSON.parse(this.modelsJson) as { data: { id: string }[] }).data;
    const model = models.find((m) => m.id === id);
    if (model !== undefined) {
      sendJson(res, 200, model);
      return;
    }
    sendError(res, new SwitchyardError('SY_ERR_NOT_FOUND', `model '${id}' not found`, { param: 'model' }));
  }

  /** Counters and admission state, for /stats and /admin/stats. */
  statsJson(): Record<string, unknown> {
    return {
      ...this.stats.toJSON(),
      admission: this.admission.stats,
      queuedBytes: this.queuedBytes.stats,
      responseStore: this.responseStore.stats,
      parsePool: this.parsePool?.stats,
      scaleFromZero: this.modelBuffer?.statsJson(),
      batch: this.batch?.stats,
      pd: this.pd.statsJson(),
      /** Each ejected instance and why (a wrong P/D role, failed checks, a stall). */
      ejected: Object.fromEntries(
        this.backends
          .filter((b) => !b.instance.healthy)
          .map((b) => [b.id, b.health.ejectedReason ?? 'ejected']),
      ),
      ...Object.fromEntries(Object.entries(this.hostStats).map(([k, f]) => [k, f()])),
      policy: this.policy.name,
      draining: this.draining,
    };
  }

  /** Reads and discards a body we will not use (keeps the connection reusable for small bodies). */
  private drainBody(req: IncomingMessage): void {
    req.resume();
  }

  /** @internal */
  rejectEarly(res: ServerResponse, error: SwitchyardError, retryAfterMs?: number): void {
    // Answered already (a parse error of the same request got there first): count it once.
    if (res.headersSent || res.writableEnded) return;
    this.stats.reject(error.code);
    sendError(res, error, retryAfterMs);
  }

  // ---- Batch API (src/gateway/batch) ----

  private createBatchService(options: GatewayOptions): BatchService | undefined {
    if (this.config.batch === undefined) return undefined;
    return new BatchService(this.config.batch, {
      dispatch: (kind, body, tenant, hints, res) => this.dispatchInternal(kind, body, tenant, hints, res),
      nowMs: () => this.nowMs(),
      wallClockMs: options.batchWallClockMs ?? Date.now,
      offlineRoom: () => this.admission.offlineRoom,
      log: this.log,
    });
  }

  /** /v1/files and /v1/batches, for the tenant the API key names (every tenant's own). */
  private batchApi(batch: BatchService, req: IncomingMessage, res: ServerResponse, method: string): void {
    let owner = 'default';
    if (this.tenants.size > 0) {
      const tenant = this.tenants.get(bearerToken(req.headers.authorization) ?? '');
      if (tenant === undefined) {
        this.drainBody(req);
        this.rejectEarly(
          res,
          new SwitchyardError('SY_ERR_UNAUTHORIZED', 'missing or invalid API key', {
            param: 'authorization',
          }),
        );
        return;
      }
      owner = tenant.name;
    }
    try {
      // Refusals there go through rejectEarly too: they count in `rejected` as the main path's do.
      handleBatchApi(batch, req, res, method, new URL(req.url ?? '/', 'http://gateway'), owner, this);
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      this.drainBody(req);
      this.rejectEarly(res, error);
    }
  }

  /**
   * Sends a request the gateway makes itself (a Batch API line) down the clients' path: the body is
   * parsed like a client's, offered to admission with `hints` (the offline band), routed and proxied,
   * and the answer written to `res` (a capture, not a socket). The one way in for batch requests.
   */
  dispatchInternal(
    kind: ExchangeKind,
    body: Buffer,
    tenant: string,
    hints: OfferHints,
    res: ServerResponse,
  ): void {
    this.guard(res, () => {
      if (this.draining) {
        this.rejectEarly(res, new SwitchyardError('SY_ERR_DRAINING', 'gateway is shutting down'));
        return;
      }
      const arrivalMs = this.nowMs();
      this.withFields(kind, body, res, (fields) => {
        const noHeaders = { headers: {} } as IncomingMessage;
        const { request } = requestOf(this.requestContext, fields, undefined, noHeaders, arrivalMs);
        this.accept(kind, { ...request, tenant, priority: BATCH_PRIORITY }, body, false, res, hints);
      });
    });
  }

  /**
   * Parses `body`, then runs `go` with its fields (a SwitchyardError thrown there is answered): at
   * once on the event loop, or on a parse worker for a body of limits.offThreadParseBytes or more
   * (parse-pool.ts), which gives the same fields and errors. A bad body is answered on `res`.
   */
  private withFields(
    kind: ExchangeKind,
    body: Buffer,
    res: ServerResponse,
    go: (f: BodyFields) => void,
  ): void {
    const pool = this.parsePool;
    if (pool === undefined || body.length < this.config.limits.offThreadParseBytes) {
      let fields: BodyFields;
      try {
        fields = bodyFields(this.requestContext, kind, body);
      } catch (error) {
        if (!(error instanceof SwitchyardError)) throw error;
        this.rejectEarly(res, error);
        return;
      }
      this.goWith(res, fields, go);
      return;
    }
    pool.parse(kind, body).then(
      (fields) =>
        this.guard(res, () => {
          // The client left while its body was parsed: nothing to answer or send, but it is counted
          // as a client that leaves while its body is read is (rejected, SY_ERR_INVALID_ARGUMENT).
          if (res.destroyed || res.socket?.destroyed === true) {
            if (!res.headersSent && !res.writableEnded) this.stats.reject('SY_ERR_INVALID_ARGUMENT');
            return;
          }
          if (this.draining)
            this.rejectEarly(res, new SwitchyardError('SY_ERR_DRAINING', 'gateway is shutting down'));
          else this.goWith(res, fields, go);
        }),
      (error: unknown) =>
        this.guard(res, () => {
          if (!(error instanceof SwitchyardError)) throw error;
          const full = error.code === 'SY_ERR_PARSE_QUEUE_FULL';
          this.rejectEarly(res, error, full ? PARSE_FULL_RETRY_AFTER_MS : undefined);
        }),
    );
  }

  /** `go(fields)`, answering a SwitchyardError it throws (an unserved model). */
  private goWith(res: ServerResponse, fields: BodyFields, go: (f: BodyFields) => void): void {
    try {
      go(fields);
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      this.rejectEarly(res, error);
    }
  }

  private completion(req: IncomingMessage, res: ServerResponse, kind: ExchangeKind): void {
    if (this.draining) {
      res.shouldKeepAlive = false;
      const e = new SwitchyardError('SY_ERR_DRAINING', 'gateway is shutting down');
      this.refuseBody(req, res, kind, e, 1000);
      return;
    }
    let tenant: TenantEntry | undefined;
    if (this.tenants.size > 0) {
      const key = bearerToken(req.headers.authorization);
      tenant = key === undefined ? undefined : this.tenants.get(key);
      if (tenant === undefined) {
        const e = new SwitchyardError(
          'SY_ERR_UNAUTHORIZED',
          key === undefined ? 'missing API key (Authorization: Bearer <key>)' : 'invalid API key',
          { param: 'authorization' },
        );
        this.refuseBody(req, res, kind, e);
        return;
      }
    }
    const encoding = contentEncodingRefusal(req.headers['content-encoding']);
    if (encoding !== undefined) {
      res.setHeader('accept-encoding', ACCEPTED_ENCODING);
      this.refuseBody(req, res, kind, encoding);
      return;
    }
    const type = contentTypeRefusal(req.headers['content-type']);
    if (type !== undefined) {
      this.refuseBody(req, res, kind, type);
      return;
    }
    // The body's bounds (time, size, bytes held, depth) live in body-reader.ts; the sweep expires it.
    const reader = new BodyReader(this, req, res, kind, tenant, this.nowMs());
    this.reading.add(reader);
    reader.start();
  }

  /** Answers `error` once the body is read and dropped (a client still sending sees it, not a broken pipe). */
  private refuseBody(
    req: IncomingMessage,
    res: ServerResponse,
    kind: ExchangeKind,
    error: SwitchyardError,
    retryAfterMs?: number,
  ): void {
    const reader = new BodyReader(this, req, res, kind, undefined, this.nowMs());
    this.reading.add(reader);
    reader.startRefused(error, retryAfterMs);
  }

  /**
   * @internal A completion body was read (or could not be): parse, admit, start. Exactly what
   * `readBody`'s callback did, without a closure per request.
   */
  bodyRead(r: BodyReader, result: Buffer | SwitchyardError): void {
    const res = r.res;
    try {
      this.reading.delete(r);
      if (result instanceof SwitchyardError) {
        if (result.code === 'SY_ERR_REQUEST_TOO_LARGE') res.shouldKeepAlive = false;
        this.rejectEarly(res, result, r.retryAfterMs);
        return;
      }
      const body = r.kind === 'responses' ? this.withPrevious(result, r.tenant, res) : result;
      if (body === undefined) return;
      this.withFields(r.kind, body, res, (fields) => {
        const built = requestOf(this.requestContext, fields, r.tenant, r.req, r.arrivalMs);
        this.accept(r.kind, built.request, body, built.stream, res);
      });
    } catch (error) {
      this.internalError(res, error);
    } finally {
      this.settleDrain();
    }
  }

  /**
   * A Responses body with its `previous_response_id` expanded from the response store (the whole
   * conversation as input) and its `item_reference` inputs replaced by the stored items
   * (response-store.ts), or as it came when it has neither; undefined when that was refused (answered
   * on `res`: an id this tenant has not stored).
   */
  private withPrevious(
    body: Buffer,
    tenant: TenantEntry | undefined,
    res: ServerResponse,
  ): Buffer | undefined {
    try {
      const name = tenant?.name ?? 'default';
      return expandPrevious(body, name, this.responseStore, this.limits.bodyBytesMax) ?? body;
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      this.rejectEarly(res, error);
      return undefined;
    }
  }

  /** @internal Gives up a body read (its deadline passed, or the client broke the connection). */
  bodyFailed(r: BodyReader, error: SwitchyardError): void {
    this.reading.delete(r);
    r.res.shouldKeepAlive = false;
    this.rejectEarly(r.res, error, r.retryAfterMs);
    r.close();
    this.settleDrain();
  }

  /** Offers a parsed request to admission (completions and embeddings) and starts it or holds it. */
  private accept(
    kind: ExchangeKind,
    request: Request,
    body: Buffer,
    stream: boolean,
    res: ServerResponse,
    hints?: OfferHints,
  ): void {
    const unsupported = this.endpointRefusal(kind, request.model);
    if (unsupported !== undefined) {
      this.rejectEarly(res, unsupported);
      return;
    }
    this.requestTap?.arrived(request, this.nowMs());
    if (this.modelBuffer?.serves(request.model) === true) {
      const bytes = queuedBytesOf(request, body);
      if (this.heldForInstance(this.modelBuffer, { kind, request, body, stream, res, hints, bytes })) return;
    }
    if (!this.servable(request.model)) {
      this.requestTap?.ended(request, false, 0, this.nowMs());
      // Fail fast rather than queue: nothing serves the model now (health checks may re-admit one).
      this.rejectEarly(
        res,
        new SwitchyardError('SY_ERR_NO_INSTANCE', `no healthy instance serves model '${request.model}'`, {
          param: 'model',
        }),
        this.config.healthCheck.intervalMs,
      );
      return;
    }
    this.offer(kind, request, body, stream, res, hints);
  }

  /**
   * Why `model` cannot be served on the endpoint of `kind` here, or undefined: a Responses request
   * for a model only prefill/decode pools serve. vLLM cannot disaggregate one (its ResponsesRequest
   * takes no kv_transfer_params, vllm/entrypoints/openai/responses/protocol.py) and its P/D proxy
   * serves chat and completions only (tests/v1/kv_connector/nixl_integration/toy_proxy_server.py),
   * so it is refused before admission instead of waiting for a `both` instance that never comes.
   */
  private endpointRefusal(kind: ExchangeKind, model: string): SwitchyardError | undefined {
    if (kind !== 'responses' || this.pd.protocolOf(model) === undefined) return undefined;
    for (const b of this.backends)
      if (b.config.role === 'both' && b.config.models.includes(model)) return undefined;
    return new SwitchyardError(
      'SY_ERR_UNSUPPORTED_ENDPOINT',
      `model '${model}' is served by prefill/decode pools only, and the Responses API is not disaggregated (vLLM's Responses requests take no kv_transfer_params; its P/D proxy serves chat and completions only): send the conversation to /v1/chat/completions`,
      { param: 'model' },
    );
  }

  /**
   * Admission's verdict on an accepted request: sent now, queued, or refused. `held`: it comes out of
   * the scale-from-zero buffer, already counted accepted (a refusal then counts as a failure).
   */
  private offer(
    kind: ExchangeKind,
    request: Request,
    body: Buffer,
    stream: boolean,
    res: ServerResponse,
    hints?: OfferHints,
    held = false,
  ): void {
    // A body that would pass a queued-bytes bound may still go out at once, but may not wait.
    const bytes = queuedBytesOf(request, body);
    const full = this.queuedBytes.refusal(request.tenant, bytes);
    let ex: Exchange | undefined;
    const verdict = this.driver.offer(
      request,
      () => {
        ex = this.admit(kind, request, body, stream, res, held);
        ex.released = true;
        ex.start();
        return true;
      },
      full === undefined ? hints : { ...hints, unqueueable: this.queuedBytesRefusal(full, request, bytes) },
    );
    if (verdict.kind === 'reject') {
      this.requestTap?.ended(request, false, 0, this.nowMs());
      if (verdict.code === 'SY_ERR_QUEUE_BYTES_FULL' || verdict.code === 'SY_ERR_TENANT_QUEUE_BYTES_FULL')
        this.queuedBytes.refused();
      const refusal = new SwitchyardError(verdict.code, verdict.reason);
      if (held) this.failHeld(res, refusal, verdict.retryAfterMs);
      else this.rejectEarly(res, refusal, verdict.retryAfterMs);
      return;
    }
    if (verdict.kind === 'queued') {
      ex = this.admit(kind, request, body, stream, res, held);
      ex.queued = true;
      this.stats.queued++;
      this.queuedBytes.hold(request.tenant, bytes);
      this.pending.set(request.id, ex);
    }
    this.step();
  }

  /** The refusal for a request that would pass a queued-bytes bound (`which`). */
  private queuedBytesRefusal(
    which: 'total' | 'tenant',
    request: Request,
    bytes: number,
  ): { code: 'SY_ERR_QUEUE_BYTES_FULL' | 'SY_ERR_TENANT_QUEUE_BYTES_FULL'; reason: string } {
    const q = this.queuedBytes;
    return which === 'tenant'
      ? {
          code: 'SY_ERR_TENANT_QUEUE_BYTES_FULL',
          reason: `tenant '${request.tenant}' has ${q.tenantBytes(request.tenant)} bytes queued; ${bytes} more would pass limits.tenantQueuedBytesMax ${q.tenantBytesMax}`,
        }
      : {
          code: 'SY_ERR_QUEUE_BYTES_FULL',
          reason: `${q.stats.bytes} bytes are queued; ${bytes} more would pass limits.queuedBytesMax ${q.bytesMax}`,
        };
  }

  /** A queued exchange left the admission queue (sent, refused, or its client left). */
  private leftQueue(ex: Exchange): void {
    ex.queued = false;
    this.stats.queued--;
    this.queuedBytes.release(ex.request.tenant, queuedBytesOf(ex.request, ex.body));
  }

  /** An exchange for a request admission did not refuse (`held`: counted accepted when it was held). */
  private admit(
    kind: ExchangeKind,
    request: Request,
    body: Buffer,
    stream: boolean,
    res: ServerResponse,
    held = false,
  ): Exchange {
    // P/D legs speak chat and completions only: a Responses request is served by a whole instance.
    const ex =
      (kind === 'responses' ? undefined : this.pd.exchange(this, kind, request, body, stream, res)) ??
      new Exchange(this, kind, request, body, stream, res);
    // A Responses answer is stored unless the body says store: false (checked again at its end).
    if (kind === 'responses' && this.responseStore.enabled && !saysStoreFalse(body)) {
      const bytesMax = Math.min(CAPTURE_BYTES_MAX, this.limits.responseStoreBytesMax);
      ex.capture = new ResponseCapture(this.responseStore, request.tenant, body, bytesMax);
    }
    if (!held) this.stats.accepted++;
    this.live.add(ex);
    return ex;
  }

  // ---- scale from zero (model-buffer.ts) ----

  private createModelBuffer(models: readonly string[], options: GatewayOptions): ModelBuffer<HeldRequest> {
    const l = this.limits;
    const wake = options.scaleFromZero?.wake ?? (() => {});
    this.scaleFromZeroStarting = options.scaleFromZero?.starting?.bind(options.scaleFromZero);
    const keepAliveMsDefault = options.scaleFromZero?.keepAliveMs ?? KEEP_ALIVE_MS_DEFAULT;
    return new ModelBuffer<HeldRequest>(
      models,
      {
        perModelMax: l.scaleFromZeroBufferMax,
        totalMax: l.scaleFromZeroHeldMax,
        waitMs: l.scaleFromZeroWaitMs,
        keepAliveMsDefault,
        keepAliveMsMax: l.keepAliveMsMax,
      },
      {
        nowMs: () => this.nowMs(),
        release: (h) => {
          this.stats.held--;
          this.queuedBytes.release(h.request.tenant, h.bytes);
          // Its client left and 'close' has not run yet: it ends here.
          if (h.res.destroyed || h.res.writableEnded) {
            this.stats.fail('client_abort');
            this.requestTap?.ended(h.request, false, 0, this.nowMs());
          } else this.releaseOne(h);
          // After the whole release (the rest of the model's requests go live in the same turn).
          if (this.draining) queueMicrotask(() => this.settleDrain());
        },
        reject: (h, error, retryAfterMs, held) => {
          this.queuedBytes.release(h.request.tenant, h.bytes);
          this.requestTap?.ended(h.request, false, 0, this.nowMs());
          // Refused at the door (buffer full) it was never accepted; a held one fails.
          if (!held) return this.rejectEarly(h.res, error, retryAfterMs);
          this.stats.held--;
          this.failHeld(h.res, error, retryAfterMs);
          this.settleDrain();
        },
        wake: (model, waiting) => wake(model, waiting),
      },
    );
  }

  /**
   * A request for an on-demand model: its keep_alive is noted (a bad one answered 400), and while the
   * model has no instance in service it waits in the buffer. True when it was answered or held.
   */
  private heldForInstance(buffer: ModelBuffer<HeldRequest>, h: HeldRequest): boolean {
    try {
      buffer.noteRequest(h.request.model, h.body);
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      this.requestTap?.ended(h.request, false, 0, this.nowMs());
      this.rejectEarly(h.res, error);
      return true;
    }
    if (this.servable(h.request.model)) return false;
    // Held bodies count against the queued-bytes bounds, as the admission queue's do.
    const full = this.queuedBytes.refusal(h.request.tenant, h.bytes);
    if (full !== undefined) {
      const refusal = this.queuedBytesRefusal(full, h.request, h.bytes);
      this.queuedBytes.refused();
      this.requestTap?.ended(h.request, false, 0, this.nowMs());
      this.rejectEarly(h.res, new SwitchyardError(refusal.code, refusal.reason), 1000);
      return true;
    }
    // Held from here; every way out of the buffer (release, reject) gives the bytes back.
    this.queuedBytes.hold(h.request.tenant, h.bytes);
    if (buffer.hold(h.request.model, h)) {
      // Held: accepted, in flight and waiting for an instance until it leaves the buffer (metrics.ts).
      this.stats.accepted++;
      this.stats.held++;
      // A client that leaves while it waits is dropped (remove is false once it was released).
      h.res.once('close', () => {
        if (!buffer.remove(h.request.model, h)) return;
        this.stats.held--;
        this.stats.fail('client_abort');
        this.queuedBytes.release(h.request.tenant, h.bytes);
        this.requestTap?.ended(h.request, false, 0, this.nowMs());
        this.settleDrain();
      });
    }
    return true;
  }

  /**
   * Offers a request released from the buffer. It was counted accepted when held, so a throw before
   * it became an exchange (which would count its end) fails it here: inFlight comes back.
   */
  private releaseOne(h: HeldRequest): void {
    try {
      this.offer(h.kind, h.request, h.body, h.stream, h.res, h.hints, true);
    } catch (error) {
      let admitted = false;
      for (const ex of this.live) if (ex.request === h.request) admitted = true;
      if (!admitted) {
        this.stats.fail(reasonOf('SY_ERR_INTERNAL'));
        this.requestTap?.ended(h.request, false, 0, this.nowMs());
      }
      this.internalError(h.res, error);
    }
  }

  /** A held request (counted accepted) that will not reach an instance: it fails with `error`. */
  private failHeld(res: ServerResponse, error: SwitchyardError, retryAfterMs: number | undefined): void {
    this.stats.fail(reasonOf(error.code));
    if (!res.headersSent && !res.writableEnded) sendError(res, error, retryAfterMs);
  }

  /** Sends the held requests of every model that has an instance in service now. */
  private releaseHeld(): void {
    if (this.modelBuffer === undefined || this.modelBuffer.size === 0) return;
    this.modelBuffer.releaseWhere((model) => this.servable(model));
  }

  /** Some healthy, undrained instance serves `model`. */
  private servable(model: string): boolean {
    const instances = this.instancesByModel.get(model);
    if (instances === undefined) return false;
    for (const i of instances) if (i.healthy && !i.draining) return true;
    return false;
  }

  // ---- admission ----

  /** Drains the admission queue into routing and re-arms the wake-up (re-entrant calls coalesce). */
  step(): void {
    if (this.admission.queued === 0 && this.pending.size === 0) return;
    this.driver.drain();
  }

  /** What the shared admission driver asks of the gateway: wall clock, live view, exchanges, a timer. */
  private admissionHost(): AdmissionHost {
    return {
      nowMs: () => this.nowMs(),
      view: (nowMs) => this.view.at(nowMs),
      send: (request) => {
        const ex = this.pending.get(request.id);
        this.pending.delete(request.id);
        // The client left while it was queued: it was counted then; admission hears it failed now.
        if (ex === undefined || ex.done) return false;
        this.leftQueue(ex);
        ex.released = true;
        ex.start();
        return true;
      },
      reject: (e) => {
        const ex = this.pending.get(e.request.id);
        this.pending.delete(e.request.id);
        if (ex === undefined || ex.done) return;
        ex.fail(new SwitchyardError(e.code, e.reason), e.retryAfterMs);
      },
      armWake: (atMs, nowMs) => {
        if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
        this.wakeTimer = setTimeout(
          () => {
            this.wakeTimer = undefined;
            this.driver.wake();
          },
          Math.max(1, atMs - nowMs),
        );
        return atMs;
      },
    };
  }

  // ---- ExchangeHost ----

  pick(ex: Exchange): Backend | SwitchyardError {
    // A P/D pair deciding at arrival picked the first decode instance already (pd-exchange.ts).
    return takeDecodeFirst(ex) ?? this.pickRole(ex, attemptRoleOf(ex), ex.tried);
  }

  prefillPolicy(): RoutingPolicy {
    const named = this.config.routing?.policies ?? {};
    return this.pd.prefillPolicy(this.policy, (name) =>
      createConfiguredPolicy(name, named, this.perfModels.context),
    );
  }

  roleInstances(role: InstanceRole): readonly InstanceView[] {
    return rolePool(this.view.at(this.nowMs()), role).instances;
  }

  /** Picks among the instances of `role` (undefined: any), avoiding `avoid` where another is eligible. */
  pickRole(
    ex: Exchange,
    role: InstanceRole | undefined,
    avoid: readonly string[],
  ): Backend | SwitchyardError {
    const now = this.nowMs();
    const view = rolePool(this.view.at(now), role);
    const request = ex.request;
    let candidates: ClusterView = view;
    if (avoid.length > 0) {
      // A retry goes elsewhere when anywhere else can take it; else the same instance again.
      const rest: InstanceView[] = view.instances.filter(
        (i) => !avoid.includes(i.id) && isEligible(i, request.model),
      );
      if (rest.length > 0) candidates = { nowMs: now, instances: rest };
    }
    if (ex.kind === 'embeddings') return this.pickLeastLoaded(candidates, request.model);
    // The prefill pool has its own instance of the active policy, or a pair policy picks both pools
    // (pd-exchange.ts); hooks of the proxied attempt go to the policy that picked it.
    const policy =
      role === 'prefill' ? this.prefillPolicy() : (ex.policy ?? this.pd.attemptPolicy(role, this.policy));
    if (role !== 'prefill') ex.policy = policy;
    let decision: ReturnType<RoutingPolicy['decide']>;
    try {
      decision = policy.decide(candidates, request, this.routingRng);
    } catch (error) {
      return new SwitchyardError(
        'SY_ERR_INTERNAL',
        `routing policy '${policy.name}' failed: ${(error as Error).message}`,
      );
    }
    if (decision.kind === 'reject') {
      return new SwitchyardError(decision.code, decision.reason, {
        retryAfterMs: decision.retryAfterMs ?? 1000,
      });
    }
    const backend = this.backendById.get(decision.instanceId);
    if (backend === undefined)
      return new SwitchyardError(
        'SY_ERR_INTERNAL',
        `routing policy picked unknown instance '${decision.instanceId}'`,
      );
    return backend;
  }

  private pickLeastLoaded(view: ClusterView, model: string): Backend | SwitchyardError {
    let best: InstanceView | undefined;
    for (const i of view.instances)
      if (isEligible(i, model) && (best === undefined || i.inFlight < best.inFlight)) best = i;
    if (best === undefined)
      return new SwitchyardError('SY_ERR_NO_INSTANCE', `no eligible instance for model '${model}'`, {
        retryAfterMs: 1000,
      });
    return this.backendById.get(best.id) as Backend;
  }

  backoffMs(attempt: number): number {
    return backoffMs(attempt, this.limits, this.jitterRng);
  }

  retrying(_ex: Exchange, _failure: AttemptFailure): void {
    this.stats.retries++;
  }

  logLine(line: string): void {
    this.log(line);
  }

  /** An instance was ejected or re-admitted (health checks, proxy connection errors, a stall). */
  private healthChanged(id: string, healthy: boolean, reason: string): void {
    const backend = this.backendById.get(id);
    if (backend === undefined) return;
    backend.instance.healthy = healthy;
    // Its last scrape may describe a killed process (a restart comes back empty): live-view.ts.
    if (!healthy) backend.instance.forgetSignals(this.nowMs());
    this.log(`switchyard: instance ${id} ${healthy ? 're-admitted' : 'ejected'}: ${reason}`);
    backend.health.ejectedReason = healthy ? undefined : reason;
    if (healthy) {
      backend.progress.readmitted(this.nowMs());
      // Its signals were forgotten at ejection: scrape now, not after the scraper's error backoff.
      this.feeds.readmitted?.(id);
      this.step();
      this.releaseHeld();
    }
  }

  /**
   * Declares stalled backends (src/gateway/stall.ts; the exchanges' checkTimers then re-routes their
   * requests not yet answered). A healthy one is ejected through its health state, as if it had
   * failed `failuresToEject` checks, so health checks re-admit it when it answers again.
   */
  private detectStalls(now: number): void {
    const inputs = this.backends.map((b) => {
      // Bytes mid-stream are evidence of life for the health checker too.
      if (b.progress.lastByteMs > 0) this.health.noteProgress(b.id, b.progress.lastByteMs);
      return {
        progress: b.progress,
        outstanding: b.instance.inFlight,
        healthy: b.instance.healthy,
        probeFailing: b.health.state.failureCount > 0,
      };
    });
    for (const i of findStalls(inputs, now, this.limits.stallAfterMs)) {
      const b = this.backends[i] as Backend;
      b.progress.stalled = true;
      const what = `no response byte for ${this.limits.stallAfterMs} ms (limits.stallAfterMs) with ${b.instance.inFlight} requests outstanding`;
      if (!b.instance.healthy) {
        this.log(
          `switchyard: instance ${b.id} stalled while ejected (${what}): re-routing requests not yet answered`,
        );
        continue;
      }
      const state = b.health.state;
      for (let k = 0; k < this.config.healthCheck.failuresToEject && state.healthy; k++) state.fail();
      this.healthChanged(
        b.id,
        false,
        `stalled: ${what} while other instances answered; re-routing requests not yet answered`,
      );
    }
  }

  connectFailed(backend: Backend, error: Error): void {
    this.health.reportConnectFailure(backend.health, `connection error while proxying: ${error.message}`);
  }

  attemptStarted(ex: Exchange, backend: Backend): void {
    const instance = backend.instance;
    instance.sent(attemptPrefillTokens(ex));
    ex.prefillPending = true;
    ex.policy?.onRouted?.(ex.request, instance.id, this.nowMs());
  }

  firstByte(ex: Exchange, backend: Backend): void {
    const now = this.nowMs();
    // Bytes from the backend: evidence it is alive, should its health check time out meanwhile.
    this.health.noteProgress(backend.id, now);
    if (ex.prefillPending) {
      ex.prefillPending = false;
      backend.instance.firstToken(attemptPrefillTokens(ex));
    }
    if (ex.stream) this.metrics.ttftSeconds.observe((now - ex.request.arrivalMs) / 1000);
    this.requestTap?.firstByte(ex.request, now);
    ex.policy?.onFirstToken?.(ex.request, backend.id, now);
  }

  attemptEnded(ex: Exchange, backend: Backend, ok: boolean, generatedTokens?: number): void {
    backend.instance.ended(attemptPrefillTokens(ex), ex.prefillPending);
    ex.prefillPending = false;
    const now = this.nowMs();
    if (ok) this.health.noteProgress(backend.id, now);
    if (ok) ex.policy?.onCompleted?.(ex.request, backend.id, now, generatedTokens);
    else ex.policy?.onFailed?.(ex.request, backend.id, now);
  }

  finished(ex: Exchange, outcome: ExchangeOutcome): void {
    const now = this.nowMs();
    this.live.delete(ex);
    // Still in admission's queue: drain will hand it back and hear onFailed then.
    if (ex.queued) this.leftQueue(ex);
    this.requestTap?.ended(ex.request, outcome.ok, outcome.ok ? outcome.outputTokens : 0, now);
    if (outcome.ok) {
      this.stats.completed++;
      this.metrics.e2eSeconds.observe((now - ex.request.arrivalMs) / 1000);
    } else {
      this.stats.fail(
        outcome.code === 'CLIENT_ABORT'
          ? 'client_abort'
          : outcome.code === 'UPSTREAM_4XX'
            ? 'upstream_4xx'
            : reasonOf(outcome.code),
      );
    }
    if (ex.released) {
      if (outcome.ok)
        this.admission.onCompleted(
          ex.request,
          {
            inputTokens: ex.request.inputTokens,
            // An embedding generates nothing: no output charge, nothing for the length estimate.
            completionTokens: ex.kind === 'embeddings' ? undefined : outcome.outputTokens,
          },
          now,
        );
      else this.admission.onFailed(ex.request, now);
    }
    this.settleDrain();
    this.step();
  }

  /**
   * Nothing left for a drain to wait for: no live request, no body still arriving (sent before the
   * drain began), none held for a starting engine.
   */
  private drained(): boolean {
    return this.live.size === 0 && this.reading.size === 0 && (this.modelBuffer?.size ?? 0) === 0;
  }

  /** Ends a drain in progress once nothing is left (a request finished or left the buffer). */
  private settleDrain(): void {
    if (this.drainWaiters.length === 0 || !this.drained()) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  // ---- shutdown ----

  drain(): Promise<void> {
    if (this.drainPromise !== undefined) return this.drainPromise;
    this.draining = true;
    this.batch?.stop();
    // A held request whose engine is starting may still be served within the drain; the others
    // could only wait for a start that will not come.
    const starting = this.scaleFromZeroStarting;
    this.modelBuffer?.failWhere(
      (model) => starting?.(model) !== true,
      new SwitchyardError(
        'SY_ERR_DRAINING',
        'gateway is shutting down and no engine is starting for the model',
        { param: 'model' },
      ),
      1000,
    );
    this.drainPromise = new Promise<void>((resolve) => {
      if (this.drained()) return resolve();
      const end = (): void => {
        clearTimeout(timer);
        this.endDrain = undefined;
        resolve();
      };
      const timer = setTimeout(end, this.config.drainTimeoutMs);
      this.endDrain = end;
      this.drainWaiters.push(end);
    });
    return this.drainPromise;
  }

  stopDraining(): void {
    void this.drain();
    this.endDrain?.();
  }

  drainStatus(): { inFlight: number; streaming: number; queued: number } {
    let streaming = 0;
    for (const ex of this.live) if (ex.stream && ex.committed) streaming++;
    // Held for a starting engine: waiting, as a queued request does.
    const held = this.modelBuffer?.size ?? 0;
    return { inFlight: this.live.size + held, streaming, queued: this.stats.queued + held };
  }

  close(): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    this.closePromise = (async () => {
      await this.drain();
      const leftover = new SwitchyardError(
        'SY_ERR_DRAINING',
        'gateway shut down before the request finished',
      );
      for (const ex of [...this.live]) ex.fail(leftover);
      // A body still arriving when the drain ended: answered, not cut with its connection.
      const unread = new SwitchyardError(
        'SY_ERR_DRAINING',
        'gateway shut down before the request body arrived',
      );
      for (const r of [...this.reading]) r.fail(unread);
      this.modelBuffer?.failAll(
        new SwitchyardError(
          'SY_ERR_DRAINING',
          `gateway shut down before the model's engine was ready (drainTimeoutMs ${this.config.drainTimeoutMs})`,
          { param: 'model' },
        ),
        1000,
      );
      if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
      if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
      this.health.stop();
      await new Promise<void>((resolve) => {
        this.server.close(() => resolve());
        this.server.closeIdleConnections();
        setTimeout(() => this.server.closeAllConnections(), 1000).unref();
      });
      await this.feeds.stop();
      await Promise.allSettled([
        ...this.backends.map((b) => b.pool.destroy()),
        this.healthAgent.destroy(),
        this.parsePool?.close(),
      ]);
    })();
    return this.closePromise;
  }
}
