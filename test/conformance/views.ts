/**
 * Routing conformance over the two hosts' real views (test support, like conformance.ts). The plain
 * objects of `testCluster` say what a view may hold; these tests say what the hosts really hand a
 * policy: the twin's view over real engine cores (`SimInstance`), and the gateway's `LiveView` fed
 * the way the gateway feeds it (its own accounting from what it sent, engine signals from a vLLM
 * `/metrics` page rendered by the built-in engine's exporter, parsed by the scraper's parser).
 *
 * `ViewPair` drives both from one situation: the same requests sent to the same engine cores, the
 * same scrapes at the same times. Their fields must agree one by one (host accounting and engine
 * signals alike, fresh, between scrapes and past the stale limit), and a policy must decide the
 * same on both.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { engineSignalsFromMetrics } from '../../src/adapters/metrics/engine-signals.ts';
import { parsePrometheusText } from '../../src/adapters/metrics/prometheus-text.ts';
import { makeRequest, type Request } from '../../src/core/request.ts';
import { Rng } from '../../src/core/rng.ts';
import {
  type ClusterView,
  DEFAULT_SCRAPE_INTERVAL_MS,
  type InstanceView,
  SIGNAL_STALE_AFTER_SCRAPES,
} from '../../src/core/view.ts';
import { EngineCore } from '../../src/engine-core/engine-core.ts';
import { DEFAULT_ENGINE_CONFIG, type EngineRequest } from '../../src/engine-core/types.ts';
import { VllmMetrics } from '../../src/engine-servers/vllm-metrics.ts';
import { LiveView } from '../../src/gateway/live-view.ts';
import { perfModelFor } from '../../src/model/perf.ts';
import type { RoutingPolicy } from '../../src/policies/routing/types.ts';
import { SimInstance } from '../../src/twin/cluster.ts';

const GPU = 'h100';
const MODEL = 'llama-3.1-8b';
/** Small pools, so a few requests move KV usage visibly. */
const KV_BLOCKS = 2048;
const BLOCK_TOKENS = 16;

/** Every InstanceView field, in declaration order: the fields compared between the two views. */
export const VIEW_FIELDS = [
  'id',
  'models',
  'gpu',
  'tp',
  'role',
  'healthy',
  'draining',
  'inFlight',
  'running',
  'waiting',
  'kvUsage',
  'kvBlocksTotal',
  'blockSize',
  'pendingPrefillTokens',
  'prefixHitRate',
  'updatedAtMs',
] as const satisfies readonly (keyof InstanceView)[];

/** A request as both hosts see it; its true output length only drives the engine. */
interface Sent {
  readonly request: Request;
  readonly index: number;
  prefillPending: boolean;
}

/**
 * One situation seen by both hosts: `n` real engine cores, each behind a twin `SimInstance` and a
 * live `LiveInstance`. The pair plays the host for both (send, first token, finish, scrape).
 */
export class ViewPair {
  readonly engines: EngineCore[] = [];
  readonly twin: SimInstance[] = [];
  readonly live: LiveView;
  private readonly exporters: VllmMetrics[] = [];
  private readonly clock = { nowMs: 0 };
  private readonly sent = new Map<string, Sent>();
  private readonly stepEndMs: number[] = [];

  constructor(
    readonly n: number,
    readonly scrapeIntervalMs = DEFAULT_SCRAPE_INTERVAL_MS,
  ) {
    this.live = new LiveView(SIGNAL_STALE_AFTER_SCRAPES * scrapeIntervalMs);
    const perf = perfModelFor(GPU, MODEL, 1);
    for (let i = 0; i < n; i++) {
      const id = `i${i}`;
      const engine = new EngineCore(DEFAULT_ENGINE_CONFIG, perf, KV_BLOCKS, {
        onFirstToken: (r) => this.firstToken(r),
        onFinish: (result) => this.ended(result.request),
      });
      this.engines.push(engine);
      this.stepEndMs.push(Number.NaN);
      this.twin.push(
        new SimInstance(i, id, GPU, MODEL, 1, engine, BLOCK_TOKENS, this.clock, scrapeIntervalMs),
      );
      this.live.add({
        id,
        models: [MODEL],
        gpu: GPU,
        tp: 1,
        role: 'both',
        kvBlocksTotal: KV_BLOCKS,
        blockSize: BLOCK_TOKENS,
      });
      this.exporters.push(new VllmMetrics(MODEL));
    }
  }

  /** Both hosts send `request` to instance `index` at `nowMs`. */
  send(index: number, request: Request, outputTokens: number, nowMs: number): void {
    this.sent.set(request.id, { request, index, prefillPending: true });
    (this.twin[index] as SimInstance).sent(request.inputTokens);
    this.live.get(`i${index}`)?.sent(request.inputTokens);
    // The chain's blocks are the engine's blocks here (both 16 tokens).
    const blockHashes = request.prefix.hashes;
    const engine = this.engines[index] as EngineCore;
    engine.add(
      { id: request.id, inputTokens: request.inputTokens, outputTokens, arrivalMs: nowMs, blockHashes },
      nowMs,
    );
  }

  /** Runs every engine's steps up to `toMs` (a step that would end later stays in flight). */
  advance(toMs: number): void {
    for (let i = 0; i < this.n; i++) {
      const engine = this.engines[i] as EngineCore;
      let end = this.stepEndMs[i] as number;
      let t = this.clock.nowMs;
      for (;;) {
        if (Number.isNaN(end)) {
          if (engine.startStep(t) === undefined) break;
          end = engine.stepEndMs;
        }
        if (end > toMs) break;
        engine.finishStep(end);
        t = end;
        end = Number.NaN;
      }
      this.stepEndMs[i] = end;
    }
    this.clock.nowMs = toMs;
  }

  /** Both hosts scrape every engine at `atMs`: the twin copies signals, live parses a /metrics page. */
  async scrape(atMs: number, only?: (index: number) => boolean): Promise<void> {
    for (let i = 0; i < this.n; i++) {
      if (only !== undefined && !only(i)) continue;
      const engine = this.engines[i] as EngineCore;
      (this.twin[i] as SimInstance).scrape(atMs);
      const page = await (this.exporters[i] as VllmMetrics).render({
        running: engine.running,
        waiting: engine.waiting,
        kvUsage: engine.kvUsage,
        kvBlocksTotal: engine.kvBlocksTotal,
        blockSize: BLOCK_TOKENS,
        prefixQueriesTokens: engine.prefixQueryTokens,
        prefixHitsTokens: engine.prefixHitTokens,
        promptTokensTotal: 0,
        generationTokensTotal: 0,
        preemptionsTotal: engine.preemptions,
      });
      this.live.applySignals(`i${i}`, engineSignalsFromMetrics(parsePrometheusText(page)), atMs);
    }
  }

  /** Marks an instance's health in both hosts (the host's own verdict). */
  setHealthy(index: number, healthy: boolean): void {
    (this.twin[index] as SimInstance).healthy = healthy;
    (this.live.instances[index] as { healthy: boolean }).healthy = healthy;
  }

  /** Marks an instance draining in both hosts. */
  setDraining(index: number, draining: boolean): void {
    (this.twin[index] as SimInstance).draining = draining;
    (this.live.instances[index] as { draining: boolean }).draining = draining;
  }

  /** The twin's view at `nowMs`. */
  twinView(nowMs: number): ClusterView {
    this.clock.nowMs = nowMs;
    return { nowMs, instances: this.twin };
  }

  /** The live view at `nowMs`. */
  liveView(nowMs: number): ClusterView {
    return this.live.at(nowMs);
  }

  /** Every field that differs between the two views at `nowMs`, as 'i0.running: 3 vs 2'. */
  differences(nowMs: number): string[] {
    const twin = this.twinView(nowMs).instances;
    const live = this.liveView(nowMs).instances;
    const out: string[] = [];
    for (let i = 0; i < this.n; i++) {
      const a = twin[i] as InstanceView;
      const b = live[i] as InstanceView;
      for (const field of VIEW_FIELDS) {
        const x = JSON.stringify(a[field]);
        const y = JSON.stringify(b[field]);
        if (x !== y) out.push(`${a.id}.${field}: twin ${x} vs live ${y}`);
      }
    }
    return out;
  }

  private firstToken(r: EngineRequest): void {
    const s = this.sent.get(r.id);
    if (s === undefined || !s.prefillPending) return;
    s.prefillPending = false;
    (this.twin[s.index] as SimInstance).firstToken(r.inputTokens);
    this.live.get(`i${s.index}`)?.firstToken(r.inputTokens);
  }

  private ended(r: EngineRequest): void {
    const s = this.sent.get(r.id);
    if (s === undefined) return;
    this.sent.delete(r.id);
    (this.twin[s.index] as SimInstance).ended(r.inputTokens, s.prefillPending);
    this.live.get(`i${s.index}`)?.ended(r.inputTokens, s.prefillPending);
  }
}

/** A request with a prefix chain whose first blocks are shared by every request. */
export function viewRequest(k: number, inputTokens: number, arrivalMs: number): Request {
  const hashes: number[] = [];
  for (let b = 0; b < Math.floor(inputTokens / BLOCK_TOKENS); b++) hashes.push(b < 4 ? b + 1 : k * 1000 + b);
  return makeRequest({
    id: `v${k}`,
    inputTokens,
    arrivalMs,
    maxTokens: 256,
    prefix: { blockTokens: BLOCK_TOKENS, hashes },
  });
}

/**
 * A loaded, uneven situation on `n` instances, built in both hosts: requests sent over 300 ms with
 * scrapes every interval, then more requests after the last scrape (host accounting moved, engine
 * signals did not), one instance unhealthy and one draining. Returns the pair and the time to look.
 */
export async function loadedPair(n = 6): Promise<{ pair: ViewPair; nowMs: number }> {
  const pair = new ViewPair(n);
  let k = 0;
  for (let t = 0; t <= 300; t += 25) {
    pair.advance(t);
    for (let i = 0; i < n; i++)
      if ((i + t / 25) % 3 !== 0)
        pair.send(i, viewRequest(k++, 256 + 64 * ((k * 7) % 9), t), 16 + (k % 40), t);
    if (t % pair.scrapeIntervalMs === 0) await pair.scrape(t);
  }
  pair.advance(310);
  for (let i = 0; i < n; i += 2) pair.send(i, viewRequest(k++, 1024, 310), 64, 310);
  pair.setHealthy(n - 1, false);
  pair.setDraining(0, true);
  return { pair, nowMs: 320 };
}

/**
 * Registers the view conformance tests for one policy: over the twin's and the live view of the same
 * situation it never picks an ineligible instance, and it decides exactly the same on both (the
 * views agree field by field, so any difference is a policy reading something outside the view).
 */
export function runViewConformance(name: string, create: () => RoutingPolicy): void {
  test(`${name}: decides the same over the twin's view and the live view of one situation`, async () => {
    const { pair, nowMs } = await loadedPair();
    assert.deepEqual(pair.differences(nowMs), []);
    const onTwin = create();
    const onLive = create();
    const rngTwin = new Rng(11);
    const rngLive = new Rng(11);
    for (let r = 0; r < 60; r++) {
      const request = viewRequest(10_000 + r, 128 + (r % 6) * 96, nowMs);
      const a = onTwin.decide(pair.twinView(nowMs), request, rngTwin);
      const b = onLive.decide(pair.liveView(nowMs), request, rngLive);
      assert.deepEqual(a, b, `request ${r}: twin and live views gave different decisions`);
      assert.equal(a.kind, 'route');
      if (a.kind !== 'route') continue;
      const picked = pair.twin.find((x) => x.id === a.instanceId);
      assert.ok(picked?.healthy && !picked.draining, `picked ${a.instanceId}`);
      onTwin.onRouted?.(request, a.instanceId, nowMs);
      onLive.onRouted?.(request, a.instanceId, nowMs);
    }
  });
}
