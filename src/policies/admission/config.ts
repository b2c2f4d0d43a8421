/**
 * The admission controller's configuration: one strict zod schema (unknown keys fail at start-up)
 * with every default in one place. The gateway's and the twin's config files embed
 * `admissionConfigSchema` under their `admission:` key; `tenantConfigSchema` is the per-tenant part.
 */
import { z } from 'zod';
import { SwitchyardError } from '../../core/errors.ts';

/** Milliseconds in a day: OpenAI's Batch API completion window ("24h"). */
export const DAY_MS = 86_400_000;

/** One priority band. Requests whose priority is at least `minPriority` (and below the next band up) land here. */
export const bandConfigSchema = z.strictObject({
  name: z.string().min(1).max(64),
  minPriority: z.number().int(),
  /** Deadline for requests without an SLO: arrival + this (EDF order, and expiry while queued). */
  deadlineMs: z
    .number()
    .positive()
    .max(30 * DAY_MS),
  /** The bound on this band's queue. */
  queueDepthMax: z.number().int().min(1).max(1_000_000),
});
export type BandConfig = z.infer<typeof bandConfigSchema>;

/**
 * Defaults: an interactive band above the default online band, and the offline batch band below.
 * Online deadlines without an SLO are generous (a client that waited 30 s for a first token has most
 * likely given up); the batch band's is OpenAI's 24-hour completion window.
 */
export const DEFAULT_BANDS: readonly BandConfig[] = [
  { name: 'interactive', minPriority: 1, deadlineMs: 10_000, queueDepthMax: 1024 },
  { name: 'online', minPriority: 0, deadlineMs: 30_000, queueDepthMax: 4096 },
  { name: 'batch', minPriority: -1, deadlineMs: DAY_MS, queueDepthMax: 8192 },
];

/** Limits and priority of one tenant. Absent limits mean unlimited. */
export const tenantConfigSchema = z.strictObject({
  /** When set, replaces the priority on the tenant's requests (the operator's word beats the client's). */
  priority: z.number().int().optional(),
  /**
   * Requests per minute (token bucket: the sustained rate, and the burst when at least 1). A fraction
   * is a slower rate with a burst of one: 0.5 serves one request every two minutes.
   */
  rpm: z.number().positive().optional(),
  /** Tokens per minute, counting input + max output tokens at admission. */
  tpm: z.number().positive().optional(),
  /** VTC weight: a tenant of weight 2 is entitled to twice the service of weight 1. */
  weight: z.number().positive().max(1e6).optional(),
});
export type TenantConfig = z.infer<typeof tenantConfigSchema>;

/** When the cluster has room: the capacity gate. */
export const gateConfigSchema = z.strictObject({
  /** An instance with at least this many requests queued inside the engine is saturated (llm-d guard: 5). */
  waitingMax: z.number().int().min(1).default(5),
  /** An instance with at least this KV-cache usage is saturated. */
  kvUsageMax: z.number().gt(0).max(1).default(0.95),
  /** An instance with at least this many host-side in-flight requests is saturated (vLLM max_num_seqs default: 256). */
  inFlightMax: z.number().int().min(1).default(256),
  /** Offline work goes out only while the mean KV usage of eligible instances is below this. */
  spareKvUsageMax: z.number().gt(0).max(1).default(0.7),
  /** ... and while the engines' total waiting count is at most this (0: nothing queued anywhere). */
  spareWaitingMax: z.number().int().min(0).default(0),
  /** ... and while offline in-flight requests are below this times the number of eligible instances. */
  offlineInFlightPerInstanceMax: z.number().int().min(1).default(4),
  /**
   * Offline work also waits while the mean online+offline in-flight per eligible instance is at or
   * above this: a busy decode batch is not spare even when nothing queues, because every added
   * sequence lengthens every step (TPOT). Default: no limit; docs/results/batch.md measures 16 with a
   * 32-per-instance offline cap and priority engines as the setting that harvests the most.
   */
  spareInFlightPerInstanceMax: z.number().positive().default(Number.MAX_SAFE_INTEGER),
  /**
   * An instance whose engine signals are stale (no scrape within the host's bound, or an engine
   * without metrics) shows `waiting = 0`; judged by that alone the gate would pass up to inFlightMax
   * requests into its engine queue, where they are served first come first served and fairness is
   * lost. So a stale instance is also saturated at this many host-side in-flight requests: below any
   * engine's batch size (vLLM max_num_seqs 256; the sim's too), so what it holds runs rather than waits.
   */
  staleInFlightMax: z.number().int().min(1).default(32),
  /**
   * ... or when the prompt tokens it was sent and has not yet answered a first token for (the
   * host's `pendingPrefillTokens`, its own measure of the engine's prefill queue) reach this: two
   * steps of vLLM's default token budget (max_num_batched_tokens 8192).
   */
  stalePrefillTokensMax: z.number().int().min(1).default(16_384),
  /**
   * While requests are queued, `nextWakeMs` asks to be woken this often to re-read the view: engine
   * queues drain at every engine step, with no arrival or completion to tell the host.
   */
  recheckMs: z.number().positive().default(50),
});
export type GateConfig = z.infer<typeof gateConfigSchema>;

/** Load shedding and Retry-After. */
export const sheddingConfigSchema = z.strictObject({
  /** Time constant of the drain-rate average (busy time only). */
  drainRateWindowMs: z.number().positive().default(10_000),
  /** Reject an online request at once when the estimated queueing wait already passes its deadline. */
  shedOnEstimatedWait: z.boolean().default(true),
  retryAfterMinMs: z.number().int().min(0).default(1000),
  /** Also the answer when no drain rate is known yet. */
  retryAfterMaxMs: z.number().int().min(1).default(60_000),
});
export type SheddingConfig = z.infer<typeof sheddingConfigSchema>;

/** The whole admission config. Every field has a default; `{}` is a valid config. */
export const admissionConfigSchema = z
  .strictObject({
    /** Priority bands, in any order; the one with the lowest `minPriority` is the offline batch band. */
    bands: z
      .array(bandConfigSchema)
      .min(2)
      .max(16)
      .default(() => DEFAULT_BANDS.map((b) => ({ ...b }))),
    /** VTC cost weights: counter += inputWeight x input tokens + outputWeight x output tokens. */
    vtc: z
      .strictObject({
        inputWeight: z.number().min(0).default(1),
        outputWeight: z.number().min(0).default(2),
      })
      .prefault({}),
    gate: gateConfigSchema.prefault({}),
    shedding: sheddingConfigSchema.prefault({}),
    /** Named tenants. */
    tenants: z.record(z.string().min(1), tenantConfigSchema).default(() => ({})),
    /** Limits for tenants not named under `tenants`. */
    defaultTenant: tenantConfigSchema.prefault({}),
    /** The bound on tenants with state (counters, buckets); idle ones are forgotten to make room. */
    tenantsMax: z.number().int().min(1).max(10_000_000).default(10_000),
    /** The bound on requests the controller tracks as dispatched and not yet completed or failed. */
    inFlightTrackedMax: z.number().int().min(1).default(1_000_000),
  })
  .superRefine((config, ctx) => {
    const names = new Set<string>();
    const priorities = new Set<number>();
    for (const [i, band] of config.bands.entries()) {
      if (names.has(band.name))
        ctx.addIssue({
          code: 'custom',
          path: ['bands', i, 'name'],
          message: `duplicate band '${band.name}'`,
        });
      if (priorities.has(band.minPriority))
        ctx.addIssue({
          code: 'custom',
          path: ['bands', i, 'minPriority'],
          message: `duplicate minPriority ${band.minPriority}`,
        });
      names.add(band.name);
      priorities.add(band.minPriority);
    }
    if (config.shedding.retryAfterMinMs > config.shedding.retryAfterMaxMs)
      ctx.addIssue({
        code: 'custom',
        path: ['shedding', 'retryAfterMinMs'],
        message: 'must not exceed retryAfterMaxMs',
      });
  });

/** A validated admission config with every default filled in. */
export type AdmissionConfig = z.infer<typeof admissionConfigSchema>;
/** What a config file may say: any subset of the fields. */
export type AdmissionConfigInput = z.input<typeof admissionConfigSchema>;

/** Validates a config; a failure is SY_ERR_INVALID_CONFIG naming every bad path. */
export function parseAdmissionConfig(value: unknown): AdmissionConfig {
  const result = admissionConfigSchema.safeParse(value ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    return `${path}: ${issue.message}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `admission config: ${problems.join('; ')}`, {
    problems,
  });
}
