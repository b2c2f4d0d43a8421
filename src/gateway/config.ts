/**
 * The gateway's configuration: one strict zod schema (unknown keys fail and name the valid ones),
 * loaded from YAML with `${VAR}` / `${VAR:-default}` substitution in string values, every default in
 * one place. docs/gateway.md is the reference.
 */

import { z } from 'zod';
import { kvEventsRefusal, policyTypeOf, tokenizerConfigSchema } from '../adapters/tokenizer/config.ts';
import { readYamlFile } from '../adapters/yaml-file.ts';
import { EVICTION_POLICIES } from '../control/serverless/live-eviction.ts';
import { SwitchyardError } from '../core/errors.ts';
import { MEMORY_RESERVE_MIB_MAX } from '../core/standby-reserve.ts';
import { findGpuId, resolveGpuId } from '../model/gpus.ts';
import { findModelId, modelIds, resolveModelId } from '../model/models.ts';
import { perfModelFor } from '../model/perf.ts';
import { admissionConfigSchema, tenantConfigSchema } from '../policies/admission/config.ts';
import {
  checkRoutingPolicy,
  type PerfModelRef,
  perfModelContext,
  policyNeedsPerfModel,
  routingConfigSchema,
} from '../policies/routing/registry.ts';
import type { PolicyContext } from '../policies/routing/types.ts';
import { batchConfigSchema } from './batch/config.ts';
import { corsConfigSchema } from './cors.ts';
import { ENGINE_PRIORITY_ORDERS } from './engine-priority.ts';
import {
  KEEP_ALIVE_MS_MAX,
  SCALE_FROM_ZERO_BUFFER_MAX,
  SCALE_FROM_ZERO_HELD_MAX,
  SCALE_FROM_ZERO_WAIT_MS,
} from './model-buffer.ts';
import { pdConfigProblems, pdGatewayConfigSchema, pdPairConfigProblems } from './pd/pd-config.ts';

/** Engine kinds a backend may be. They differ in defaults (metrics, health path), not in protocol. */
export const BACKEND_TYPES = ['vllm', 'sglang', 'llamacpp', 'openai', 'sim', 'llama'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];
/** The phases a backend serves: whole requests, or one side of a disaggregated prefill/decode pair. */
export const BACKEND_ROLES = ['both', 'prefill', 'decode'] as const;
/** The engines' own prefill/decode protocols the gateway drives (src/gateway/pd/). */
export const PD_PROTOCOLS = ['vllm', 'sglang'] as const;
export type PdProtocol = (typeof PD_PROTOCOLS)[number];

const httpUrl = z
  .string()
  .refine((s) => /^https?:\/\/[^/\s]+(\/[^\s]*)?$/.test(s), { message: 'expected an http(s) URL' })
  .transform((s) => s.replace(/\/+$/, ''));

const path = z.string().startsWith('/').max(1024);

/**
 * Why a backend's URL (trailing slashes already dropped) is refused, or undefined. A URL ending in
 * `/v1` is the OpenAI client's base URL (LiteLLM's `api_base`, the openai SDK's `base_url`), copied
 * where the gateway wants the server's root as vLLM production-stack's `--static-backends` does: the
 * gateway appends `/v1/...` and the health path itself, so it would call `/v1/v1/...` and
 * `/v1/health` (404s and "no healthy instance"). Refused rather than rewritten, so the URL the
 * gateway calls is always the one written (docs/gateway.md, Backends).
 */
export function backendUrlProblem(id: string, url: string): string | undefined {
  if (!/\/v1$/i.test(url)) return undefined;
  return `backend '${id}': url '${url}' ends in /v1 (an OpenAI client's base URL); write the server's root instead, url: ${url.slice(0, -3)} (the gateway appends /v1/... and the health path itself)`;
}

/** One engine behind the gateway. */
export const backendConfigSchema = z
  .strictObject({
    /** Unique instance id (policies and the admin API name instances by it). */
    id: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'expected 1-64 characters of [A-Za-z0-9._:-]'),
    type: z.enum(BACKEND_TYPES),
    /** Base URL: the gateway appends /v1/... (a trailing slash is dropped). */
    url: httpUrl,
    /** Model ids the engine serves (what requests name). */
    models: z.array(z.string().min(1).max(512)).min(1).max(256),
    /**
     * The phases this engine serves (docs/disaggregation.md). `both` (the default): whole requests.
     * `prefill` / `decode`: one side of a disaggregated pair; the model's requests then run the
     * engines' own P/D protocol (`pdProtocol`) through a prefill and a decode instance.
     */
    role: z.enum(BACKEND_ROLES).default('both'),
    /** With role prefill or decode: whose P/D protocol the engine speaks (vLLM's NIXL proxy flow, SGLang's bootstrap rooms). */
    pdProtocol: z.enum(PD_PROTOCOLS).optional(),
    /** SGLang prefill backends: the port of the engine's bootstrap server (SGLang's --disaggregation-bootstrap-port). Default: the URL's port. */
    bootstrapPort: z.number().int().min(1).max(65_535).optional(),
    /**
     * GPU class from the catalogue: KV sizing, and policies that predict time (goodput, mooncake,
     * preble). Vendor names are read as the catalogue id they mean (`NVIDIA H100 80GB HBM3`: h100;
     * src/model/gpus.ts resolveGpuId); a name that means none is kept, and refused only where used.
     */
    gpu: z
      .string()
      .min(1)
      .default('h100')
      .transform((gpu) => findGpuId(gpu) ?? gpu),
    tp: z.number().int().min(1).max(64).default(1),
    /**
     * The catalogue model (src/model/models.ts) whose performance this engine has, with `gpu` and `tp`,
     * for policies that predict time. Absent: the first of `models` that is a catalogue id or a
     * Hugging Face name of a catalogue model (src/model/models.ts resolveModelId, any case), e.g.
     * meta-llama/Llama-3.1-8B-Instruct. Such a name here is read as the catalogue id it means.
     */
    perfModel: z
      .string()
      .min(1)
      .max(128)
      .transform((model) => findModelId(model) ?? model)
      .optional(),
    /** Prometheus metrics path; null: do not scrape. Default: /metrics, except type openai (null). */
    metricsPath: path.nullable().optional(),
    /** Health-check path. Default: /health, except type openai (/v1/models). */
    healthPath: path.optional(),
    /** vLLM-format KV events over ZMQ (tcp://host:port). */
    kvEvents: z
      .string()
      .regex(/^tcp:\/\/[^\s]+:\d+$/, 'expected tcp://host:port')
      .optional(),
    /** ZMQ topic to subscribe to ('' = all). */
    kvEventsTopic: z.string().max(256).optional(),
    /** The served model's tokenizer and the engine's block hashing: precise kv-events routing for non-built-in engines. */
    tokenizer: tokenizerConfigSchema.optional(),
    /** Sent upstream as `Authorization: Bearer <apiKey>` (hosted OpenAI-compatible APIs). */
    apiKey: z.string().min(1).optional(),
    /** Keep-alive connections the gateway may hold open to this backend. */
    connectionsMax: z.number().int().min(1).max(4096).default(256),
    /**
     * How the engine's scheduler reads a body's `priority` (engine-priority.ts): `lower-first`
     * (vLLM with --scheduling-policy priority; the built-in engines), `higher-first` (SGLang with
     * --enable-priority-scheduling), `none` (no priority scheduling: the body goes as sent). The
     * gateway sends each request's own priority in that order. Default: `lower-first` for sim and
     * llama, `none` for the rest.
     */
    enginePriority: z.enum(ENGINE_PRIORITY_ORDERS).optional(),
  })
  .superRefine((b, ctx) => {
    const problem = backendUrlProblem(b.id, b.url);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['url'], message: problem });
  });
export type BackendConfig = z.infer<typeof backendConfigSchema>;

/** A tenant: an API key, its name and the admission limits of `tenantConfigSchema`. */
export const gatewayTenantSchema = tenantConfigSchema.extend({
  key: z.string().min(1).max(1024),
  name: z.string().min(1).max(128),
});
export type GatewayTenant = z.infer<typeof gatewayTenantSchema>;

/** Bounds on every request. */
export const limitsConfigSchema = z.strictObject({
  /** Request bodies larger than this get 413. */
  bodyBytesMax: z
    .number()
    .int()
    .min(1024)
    .max(1 << 30)
    .default(8 * 1024 * 1024),
  /** A request not finished after this long ends with SY_ERR_TIMEOUT (504, or an SSE error event). */
  requestTimeoutMs: z.number().int().min(1).max(86_400_000).default(600_000),
  /** An upstream that sent no body byte this long after the request went out is given up (and retried). */
  firstByteTimeoutMs: z.number().int().min(1).max(86_400_000).default(120_000),
  /** Further instances tried before the first byte reaches the client (connect error, 5xx, 429). */
  retries: z.number().int().min(0).max(16).default(2),
  /** Backoff before retry k (0-based): min(max, base * 2^k), times a jitter factor in [0.5, 1). */
  retryBackoffBaseMs: z.number().min(0).max(60_000).default(20),
  retryBackoffMaxMs: z.number().min(0).max(600_000).default(1000),
  // ---- stalled engines (src/gateway/stall.ts) ----
  /**
   * A committed response (a started stream, a JSON body partly sent) that gets no upstream byte this
   * long ends with SY_ERR_TIMEOUT: an SSE error event and `[DONE]`, or a cut body. Without it a
   * frozen engine held a stream until requestTimeoutMs (600 s).
   */
  streamIdleTimeoutMs: z.number().int().min(1).max(86_400_000).default(30_000),
  /**
   * A backend with requests outstanding that delivered no response byte this long, while another
   * backend did, is declared stalled: ejected (health checks re-admit it) and its requests not yet
   * answered are re-routed at once instead of at firstByteTimeoutMs. Keep it above the longest
   * legitimate wait for a first byte on an otherwise idle engine (a very long prefill).
   */
  stallAfterMs: z.number().int().min(1).max(86_400_000).default(10_000),
  // ---- request intake (slow, many, large or deep bodies) ----
  /** A body not fully received this long after its request head ends with 408 and a closed connection. */
  bodyReadTimeoutMs: z.number().int().min(1).max(86_400_000).default(30_000),
  /**
   * Open connections one client address may hold; one more is answered 429 and closed unread. 4096
   * leaves room for `vllm bench serve` run as it defaults (1000 prompts sent at once, no
   * --max-concurrency: one connection each, from one host; vLLM sets no such bound) four times over,
   * and for a proxy in front.
   */
  connectionsPerClientMax: z.number().int().min(1).max(1_000_000).default(4096),
  /**
   * Open client connections, all addresses together; one more is answered 429 and closed unread, as
   * past connectionsPerClientMax (three loopback addresses held 12,000 idle sockets without it).
   * Absent: CONNECTIONS_MAX_PER_CLIENT_MULTIPLE (4) times connectionsPerClientMax, 16,384 by default
   * (`connectionsMaxOf`): an idle connection costs the gateway 5-9 KiB of RSS, so about 80-150 MiB. Keep it below the process's file-descriptor limit (`ulimit -n`), which
   * must also hold the gateway's upstream connections.
   */
  connectionsMax: z.number().int().min(1).max(10_000_000).optional(),
  /** JSON nesting depth a body may have; a deeper one gets 400 before it is parsed. */
  jsonDepthMax: z.number().int().min(2).max(100_000).default(64),
  /** Bytes of bodies being read at once, all clients together; one past it is read, dropped and answered 503. */
  readingBytesMax: z
    .number()
    .int()
    .min(1024)
    .max(1 << 30)
    .default(64 * 1024 * 1024),
  /**
   * Bodies of this many bytes or more are decoded and parsed on a worker thread (parse-pool.ts), not
   * on the event loop: a 7.9 MB body cost 84-187 ms of it, so a few a second held every health
   * check behind them. 0 parses every body on the event loop. Default 1 MiB: below it the hand-off
   * costs about what it saves. Gateways with a configured tokenizer parse on the event loop.
   */
  offThreadParseBytes: z
    .number()
    .int()
    .min(0)
    .max(1 << 30)
    .default(1024 * 1024),
  // ---- admission: what queued requests may hold and claim ----
  /**
   * Bytes (body + prefix chain) all requests waiting in the admission queue may hold together; one
   * that would pass it and cannot go out at once is refused 503 SY_ERR_QUEUE_BYTES_FULL with
   * Retry-After. Without it the default queue depths times bodyBytesMax allowed about 100 GiB.
   */
  queuedBytesMax: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 40)
    .default(256 * 1024 * 1024),
  /** The same bound per tenant (429 SY_ERR_TENANT_QUEUE_BYTES_FULL): one tenant cannot take it all. */
  tenantQueuedBytesMax: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 40)
    .default(64 * 1024 * 1024),
  /**
   * The highest `priority` a request body may claim when no tenants are configured (bodies are
   * clamped to [0, this]; keyed tenants take their configured priority or at most 0). Default 0: a
   * client cannot raise its own priority, and no body reaches the batch band (docs/gateway.md).
   */
  clientPriorityMax: z.number().int().min(0).max(1_000_000).default(0),
  // ---- scale from zero (src/gateway/model-buffer.ts): models `switchyard serve` may run at zero instances ----
  /**
   * Requests one such model holds while it has no instance; one more is refused 429
   * SY_ERR_SCALE_BUFFER_FULL with Retry-After. Default SCALE_FROM_ZERO_BUFFER_MAX (4096: a whole
   * 120 s wait's arrivals at 34 req/s).
   */
  scaleFromZeroBufferMax: z.number().int().min(1).max(1_000_000).default(SCALE_FROM_ZERO_BUFFER_MAX),
  /**
   * Requests all such models together hold; one more is refused the same way (429
   * SY_ERR_SCALE_BUFFER_FULL). Default SCALE_FROM_ZERO_HELD_MAX (16384: four full model buffers);
   * held bodies also count against queuedBytesMax.
   */
  scaleFromZeroHeldMax: z.number().int().min(1).max(1_000_000).default(SCALE_FROM_ZERO_HELD_MAX),
  /**
   * Longest wait of a held request for the model's first instance; past it 503
   * SY_ERR_COLD_START_TIMEOUT. Default SCALE_FROM_ZERO_WAIT_MS (120 s: a large model's cold start).
   */
  scaleFromZeroWaitMs: z.number().int().min(1).max(86_400_000).default(SCALE_FROM_ZERO_WAIT_MS),
  /** The largest `keep_alive` a request body may set (Ollama's field); larger is 400. Default 1 h. */
  keepAliveMsMax: z.number().int().min(0).max(604_800_000).default(KEEP_ALIVE_MS_MAX),
  // ---- the Responses API's store (src/gateway/response-store.ts): in memory, per tenant, LRU ----
  /**
   * Responses (`POST /v1/responses` with `store` not false) the gateway keeps, all tenants together,
   * for `previous_response_id` and `GET`/`DELETE /v1/responses/{id}`; past it the least recently used
   * goes. 0 stores none (`previous_response_id` is then always 400). Default 10,000.
   */
  responseStoreMax: z.number().int().min(0).max(10_000_000).default(10_000),
  /**
   * Bytes (request body + answer JSON) the stored responses hold together; past it the least
   * recently used go, and one larger than this (or than a JSON answer's 16 MiB capture) is not stored.
   * Default 256 MiB.
   */
  responseStoreBytesMax: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 40)
    .default(256 * 1024 * 1024),
  /** Age past which a stored response is gone (the gateway's clock); 0: none. Default 0 (count and bytes bound it). */
  responseStoreTtlMs: z.number().int().min(0).max(31_536_000_000).default(0),
});
export type LimitsConfig = z.infer<typeof limitsConfigSchema>;

/** limits.connectionsMax's default, in clients at the per-address bound (connectionsPerClientMax). */
export const CONNECTIONS_MAX_PER_CLIENT_MULTIPLE = 4;

/** limits.connectionsMax, or its default: CONNECTIONS_MAX_PER_CLIENT_MULTIPLE x connectionsPerClientMax. */
export function connectionsMaxOf(
  limits: Pick<LimitsConfig, 'connectionsMax' | 'connectionsPerClientMax'>,
): number {
  return limits.connectionsMax ?? CONNECTIONS_MAX_PER_CLIENT_MULTIPLE * limits.connectionsPerClientMax;
}

export const healthCheckConfigSchema = z.strictObject({
  intervalMs: z.number().int().min(10).max(600_000).default(1000),
  timeoutMs: z.number().int().min(10).max(600_000).default(1000),
  /** Consecutive failures (checks or proxy connection errors) that eject an instance. */
  failuresToEject: z.number().int().min(1).max(1000).default(3),
  /** Consecutive successful checks that re-admit an ejected instance. */
  successesToReadmit: z.number().int().min(1).max(1000).default(2),
});
export type HealthCheckConfig = z.infer<typeof healthCheckConfigSchema>;

/** The whole gateway config. `{}` is valid (the CLI then starts local engines). */
export const gatewayConfigSchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65_535).default(8080),
    backends: z.array(backendConfigSchema).max(4096).default([]),
    /** Routing policy; absent: the host picks a prefix-aware default (kv-events with KV events, else prefix-affinity). */
    routing: routingConfigSchema.optional(),
    admission: admissionConfigSchema.optional(),
    /** The Batch API (/v1/files, /v1/batches); absent: those routes answer 404. See docs/gateway.md. */
    batch: batchConfigSchema.optional(),
    /**
     * P/D pair selection (src/gateway/pd/pd-config.ts): `{pairPolicy, params}` picks the prefill and
     * the decode instance of disaggregated requests. Absent: the active routing policy picks both.
     */
    pd: pdGatewayConfigSchema.optional(),
    tenants: z.array(gatewayTenantSchema).max(100_000).default([]),
    /** Enables /admin/*; requests need `Authorization: Bearer <adminKey>`. */
    adminKey: z.string().min(8).max(1024).optional(),
    /**
     * CORS for browser clients (src/gateway/cors.ts), vLLM's defaults: every origin, method and
     * header, no credentials; `switchyard serve --allowed-origins` and its siblings override it.
     */
    cors: corsConfigSchema.prefault({}),
    /** Latency targets every request carries (admission deadlines, SLO-aware policies). */
    slo: z.strictObject({ ttftMs: z.number().positive(), tpotMs: z.number().positive() }).optional(),
    limits: limitsConfigSchema.prefault({}),
    /** Engine metrics are scraped this often. */
    scrapeIntervalMs: z.number().int().min(10).max(60_000).default(75),
    /** Scraped signals older than this count as stale (default: 3 scrape intervals). */
    signalStaleAfterMs: z.number().int().min(10).max(600_000).optional(),
    healthCheck: healthCheckConfigSchema.prefault({}),
    /** On SIGTERM / close(), in-flight requests get this long to finish. */
    drainTimeoutMs: z.number().int().min(0).max(3_600_000).default(30_000),
    /** Seed of the routing and jitter generators. */
    seed: z.number().int().default(1),
    /**
     * `switchyard serve` with local engines: a control loop sizing their pool (docs/autoscaling.md,
     * "Live"); `--autoscaler`, `--min-instances`, `--max-instances` and `--autoscaler-interval-ms`
     * override the fields. Absent: no autoscaling. The gateway itself does not read it.
     */
    autoscaler: z
      .strictObject({
        /** A registered autoscaler (src/control/autoscalers/registry.ts). */
        name: z.string().min(1).max(64),
        /** Its parameters, checked against its schema at start-up. */
        params: z.record(z.string(), z.unknown()).default({}),
        /**
         * Default 1. 0: each model's engines stop after its keep-alive with no request, and its next
         * request is held until one is up again (docs/serverless.md, "Scale to zero (live)").
         */
        minInstances: z.number().int().min(0).max(256).optional(),
        /**
         * With minInstances 0: how long a model's engines stay up after its last request (a request's
         * `keep_alive` overrides it, up to limits.keepAliveMsMax). Default 300,000 (Ollama's 5 min).
         */
        keepAliveMs: z.number().int().min(0).max(604_800_000).optional(),
        /** Default: the minimum, or 4 sim / 1 llama engines if larger. */
        maxInstances: z.number().int().min(1).max(256).optional(),
        /** How often the loop runs; default 2000 (Knative's tick). */
        intervalMs: z.number().int().min(10).max(3_600_000).optional(),
        /**
         * With minInstances 0: at most this many models have an engine up (starting or ready) at once
         * on this node; a request for another one evicts an idle model (`eviction`) or waits for one to
         * turn idle (docs/serverless.md, "A cap on loaded models"). Default: no cap.
         */
        maxLoadedModels: z.number().int().min(1).max(256).optional(),
        /** Which idle model the cap stops: 'lru' (default) or 'cost-aware' (start-up x request rate). */
        eviction: z.enum(EVICTION_POLICIES).optional(),
        /**
         * Warm starts of llama engines at zero (docs/serverless.md, "Warm starts in serve");
         * `--standby-engines`, `--warm-cache-mb` and `--prewarm` override them. standbyEngines: standby
         * engines a cold start is handed to (default 1 with minInstances 0, else 0); warmCacheMb:
         * stopped models' GGUFs kept in the page cache (default a quarter of MemAvailable, at most
         * 16 GiB); prewarm: start a model ahead of a forecast request (default false);
         * standbyReserveMib (`--standby-reserve-mib`): MiB each standby engine touches while it waits
         * and frees just before its context is created (default 0: none; it stays resident while the
         * engine waits), or `auto`: the largest KV cache of the models served, plus 64 MiB
         * (src/core/standby-reserve.ts).
         */
        standbyEngines: z.number().int().min(0).max(8).optional(),
        warmCacheMb: z.number().int().min(0).max(1_048_576).optional(),
        standbyReserveMib: z
          .union([z.number().int().min(0).max(MEMORY_RESERVE_MIB_MAX), z.literal('auto')])
          .optional(),
        prewarm: z.boolean().optional(),
        /**
         * Sleep mode (docs/serverless.md, "Sleep mode (live)"): `true` with the default bounds, or
         * the bounds themselves; `--sleep`, `--max-sleepers`, `--max-sleepers-per-model` and
         * `--sleep-max-ms` override them. Absent or `false`: idle engines stop. `boot` (default
         * false, as the twin's bootIntoSleep: over 8 seeds it cost the p99 after 10 min): `true` (or
         * `--boot-sleep`) boots never-started models' engines straight into sleep at start-up, so a
         * first request is a wake. `retarget` (default false, as the twin's `sleep.retarget`): `true`
         * (or `--retarget`) lets a model whose requests wait for a fresh start take an asleep engine of
         * another model of the same shape, its weights swapped in place (docs/serverless.md).
         */
        sleep: z
          .union([
            z.boolean(),
            z.strictObject({
              maxSleepers: z.number().int().min(1).max(256).optional(),
              maxSleepersPerModel: z.number().int().min(1).max(256).optional(),
              sleepMaxMs: z.number().int().min(1).max(604_800_000).optional(),
              boot: z.boolean().optional(),
              retarget: z.boolean().optional(),
            }),
          ])
          .optional(),
      })
      .optional(),
  })
  .superRefine((config, ctx) => {
    const ids = new Set<string>();
    for (const [i, b] of config.backends.entries()) {
      if (ids.has(b.id))
        ctx.addIssue({
          code: 'custom',
          path: ['backends', i, 'id'],
          message: `duplicate backend id '${b.id}'`,
        });
      ids.add(b.id);
    }
    for (const problem of pdConfigProblems(config.backends))
      ctx.addIssue({ code: 'custom', path: ['backends', ...problem.path], message: problem.message });
    for (const problem of pdPairConfigProblems(config.pd, config.backends))
      ctx.addIssue({ code: 'custom', path: ['pd', ...problem.path], message: problem.message });
    const keys = new Set<string>();
    const names = new Set<string>();
    for (const [i, t] of config.tenants.entries()) {
      if (keys.has(t.key))
        ctx.addIssue({ code: 'custom', path: ['tenants', i, 'key'], message: 'duplicate tenant key' });
      if (names.has(t.name))
        ctx.addIssue({
          code: 'custom',
          path: ['tenants', i, 'name'],
          message: `duplicate tenant name '${t.name}'`,
        });
      if (config.admission !== undefined && Object.hasOwn(config.admission.tenants, t.name))
        ctx.addIssue({
          code: 'custom',
          path: ['tenants', i, 'name'],
          message: `tenant '${t.name}' is also configured under admission.tenants; configure it in one place`,
        });
      keys.add(t.key);
      names.add(t.name);
    }
    const policy = config.routing ?? {
      policy: config.backends.some((b) => b.kvEvents !== undefined) ? 'kv-events' : '',
      policies: {},
    };
    if (policyTypeOf(policy.policy, policy.policies) === 'kv-events')
      for (const [i, b] of config.backends.entries()) {
        const refusal = kvEventsRefusal(b);
        if (refusal !== undefined)
          ctx.addIssue({ code: 'custom', path: ['backends', i, 'tokenizer'], message: refusal });
      }
    // Every named policy is checked now, not when PUT /admin/policy first switches to it.
    for (const [name, policy] of Object.entries(config.routing?.policies ?? {})) {
      try {
        checkRoutingPolicy(policy.type, policy.params, name);
      } catch (error) {
        if (!(error instanceof SwitchyardError)) throw error;
        ctx.addIssue({ code: 'custom', path: ['routing', 'policies', name], message: error.message });
      }
    }
    if (config.limits.retryBackoffBaseMs > config.limits.retryBackoffMaxMs)
      ctx.addIssue({
        code: 'custom',
        path: ['limits', 'retryBackoffBaseMs'],
        message: 'must not exceed retryBackoffMaxMs',
      });
    if (config.limits.readingBytesMax < config.limits.bodyBytesMax)
      ctx.addIssue({
        code: 'custom',
        path: ['limits', 'readingBytesMax'],
        message: 'must be at least bodyBytesMax (else a body of the allowed size could never be read)',
      });
  });

/** A validated gateway config with every default filled in. */
export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
/** What a config file or a caller may give. */
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;

/**
 * The catalogue model a backend's performance model is: its `perfModel`, else the first of its
 * `models` that names a catalogue model: its id or a Hugging Face name of the same architecture, in
 * any case (src/model/models.ts resolveModelId). Undefined when none is.
 */
export function perfModelIdOf(b: Pick<BackendConfig, 'models' | 'perfModel'>): string | undefined {
  if (b.perfModel !== undefined) return findModelId(b.perfModel) ?? b.perfModel;
  for (const served of b.models) {
    const id = findModelId(served);
    if (id !== undefined) return id;
  }
  return undefined;
}

/** Why a backend has no usable performance model (`where` names the field to set), or undefined. */
function perfModelProblem(b: BackendConfig): { field: string; message: string } | undefined {
  const model = perfModelIdOf(b);
  if (model === undefined)
    return {
      field: 'perfModel',
      message: `serves ${b.models.map((m) => `'${m}'`).join(', ')}, none a catalogue model; set perfModel to one of ${modelIds().join(', ')}`,
    };
  try {
    resolveModelId(model);
  } catch (error) {
    return { field: 'perfModel', message: (error as Error).message };
  }
  try {
    resolveGpuId(b.gpu);
  } catch (error) {
    return { field: 'gpu', message: (error as Error).message };
  }
  try {
    perfModelFor(b.gpu, model, b.tp);
  } catch (error) {
    return { field: 'tp', message: (error as Error).message };
  }
  return undefined;
}

/** The gateway's performance models: the policies' context, and the check that every backend has one. */
export interface GatewayPerfModels {
  /** The context policies get: each instance's performance model by its backend's mapping. */
  readonly context: PolicyContext;
  /**
   * Fails with SY_ERR_INVALID_CONFIG, naming each backend and the field to set, when one of
   * `policies` (config names or types) predicts time and a backend has no usable performance model.
   */
  require(policies: readonly string[]): void;
  /**
   * Maps a backend added at run time (the local actuator's engines). One without a usable
   * performance model is refused with SY_ERR_INVALID_CONFIG while a policy that predicts time is
   * active or configured (`policies`), and otherwise left unmapped like a configured one.
   */
  add(b: BackendConfig, policies: readonly string[]): void;
}

/** Builds the gateway's performance-model mapping from its backends (see `perfModel`). */
export function gatewayPerfModels(config: GatewayConfig): GatewayPerfModels {
  const refs = new Map<string, PerfModelRef>();
  const problems: string[] = [];
  for (const [i, b] of config.backends.entries()) {
    const problem = perfModelProblem(b);
    if (problem === undefined)
      refs.set(b.id, { gpu: findGpuId(b.gpu) ?? b.gpu, model: perfModelIdOf(b) as string, tp: b.tp });
    else problems.push(`backends.${i}.${problem.field}: backend '${b.id}' ${problem.message}`);
  }
  const named = config.routing?.policies ?? {};
  return {
    context: perfModelContext((instance) => {
      const ref = refs.get(instance.id);
      if (ref === undefined)
        throw new SwitchyardError(
          'SY_ERR_INVALID_CONFIG',
          `instance '${instance.id}' has no performance model (backends[].perfModel)`,
          { param: 'perfModel' },
        );
      return ref;
    }),
    require(policies) {
      if (problems.length === 0) return;
      const needing = policies.filter((p) => policyNeedsPerfModel(p, named));
      if (needing.length === 0) return;
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `gateway config: routing policy ${[...new Set(needing)].map((p) => `'${p}'`).join(', ')} predicts time and needs a performance model per backend: ${problems.join('; ')}`,
        { param: 'perfModel', problems },
      );
    },
    add(b, policies) {
      const problem = perfModelProblem(b);
      if (problem === undefined) {
        refs.set(b.id, { gpu: findGpuId(b.gpu) ?? b.gpu, model: perfModelIdOf(b) as string, tp: b.tp });
        return;
      }
      const needing = policies.filter((p) => policyNeedsPerfModel(p, named));
      if (needing.length > 0)
        throw new SwitchyardError(
          'SY_ERR_INVALID_CONFIG',
          `backend '${b.id}': ${problem.field}: ${problem.message}; routing policy '${needing[0]}' predicts time and needs it`,
          { param: 'perfModel' },
        );
    },
  };
}

/** A backend's metrics path after type defaults (null: no scraping). */
export function metricsPathOf(b: BackendConfig): string | null {
  if (b.metricsPath !== undefined) return b.metricsPath;
  return b.type === 'openai' ? null : '/metrics';
}

/** A backend's health path after type defaults. */
export function healthPathOf(b: BackendConfig): string {
  return b.healthPath ?? (b.type === 'openai' ? '/v1/models' : '/health');
}

/** The admission config the gateway runs: `admission:` plus the tenants' limits by name. */
export function admissionInput(config: GatewayConfig): Record<string, unknown> {
  const base = config.admission ?? admissionConfigSchema.parse({});
  const tenants: Record<string, unknown> = { ...base.tenants };
  for (const t of config.tenants) {
    const { key: _key, name, ...limits } = t;
    tenants[name] = limits;
  }
  return { ...base, tenants };
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string of a parsed document. A variable that is
 * unset and has no default fails naming it and where it was used.
 */
export function substituteEnv(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
  at = '',
): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback as string;
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `gateway config: ${at || '(top level)'}: environment variable ${name} is not set`,
        { param: at, variable: name },
      );
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, at ? `${at}.${i}` : `${i}`));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env, at ? `${at}.${k}` : k);
    return out;
  }
  return value;
}

/**
 * Validates a config object; a failure is SY_ERR_INVALID_CONFIG naming every bad path (and the valid
 * keys). Its strings are taken as they are: `${VAR}` substitution belongs to a config file's text
 * (`loadGatewayConfig`), not to flag values merged in later (an `--admin-key` may contain `${`) nor
 * to a config already loaded (substituting twice would rewrite a variable's value that contains
 * `${`). `_env` is not read: callers from before substitution moved to `loadGatewayConfig` pass one.
 */
export function parseGatewayConfig(
  value: unknown,
  _env?: Readonly<Record<string, string | undefined>>,
): GatewayConfig {
  const result = gatewayConfigSchema.safeParse(value ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '(top level)';
    let hint = '';
    if (issue.code === 'unrecognized_keys') {
      const valid = keysAt(gatewayConfigSchema, issue.path);
      if (valid.length > 0) hint = `; valid: ${valid.join(', ')}`;
    }
    return `${where}: ${issue.message}${hint}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `gateway config: ${problems.join('; ')}`, {
    param: 'config',
    problems,
  });
}

/**
 * Reads and validates a YAML (or JSON) config file, replacing `${VAR}` and `${VAR:-default}` in its
 * string values from `env` (once: a variable's value is not substituted again).
 */
export function loadGatewayConfig(
  file: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): GatewayConfig {
  const doc = readYamlFile(file, `gateway config '${file}'`, {
    unreadableCode: 'SY_ERR_INVALID_CONFIG',
    param: 'config',
  });
  return parseGatewayConfig(substituteEnv(doc ?? {}, env));
}

interface ZodDefLike {
  type?: string;
  shape?: Record<string, unknown>;
  element?: unknown;
  innerType?: unknown;
  in?: unknown;
  valueType?: unknown;
}

/** The object keys a schema accepts at `path` (walking arrays, records, defaults and optionals). */
function keysAt(schema: unknown, path: readonly PropertyKey[]): string[] {
  let node: unknown = schema;
  let i = 0;
  for (let guard = 0; guard < 64 && node !== undefined; guard++) {
    const def = (node as { _zod?: { def?: ZodDefLike } })._zod?.def;
    if (def === undefined) return [];
    switch (def.type) {
      case 'optional':
      case 'default':
      case 'prefault':
      case 'nullable':
        node = def.innerType;
        continue;
      case 'pipe':
        node = def.in;
        continue;
      case 'array':
        if (i >= path.length) return [];
        node = def.element;
        i++;
        continue;
      case 'record':
        if (i >= path.length) return [];
        node = def.valueType;
        i++;
        continue;
      case 'object': {
        const shape = def.shape ?? {};
        if (i >= path.length) return Object.keys(shape).sort();
        node = shape[String(path[i])];
        i++;
        continue;
      }
      default:
        return [];
    }
  }
  return [];
}
