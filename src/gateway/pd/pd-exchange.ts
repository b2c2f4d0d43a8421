/**
 * Prefill/decode disaggregation in the live gateway: a request for a model served by prefill and
 * decode backends runs the engines' own protocol (bodies in pd-bodies.ts, docs/disaggregation.md).
 *
 * A `PdExchange` is an `Exchange` (proxy.ts) whose decode attempt is the proxied one: streaming,
 * timeouts, retries before the first byte, client aborts and the gateway's counters are the
 * exchange's. Before each decode attempt it runs the prefill leg its protocol asks for:
 *
 * - vLLM: the prefill leg first (max_tokens 1, `kv_transfer_params` asking for a remote decode),
 *   then the decode attempt with the `kv_transfer_params` the prefill answered. A failed prefill leg
 *   is retried once on another prefill instance (PREFILL_RETRIES_MAX), then the request ends with
 *   SY_ERR_PD_PREFILL_FAILED.
 * - SGLang: both legs at once with the prefill's bootstrap address and a fresh room; the decode's
 *   answer is the answer. A prefill leg that fails while its decode attempt has sent nothing aborts
 *   that attempt at once (the decode engine would wait for KV that never comes until its own wait
 *   bound) and goes to the exchange's retry path: a new pair avoiding that prefill instance, or
 *   SY_ERR_PD_PREFILL_FAILED when limits.retries are spent. A decode already answering keeps going.
 *
 * A decode attempt that fails before its first byte is retried (limits.retries) as a whole new pair:
 * a fresh prefill leg, a decode instance not yet tried. Each pick, prefill or decode, goes through
 * the active routing policy over that role's pool only (`PdHost.pickRole`); policies never see the
 * protocol. The prefill leg counts in its instance's host accounting (in flight, pending prefill
 * tokens). The prefill pool has its own instance of the active policy (`PdRuntime.prefillPolicy`):
 * its own state, so a round robin cycles each pool on its own and a prefix index learns where each
 * prompt's KV was computed. It hears the prefill leg's hooks (onRouted, then onFirstToken and
 * onCompleted with one token, or onFailed); the active policy hears the decode attempt's.
 *
 * With a pair policy (config `pd.pairPolicy`, src/policies/disagg/pair.ts) its prefill side picks
 * prefill instances and its decode side decode instances instead, whatever the active policy is; a
 * side's rejection ends the request with that side's code (429 and Retry-After for an SLO refusal).
 * A pair deciding at arrival (`decodeAt: 'arrival'`, Mooncake's Conductor) picks the first pair's
 * decode instance before its prefill leg, so its refusal comes before any prefill work; that
 * instance counts the request in flight from then and gets the first decode attempt
 * (`takeDecodeFirst`). A retry is a whole new pair in the usual order.
 *
 * With a conditional rule (config `pd.conditional`, pd-conditional.ts) every pair starts as the
 * twin's does: the decode pick first (held in flight as above), then the rule over the gateway's
 * view. Local: the client's request goes to that decode instance as it came (no prefill leg, no
 * kv_transfer_params; the instance counts the prompt as pending prefill). Remote: vLLM's flow, the
 * decode attempt going to the instance picked first. A retry is a new pair: a new decode pick
 * (avoiding those tried) and a new decision.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { SwitchyardError } from '../../core/errors.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { Request } from '../../core/request.ts';
import type { ClusterView, InstanceRole, InstanceView } from '../../core/view.ts';
import { ruleNeedsPerfModel } from '../../policies/disagg/conditional.ts';
import { createPairPolicy, type PairPolicy, pairNeedsPerfModel } from '../../policies/disagg/pair.ts';
import { isEligible } from '../../policies/routing/eligible.ts';
import type { PolicyContext, RoutingPolicy } from '../../policies/routing/types.ts';
import type { LiveInstance } from '../live-view.ts';
import {
  type Attempt,
  type Backend,
  type EngineRefusal,
  Exchange,
  type ExchangeHost,
  type ExchangeKind,
  type ExchangeOutcome,
  relayEngineRefusal,
  upstreamBody,
  upstreamHeaders,
} from '../proxy.ts';
import { type AttemptFailure, isConnectError } from '../retry.ts';
import {
  BootstrapRooms,
  kvTransferParamsOf,
  sglangBody,
  vllmDecodeBody,
  vllmPrefillBody,
} from './pd-bodies.ts';
import { PdConditional, type PdConditionalStats } from './pd-conditional.ts';
import { conditionalSettingsOf, type PdBackendFields, type PdGatewayConfig, pdModels } from './pd-config.ts';

/** Further prefill instances tried for one pair after its prefill leg failed. */
export const PREFILL_RETRIES_MAX = 1;
/** Bytes of a prefill's answer kept (a one-token answer with its kv_transfer_params is a few KB). */
export const PREFILL_ANSWER_BYTES_MAX = 1024 * 1024;
/** Bytes of a failed prefill leg's answer kept to relay (an engine's error body), as proxy.ts keeps. */
export const PREFILL_ERROR_BYTES_MAX = 64 * 1024;

/** What a PdExchange needs from the gateway beyond an exchange's needs. */
export interface PdHost extends ExchangeHost {
  /**
   * Picks an instance of `role` for `ex` through the active routing policy, avoiding the ids in
   * `avoid` when another instance of the role is eligible.
   */
  pickRole(ex: Exchange, role: InstanceRole, avoid: readonly string[]): Backend | SwitchyardError;
  /** The policy that picks prefill instances (PdRuntime.prefillPolicy of the active one). */
  prefillPolicy(): RoutingPolicy;
  /** The instances of `role` in the live view, settled now (a conditional rule reads the prefill pool). */
  roleInstances(role: InstanceRole): readonly InstanceView[];
}

/**
 * A conditional pair's decision at `decode`, then the request's hold there (counted in flight until
 * its decode attempt takes over): whether it prefills remotely. The rule reads the decode instance's
 * signals before the hold, as the twin decides before `decode.sent`: with signals not yet scraped,
 * the host accounting would otherwise count the request among the decodes it is deciding for.
 * `prefill` gives the prefill pool (its eligible instances), settled now. Counted in the rule's
 * counters only when `count` (an exchange's first decision: a retry decides again, uncounted).
 */
export function decideThenHold(
  rule: PdConditional,
  request: Request,
  decode: LiveInstance,
  prefill: () => readonly InstanceView[],
  count: boolean,
): boolean {
  const remote = rule.decide(request, decode, prefill(), count);
  decode.sent(0);
  return remote;
}

/** Counters of the P/D flows, for /stats. */
export interface PdStats {
  /** Prefill legs sent. */
  prefills: number;
  /** Prefill legs that failed (connection, status, timeout), the client's own aborts excepted. */
  prefillFailures: number;
  /**
   * Prefill legs sent again after one failed: vLLM's on another instance, SGLang's as a new pair
   * (its decode attempt aborted and retried).
   */
  prefillRetries: number;
  /** vLLM prefill answers without `kv_transfer_params`: the decode then prefilled locally. */
  kvParamsMissing: number;
}

/**
 * How one prefill leg ended; a failed leg with an engine's answer keeps its head and body (bounded
 * by ERROR_BODY_BYTES_MAX) to relay a refusal.
 */
type Leg =
  | { readonly ok: true; readonly answer: Buffer }
  | {
      readonly ok: false;
      readonly status: number;
      readonly detail: string;
      readonly answer?: EngineRefusal;
    };
/** A prefill leg that failed. */
type FailedLeg = Extract<Leg, { ok: false }>;

/** The gateway's P/D state: which models disaggregate, with what protocol; the room source; counters. */
export class PdRuntime {
  readonly stats: PdStats = { prefills: 0, prefillFailures: 0, prefillRetries: 0, kvParamsMissing: 0 };
  readonly rooms: BootstrapRooms;
  private readonly models: Map<string, 'vllm' | 'sglang'>;
  /** The prefill pool's instance of the active policy, and the active policy it was made for. */
  private prefill: { readonly of: RoutingPolicy; readonly policy: RoutingPolicy } | undefined;
  /** The configured pair policy (config `pd:`); undefined: the active policy picks both pools. */
  private pair: PairPolicy | undefined;
  /** The configured conditional rule (config `pd.conditional`); undefined: every request disaggregates. */
  private rule: PdConditional | undefined;

  constructor(backends: readonly PdBackendFields[], seed: number) {
    this.models = pdModels(backends);
    this.rooms = new BootstrapRooms(seed);
  }

  /**
   * Builds the config's pair policy (config.ts has checked its name and parameters), its sides
   * predicting time with the gateway's performance models, and its conditional rule. Undefined
   * `config`: neither. `instances` are the view's instances at start-up: the `switchyard` rule
   * refuses to start when a decode instance has no performance model, as a policy predicting time
   * does.
   */
  usePairPolicy(
    config: PdGatewayConfig | undefined,
    perfModels: { readonly context: PolicyContext; require(policies: readonly string[]): void },
    instances: readonly InstanceView[] = [],
  ): void {
    if (config === undefined) return;
    if (config.pairPolicy !== undefined) {
      // Mooncake's sides predict time: refuse to start, as for the routing policy, without perf models.
      if (pairNeedsPerfModel(config.pairPolicy)) perfModels.require(['mooncake']);
      this.pair = createPairPolicy(config.pairPolicy, config.params, perfModels.context);
    }
    if (config.conditional === undefined) return;
    if (ruleNeedsPerfModel(config.conditional))
      requirePerfModels(config.conditional, perfModels.context, instances);
    const { link, chunkTokens } = conditionalSettingsOf(config);
    this.rule = new PdConditional(config.conditional, link, chunkTokens, perfModels.context);
  }

  /** The conditional rule, or undefined without one. */
  get conditional(): PdConditional | undefined {
    return this.rule;
  }

  /** Whether the configured pair policy picks the decode instance before the prefill leg. */
  get decodeAtArrival(): boolean {
    return this.pair?.decodeAt === 'arrival';
  }

  /** The pair policy's name, or undefined without one. */
  get pairPolicyName(): string | undefined {
    return this.pair?.name;
  }

  /**
   * The policy that picks an attempt of `role` when the active one is `active`: the pair's decode
   * side for a decode attempt when a pair policy is configured, else `active`.
   */
  attemptPolicy(role: InstanceRole | undefined, active: RoutingPolicy): RoutingPolicy {
    return role === 'decode' && this.pair !== undefined ? this.pair.decode : active;
  }

  /** The P/D protocol `model`'s requests run; undefined when it does not disaggregate. */
  protocolOf(model: string): 'vllm' | 'sglang' | undefined {
    return this.models.get(model);
  }

  /** Whether any model disaggregates. */
  get enabled(): boolean {
    return this.models.size > 0;
  }

  /** A PdExchange for a completion of a disaggregated model; undefined for anything else. */
  exchange(
    host: PdHost,
    kind: ExchangeKind,
    request: Request,
    body: Buffer,
    stream: boolean,
    res: ServerResponse,
  ): Exchange | undefined {
    if (kind === 'embeddings') return undefined;
    const protocol = this.models.get(request.model);
    if (protocol === undefined) return undefined;
    return new PdExchange(host, this, protocol, kind, request, body, stream, res);
  }

  /**
   * The prefill pool's own instance of `active` (same name, same parameters), made by `create` and
   * remade when the active policy changes. Its own state is the point: one round-robin counter
   * shared by the prefill and the decode pick would pair the same instances forever, and a prefix
   * index learns prefill placements apart from decode ones.
   */
  prefillPolicy(active: RoutingPolicy, create: (name: string) => RoutingPolicy): RoutingPolicy {
    if (this.pair !== undefined) return this.pair.prefill;
    if (this.prefill?.of !== active) this.prefill = { of: active, policy: create(active.name) };
    return this.prefill.policy;
  }

  /**
   * KV events reach the prefill pool's policy and the pair policy's sides too (the gateway hands
   * them to the active one).
   */
  kvEvents(instanceId: string, events: readonly KvEvent[], nowMs: number): void {
    const policies = [this.prefill?.policy, this.pair?.prefill, this.pair?.decode];
    for (const policy of policies) {
      if (policy?.onKvEvent === undefined) continue;
      for (const event of events) policy.onKvEvent(instanceId, event, nowMs);
    }
  }

  /**
   * Registers the P/D counters on the gateway's Prometheus registry (when anything disaggregates):
   * `switchyard_gateway_pd_{prefill_legs,prefill_failures,prefill_retries,kv_params_missing}_total`,
   * and with a conditional rule `switchyard_gateway_pd_{local,remote}_prefills_total`.
   */
  registerMetrics(registry: Registry): void {
    if (!this.enabled) return;
    const stats = this.stats;
    const rule = this.rule?.stats;
    const conditional: [string, string, () => number][] =
      rule === undefined
        ? []
        : [
            [
              'local_prefills_total',
              'P/D requests a decode instance prefilled itself (pd.conditional)',
              () => rule.localPrefills,
            ],
            [
              'remote_prefills_total',
              'P/D requests prefilled on the prefill pool (pd.conditional)',
              () => rule.remotePrefills,
            ],
          ];
    const counters: [string, string, () => number][] = [
      ...conditional,
      ['prefill_legs_total', 'P/D prefill legs sent', () => stats.prefills],
      ['prefill_failures_total', 'P/D prefill legs that failed', () => stats.prefillFailures],
      ['prefill_retries_total', 'P/D prefill legs sent again after one failed', () => stats.prefillRetries],
      [
        'kv_params_missing_total',
        'vLLM prefill answers without kv_transfer_params',
        () => stats.kvParamsMissing,
      ],
    ];
    for (const [name, help, value] of counters)
      new Counter({
        name: `switchyard_gateway_pd_${name}`,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(value());
        },
      });
  }

  /**
   * For /stats: undefined when nothing disaggregates; `pairPolicy` names the pair policy, if any;
   * `conditional` the rule, with `localPrefills` and `remotePrefills`, if any.
   */
  statsJson():
    | (PdStats & { pairPolicy?: string; conditional?: string } & Partial<PdConditionalStats>)
    | undefined {
    if (!this.enabled) return undefined;
    return {
      ...this.stats,
      ...(this.pair === undefined ? {} : { pairPolicy: this.pair.name }),
      ...(this.rule === undefined ? {} : { conditional: this.rule.rule, ...this.rule.stats }),
    };
  }
}

/**
 * The role an exchange's proxied attempt is picked from: a P/D exchange's is a decode instance, a
 * completion's a `both` instance; embeddings may go to any instance (undefined).
 */
export function attemptRoleOf(ex: Exchange): InstanceRole | undefined {
  if (ex instanceof PdExchange) return 'decode';
  return ex.kind === 'embeddings' ? undefined : 'both';
}

/**
 * The decode backend a pair deciding at arrival picked for `ex`'s first decode attempt, handed over
 * once (the host's pick then uses it instead of deciding again); undefined otherwise.
 */
export function takeDecodeFirst(ex: Exchange): Backend | undefined {
  return ex instanceof PdExchange ? ex.takeDecodeFirst() : undefined;
}

/**
 * The prompt tokens an exchange's proxied attempt leaves for its instance to prefill (host
 * accounting's pending prefill): none for a P/D decode attempt, whose prompt KV comes from the
 * prefill instance; the whole prompt otherwise (a conditional rule's local decode included).
 */
export function attemptPrefillTokens(ex: Exchange): number {
  return ex instanceof PdExchange && !ex.local ? 0 : ex.request.inputTokens;
}

/**
 * The view restricted to the instances of `role` (undefined: all). Without any prefill or decode
 * instance it is the view itself (no allocation on the common path).
 */
export function rolePool(view: ClusterView, role: InstanceRole | undefined): ClusterView {
  if (role === undefined) return view;
  let mixed = false;
  for (const i of view.instances)
    if (i.role !== 'both') {
      mixed = true;
      break;
    }
  if (!mixed && role === 'both') return view;
  const instances: InstanceView[] = view.instances.filter((i) => i.role === role);
  return { nowMs: view.nowMs, instances };
}

/** A request of a disaggregated model: the prefill leg(s), then the proxied decode attempt. */
export class PdExchange extends Exchange {
  /** The body the current decode attempt sends (the client's, with the protocol's fields). */
  declare body: Buffer;
  /** The client's body as received. */
  readonly clientBody: Buffer;
  /** Prefill instances whose leg failed for this request: later pairs avoid them. */
  readonly prefillFailed: string[] = [];
  /** A vLLM prefill leg is in progress (no decode attempt yet). */
  private prefilling = false;
  /** How this exchange's last failed prefill leg failed (undefined: none failed). */
  private prefillFailure: string | undefined;
  /** SGLang: the next pair retries one whose prefill leg failed (counted in prefillRetries). */
  private prefillRetry = false;
  /** The prefill legs still open, with their backends: aborted when the exchange ends or one stalls. */
  private readonly legs = new Map<AbortController, Backend>();
  /**
   * The decode backend picked at arrival (a pair deciding at arrival), held in its host accounting
   * until the first decode attempt takes it or the exchange ends.
   */
  private decodeFirst: Backend | undefined;
  /** The arrival pick has been made (once per exchange: retries pick in the usual order). */
  private decodePickedAtArrival = false;
  /** The conditional rule kept the current pair local: the decode instance prefills it itself. */
  local = false;
  /** The rule has decided for this exchange once (and counted it: the counters count requests). */
  private decided = false;

  constructor(
    readonly pdHost: PdHost,
    readonly runtime: PdRuntime,
    readonly protocol: 'vllm' | 'sglang',
    kind: ExchangeKind,
    request: Request,
    body: Buffer,
    stream: boolean,
    res: ServerResponse,
  ) {
    super(pdHost, kind, request, body, stream, res);
    // The protocols' bodies are rebuilt with JSON.parse (pd-bodies.ts), which refuses a UTF-8 BOM
    // that the gateway's own parse accepted (request-build.ts jsonText): it goes no further.
    this.clientBody =
      body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? body.subarray(3) : body;
  }

  /** vLLM's pair, whose failure to build a body ends the request (500) instead of going unhandled. */
  private startVllmPair(): void {
    this.vllmPair().catch((error: unknown) => {
      this.fail(new SwitchyardError('SY_ERR_INTERNAL', `internal error: ${(error as Error).message}`));
    });
  }

  /** A new pair: the protocol's prefill leg, then the decode attempt (Exchange.next picks and sends it). */
  override next(): void {
    if (this.done || this.prefilling) return;
    const rule = this.runtime.conditional;
    if (rule !== undefined) {
      this.conditionalPair(rule);
      return;
    }
    if (!this.decodePickedAtArrival && this.runtime.decodeAtArrival && !this.pickDecodeFirst()) return;
    if (this.protocol === 'vllm') this.startVllmPair();
    else this.sglangPair();
  }

  /**
   * A pair under a conditional rule (vLLM's flow; config.ts refuses a rule over SGLang): the decode
   * pick, then the rule. A retry whose decode pick is refused ends as any retry does (Exchange.next
   * picks once more and reports the attempts' last failure).
   */
  private conditionalPair(rule: PdConditional): void {
    const retry = this.attempts > 0;
    const picked = this.pickDecode(retry);
    if (picked === undefined) {
      if (retry) super.next();
      return;
    }
    const model = this.request.model;
    const prefill = () => this.pdHost.roleInstances('prefill').filter((i) => isEligible(i, model));
    this.local = !decideThenHold(rule, this.request, picked.instance, prefill, !this.decided);
    this.decided = true;
    this.decodeFirst = picked;
    if (!this.local) {
      this.startVllmPair();
      return;
    }
    // No pair: the decode instance serves the client's request as a colocated one would.
    this.body = this.clientBody;
    this.upstreamRequestId = this.clientRequestId;
    super.next();
  }

  override finish(outcome: ExchangeOutcome, answer: (() => void) | undefined): void {
    this.abortLegs();
    this.takeDecodeFirst();
    super.finish(outcome, answer);
  }

  /**
   * The pair's decode side decides first; false when it refused (the request then ends with its
   * error, e.g. 429 and Retry-After for an SLO refusal, before any prefill leg, unless `quiet`). The
   * chosen instance counts the request in flight from now, as the twin's does.
   */
  private pickDecodeFirst(quiet = false): boolean {
    const picked = this.pickDecode(quiet);
    if (picked === undefined) return false;
    picked.instance.sent(0);
    this.decodeFirst = picked;
    return true;
  }

  /** The pair's decode pick, not yet held; undefined when refused (failing unless `quiet`). */
  private pickDecode(quiet: boolean): Backend | undefined {
    this.decodePickedAtArrival = true;
    const picked = this.pdHost.pickRole(this, 'decode', this.tried);
    if (picked instanceof SwitchyardError) {
      if (!quiet) this.fail(picked, retryAfterOf(picked));
      return undefined;
    }
    return picked;
  }

  /** Hands over the decode backend picked at arrival (once), releasing its hold; undefined if none. */
  takeDecodeFirst(): Backend | undefined {
    const backend = this.decodeFirst;
    if (backend === undefined) return undefined;
    this.decodeFirst = undefined;
    // The attempt's own accounting (attemptStarted) takes over from the hold.
    backend.instance.ended(0, false);
    return backend;
  }

  override finishOk(outputTokens: number, tail: Buffer | undefined): void {
    this.abortLegs();
    super.finishOk(outputTokens, tail);
  }

  private abortLegs(): void {
    for (const c of this.legs.keys()) c.abort(new Error('the request ended'));
    this.legs.clear();
  }

  /**
   * A prefill leg whose instance the sweep declared stalled (src/gateway/stall.ts) is a request it has
   * not answered: the leg is aborted now, as an attempt there is re-routed, so the request goes on to
   * another prefill instance (vLLM: prefillWithRetry; SGLang: a new pair) or fails, instead of
   * waiting out limits.firstByteTimeoutMs on a frozen engine.
   */
  override checkTimers(now: number): void {
    for (const [controller, backend] of this.legs)
      if (backend.progress.stalled)
        controller.abort(
          new Error(
            `stalled (no response byte for ${this.host.limits.stallAfterMs} ms, limits.stallAfterMs)`,
          ),
        );
    super.checkTimers(now);
  }

  /**
   * vLLM: prefill (retried once elsewhere), then decode with the answer's kv_transfer_params. Both
   * legs carry one fresh `X-Request-Id`, as vLLM's proxy sends (a uuid4 per request, the client's
   * own header not used): a vLLM before its NIXL connector's version 2 names the KV notification
   * after the decode's own request id, which must be the prefill's; a client's id may repeat (a
   * clash inside the engine) and a retried pair must not reuse the id of one still being aborted.
   */
  private async vllmPair(): Promise<void> {
    this.upstreamRequestId = randomUUID();
    this.prefilling = true;
    let answer: Buffer | undefined;
    try {
      answer = await this.prefillWithRetry(vllmPrefillBody(this.clientBody));
    } finally {
      this.prefilling = false;
    }
    if (answer === undefined || this.done) return;
    let params: Record<string, unknown> | undefined;
    try {
      params = kvTransferParamsOf(answer);
    } catch {
      params = undefined;
    }
    // As vLLM's proxy does: without parameters the decode instance prefills the prompt itself.
    if (params === undefined) this.runtime.stats.kvParamsMissing++;
    this.body = params === undefined ? this.clientBody : vllmDecodeBody(this.clientBody, params);
    super.next();
  }

  /** Runs a prefill leg, once more on another instance if it fails; undefined when the exchange ended. */
  private async prefillWithRetry(body: Buffer): Promise<Buffer | undefined> {
    let last = '';
    for (let k = 0; k <= PREFILL_RETRIES_MAX; k++) {
      const picked = this.pdHost.pickRole(this, 'prefill', this.prefillFailed);
      if (picked instanceof SwitchyardError) {
        if (k === 0) this.fail(prefillPickError(picked), retryAfterOf(picked));
        else this.failPrefill(last);
        return undefined;
      }
      if (k > 0) this.runtime.stats.prefillRetries++;
      const leg = await this.prefillLeg(picked, body, true);
      if (this.done) return undefined;
      if (leg.ok) return leg.answer;
      this.prefillFailed.push(picked.id);
      last = leg.detail;
      if (this.refused(leg)) return undefined;
    }
    this.failPrefill(last);
    return undefined;
  }

  private failPrefill(detail: string): void {
    this.fail(
      new SwitchyardError(
        'SY_ERR_PD_PREFILL_FAILED',
        `the prefill leg failed on ${this.prefillFailed.join(', ')}: ${detail}`,
      ),
    );
  }

  /** SGLang: both legs at once, sharing the prefill's bootstrap address and a fresh room. */
  private sglangPair(): void {
    const picked = this.pdHost.pickRole(this, 'prefill', this.prefillFailed);
    if (picked instanceof SwitchyardError) {
      // No prefill instance left after failed legs (e.g. the failed one ejected): as vLLM's flow ends.
      if (this.prefillFailure !== undefined) this.failPrefill(this.prefillFailure);
      else this.fail(prefillPickError(picked), retryAfterOf(picked));
      return;
    }
    if (this.prefillRetry) {
      this.prefillRetry = false;
      this.runtime.stats.prefillRetries++;
    }
    const url = new URL(picked.config.url);
    const port = picked.config.bootstrapPort ?? Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    // SGLang takes a bare address: an IPv6 host loses the URL's brackets.
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.body = sglangBody(this.clientBody, host, port, this.runtime.rooms.take());
    const leg = this.prefillLeg(picked, this.body, false);
    super.next();
    // The decode attempt this leg feeds (undefined: none went out, or it already failed).
    const attempt = this.attempt;
    void leg.then((result) => {
      if (!result.ok) this.sglangLegFailed(picked, result, attempt);
    });
  }

  /**
   * An SGLang prefill leg failed: its decode attempt cannot get the KV. Unless that attempt has sent
   * a byte (it got the KV first) or is no longer the current one, it is aborted now, which cancels
   * the upstream request so the decode engine stops waiting and frees the room, rather than left
   * until the decode engine's own KV wait bound (SGLang's is minutes). The exchange then retries as
   * for any failed attempt (limits.retries, backoff): a new pair avoiding this prefill instance, or
   * SY_ERR_PD_PREFILL_FAILED when none are left. A 4xx is the engine's verdict on the request, as in
   * vLLM's flow.
   */
  private sglangLegFailed(prefill: Backend, leg: FailedLeg, attempt: Attempt | undefined): void {
    if (this.done) return;
    if (!this.prefillFailed.includes(prefill.id)) this.prefillFailed.push(prefill.id);
    this.prefillFailure = leg.detail;
    if (attempt === undefined || this.attempt !== attempt || attempt.sawFirstByte) return;
    if (this.refused(leg)) return;
    // prefillRetry is set by attemptFailed, only if this really ends the attempt.
    attempt.abandon(
      'the prefill leg failed',
      `the prefill leg failed on ${this.prefillFailed.join(', ')}: ${leg.detail}`,
      'pd-prefill',
    );
  }

  /**
   * Ends the exchange with a prefill leg's refusal when its status is the engine's verdict on the
   * request (prefillRefused), relaying the engine's answer as a proxied attempt's 4xx is relayed;
   * false when another try may succeed.
   */
  private refused(leg: FailedLeg): boolean {
    if (leg.answer === undefined || !prefillRefused(leg.status)) return false;
    this.attempt?.cancel(new Error('the prefill leg was refused'));
    relayEngineRefusal(this, leg.answer);
    return true;
  }

  /**
   * A failed attempt: one ended by a failed SGLang prefill leg makes the next pair a prefill retry.
   * Set here, not before `abandon`, which does nothing to an attempt already stopped.
   */
  override attemptFailed(attempt: Attempt, failure: AttemptFailure, detail: string, status: number): void {
    if (failure === 'pd-prefill' && this.attempt === attempt && !this.done) this.prefillRetry = true;
    super.attemptFailed(attempt, failure, detail, status);
  }

  /**
   * One prefill leg to `backend`, bounded by limits.firstByteTimeoutMs; its answer is kept (`keep`,
   * bounded by PREFILL_ANSWER_BYTES_MAX) or drained. Counted in the instance's host accounting.
   */
  private async prefillLeg(backend: Backend, body: Buffer, keep: boolean): Promise<Leg> {
    const policy = this.pdHost.prefillPolicy();
    const controller = new AbortController();
    this.legs.set(controller, backend);
    const timeoutMs = this.host.limits.firstByteTimeoutMs;
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer within ${timeoutMs} ms (limits.firstByteTimeoutMs)`)),
      timeoutMs,
    );
    const tokens = this.request.inputTokens;
    // The leg is outstanding work on the instance for stall detection, as an attempt is (proxy.ts).
    backend.progress.started(this.host.nowMs(), backend.instance.inFlight);
    backend.instance.sent(tokens);
    this.runtime.stats.prefills++;
    policy.onRouted?.(this.request, backend.id, this.host.nowMs());
    let leg: Leg;
    try {
      const response = await backend.pool.request({
        path: backend.paths[this.kind],
        method: 'POST',
        headers: upstreamHeaders(backend, this.upstreamRequestId),
        body: upstreamBody(this.kind, body, backend, this.request.priority),
        signal: controller.signal,
      });
      backend.progress.byte(this.host.coarseNowMs);
      const status = response.statusCode;
      const ok = status >= 200 && status < 300;
      const answer = ok
        ? await readAnswer(response.body, keep ? PREFILL_ANSWER_BYTES_MAX : 0)
        : await readAnswer(response.body, PREFILL_ERROR_BYTES_MAX, true);
      leg = ok
        ? { ok: true, answer }
        : {
            ok: false,
            status,
            detail: `${backend.id} answered ${status}${errorMessageOf(answer)}`,
            answer: { status, headers: response.headers, body: answer },
          };
    } catch (error) {
      if (isConnectError(error)) this.host.connectFailed(backend, error as Error);
      const reason = controller.signal.aborted ? (controller.signal.reason as Error) : (error as Error);
      leg = { ok: false, status: 0, detail: `${backend.id}: ${reason.message}` };
    } finally {
      clearTimeout(timer);
      this.legs.delete(controller);
    }
    if (leg.ok) backend.instance.firstToken(tokens);
    backend.instance.ended(tokens, !leg.ok);
    if (!leg.ok && !this.done) {
      this.runtime.stats.prefillFailures++;
      policy.onFailed?.(this.request, backend.id, this.host.nowMs());
    } else if (leg.ok) {
      policy.onFirstToken?.(this.request, backend.id, this.host.nowMs());
      policy.onCompleted?.(this.request, backend.id, this.host.nowMs(), 1);
    }
    return leg;
  }
}

/**
 * Whether a prefill leg's status is the engine's verdict on the request itself (another instance
 * would say the same): a 4xx, relayed to the client as the engine sent it. Not one when another try
 * may succeed (no answer, 5xx, 429, and 408: the engine timed the request out).
 */
function prefillRefused(status: number): boolean {
  return status >= 400 && status < 500 && status !== 429 && status !== 408;
}

/** A refused prefill pick, saying it was the prefill pool that had no instance. */
function prefillPickError(error: SwitchyardError): SwitchyardError {
  return new SwitchyardError(
    error.code,
    `prefill pool: ${error.message}`,
    error.details === undefined ? undefined : { ...error.details },
  );
}

/** The Retry-After a pick's refusal carries. */
function retryAfterOf(error: SwitchyardError): number | undefined {
  const ms = error.details?.['retryAfterMs'];
  return typeof ms === 'number' ? ms : undefined;
}

/**
 * Reads a response body, keeping at most `keepBytes` (0: drains it); past that it throws, or with
 * `truncate` keeps the first `keepBytes` and drains the rest.
 */
async function readAnswer(body: Readable, keepBytes: number, truncate = false): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let kept = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (kept + chunk.length > keepBytes) {
      if (keepBytes === 0) continue;
      if (truncate) {
        chunks.push(chunk.subarray(0, keepBytes - kept));
        kept = keepBytes;
        keepBytes = 0;
        continue;
      }
      body.destroy();
      throw new Error(`prefill answer larger than ${keepBytes} bytes`);
    }
    chunks.push(chunk);
    kept += chunk.length;
  }
  return Buffer.concat(chunks, kept);
}

/** ": <message>" from an OpenAI-style error body, or '' (for log and error details). */
function errorMessageOf(body: Buffer): string {
  try {
    const message = (JSON.parse(body.toString('utf8')) as { error?: { message?: unknown } }).error?.message;
    return typeof message === 'string' ? `: ${message.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}

/**
 * Throws SY_ERR_INVALID_CONFIG, naming each, when a decode instance has no performance model: the
 * `switchyard` rule predicts prefill, decode-step and transfer times with it.
 */
function requirePerfModels(rule: string, context: PolicyContext, instances: readonly InstanceView[]): void {
  const problems: string[] = [];
  for (const instance of instances) {
    if (instance.role !== 'decode') continue;
    try {
      context.perfModel(instance);
    } catch (error) {
      problems.push(`backend '${instance.id}': ${(error as Error).message}`);
    }
  }
  if (problems.length > 0)
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `gateway config: pd.conditional '${rule}' predicts time and needs a performance model per decode backend (backends[].perfModel, gpu, tp): ${problems.join('; ')}`,
      { param: 'perfModel', problems },
    );
}
