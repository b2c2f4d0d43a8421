/**
 * Conditional disaggregation in the live gateway (config `pd.conditional`): for each pair, once the
 * decode instance is picked, the same pure rule the twin runs (src/policies/disagg/conditional.ts)
 * decides whether that instance prefills the request itself (local: the client's request goes
 * straight to it, no prefill leg, no kv_transfer_params) or the prefill pool does (remote: vLLM's
 * flow as without a rule).
 *
 * The rule's input is built as the twin builds it (`decisionInputFromViews` over the gateway's live
 * view; test/conformance/pd-conditional-views.test.ts checks both hosts give the same input): the
 * prompt length is the gateway's token count (`request.inputTokens`, its tokenizer or estimate, the
 * one routing uses), the prefix hit the router's learned estimate for the decode instance
 * (`DecodePrefixEstimate`), the decode instance's running decodes and KV in use as the view shows
 * them (scraped, or host accounting when stale), the prefill pool's in-flight requests and least
 * pending prefill tokens (host accounting), and the KV transfer time over the configured link
 * (`pd.link`, default CONDITIONAL_LINK_DEFAULT) from the decode instance's performance model.
 */
import type { Request } from '../../core/request.ts';
import type { InstanceView } from '../../core/view.ts';
import { type KvLink, kvLink, kvTransfer } from '../../model/kv-link.ts';
import type { PerfModel } from '../../model/types.ts';
import {
  DecodePrefixEstimate,
  decidePrefill,
  decisionInputFromViews,
  dynamoDecision,
  LocalStallLedger,
  type LocalStallRecord,
  type PdConditionalRule,
  type PrefillDecisionInput,
} from '../../policies/disagg/conditional.ts';
import type { PolicyContext } from '../../policies/routing/types.ts';

/** Counters of the conditional decisions, for /stats and /metrics. */
export interface PdConditionalStats {
  /** Requests a decode instance prefilled itself. */
  localPrefills: number;
  /** Requests sent through the prefill pool. */
  remotePrefills: number;
}

/** The live host of a conditional rule: its settings, the prefix estimate, the counters. */
export class PdConditional {
  readonly stats: PdConditionalStats = { localPrefills: 0, remotePrefills: 0 };
  private readonly prefixes = new DecodePrefixEstimate();
  /** The `slo` rule's record of the local prefills sent to each decode instance. */
  private readonly stalls = new LocalStallLedger();
  /**
   * The stall each request's local decision recorded, until the request object is collected: a
   * retry's decision takes it back first, so a request's stall is on the ledger once, at the decode
   * instance its last decision picked.
   */
  private readonly recorded = new WeakMap<Request, LocalStallRecord>();
  private readonly link: KvLink;

  /**
   * `perfModels` gives each decode instance's performance model (the transfer time, and the
   * `switchyard` rule's estimates); `chunkTokens` is the decode engines' per-step token budget.
   */
  constructor(
    readonly rule: PdConditionalRule,
    linkName: string,
    private readonly chunkTokens: number,
    private readonly perfModels: PolicyContext,
  ) {
    this.link = kvLink(linkName);
  }

  /**
   * The rule's input for `request` at decode instance `decode`, the prefill pool being `prefill`
   * (its eligible instances). Reads only; `decide` also teaches the prefix estimate.
   */
  input(request: Request, decode: InstanceView, prefill: readonly InstanceView[]): PrefillDecisionInput {
    const hit = this.prefixes.hitTokens(decode.id, request);
    const perf = this.perfOf(decode);
    const transferMs =
      perf === undefined
        ? 0
        : kvTransfer(perf.model, request.inputTokens, this.link, { prefillTp: perf.tp, decodeTp: perf.tp })
            .ttftAddedMs;
    const slo = request.slo;
    const recentLocalStallMs =
      slo === undefined ? 0 : this.stalls.recentMs(decode.id, request.arrivalMs, slo.ttftMs);
    return decisionInputFromViews(request.inputTokens, hit, decode, prefill, transferMs, {
      slo,
      recentLocalStallMs,
    });
  }

  /**
   * Whether `request` prefills on the prefill pool (true) or on `decode` itself (false), counted
   * unless `count` is false (a retry's new decision for a request already counted: the counters
   * count requests). A decode instance without a performance model (one added at run time) under
   * `switchyard` or `slo` goes remote, the path every request takes without a rule. Under `slo` a
   * local request's stall is recorded at its arrival time (the gateway's clock), as the twin does.
   *
   * A retry (the same request deciding again after its attempt failed) first takes back the stall
   * its earlier local decision recorded, whatever the new decision, so it neither counts against its
   * own retry nor stays on the instance that failed it. Physically: a local attempt fails over
   * (connect, 429, 5xx) mostly before the engine prefilled anything, so it stalled no decode there;
   * one that failed after firstByteTimeoutMs (120 s by default, far past any TTFT SLO, the ledger's
   * time constant) may have stalled that batch, but by then its record had decayed to nothing on the
   * arrival clock, so taking it back changes no later decision. The twin has no retries: its ledger
   * never withdraws.
   */
  decide(request: Request, decode: InstanceView, prefill: readonly InstanceView[], count = true): boolean {
    const earlier = this.recorded.get(request);
    if (earlier !== undefined && request.slo !== undefined) {
      this.stalls.withdraw(earlier, request.slo.ttftMs);
      this.recorded.delete(request);
    }
    const input = this.input(request, decode, prefill);
    const perf = this.perfOf(decode);
    let remote: boolean;
    if (this.rule === 'dynamo') remote = dynamoDecision(input).remote;
    else if (perf === undefined) remote = true;
    else {
      const decision = decidePrefill(this.rule, input, perf, this.chunkTokens);
      remote = decision.remote;
      const slo = request.slo;
      if (!remote && this.rule === 'slo' && slo !== undefined)
        this.recorded.set(
          request,
          this.stalls.add(decode.id, request.arrivalMs, slo.ttftMs, decision.stallMs ?? 0),
        );
    }
    // Local or remote, the prompt's KV ends up on the decode instance: the router learns it is there.
    this.prefixes.learn(decode.id, request);
    if (!count) return remote;
    if (remote) this.stats.remotePrefills++;
    else this.stats.localPrefills++;
    return remote;
  }

  /** A backend removed at run time: its ledger entry goes (the ledger is bounded besides). */
  forgetBackend(id: string): void {
    this.stalls.forget(id);
  }

  /** Decode instances the `slo` rule's ledger holds an entry for (bounded; for tests). */
  get ledgerSize(): number {
    return this.stalls.size;
  }

  /** `decode`'s performance model, or undefined when its backend has none. */
  private perfOf(decode: InstanceView): PerfModel | undefined {
    try {
      return this.perfModels.perfModel(decode);
    } catch {
      return undefined;
    }
  }
}
