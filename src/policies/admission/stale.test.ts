/**
 * Stale engine signals: both hosts' views show `waiting = 0` for an instance not scraped within the
 * bound, so a gate reading engine signals alone would pass up to inFlightMax (256) requests into the
 * engine's FCFS queue and fairness would be lost. The gate falls back to host accounting there.
 * Run over both real views (the twin's SimInstance and the gateway's LiveView, test/conformance).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ViewPair } from '../../../test/conformance/views.ts';
import type { Request } from '../../core/request.ts';
import { makeRequest } from '../../core/request.ts';
import { SIGNAL_STALE_AFTER_SCRAPES } from '../../core/view.ts';
import { createAdmissionController } from './controller.ts';

const SCRAPE_MS = 75;
const STALE_MS = SIGNAL_STALE_AFTER_SCRAPES * SCRAPE_MS;
const OUTPUT_TOKENS = 4;

function request(id: string, tenant: string, arrivalMs: number, inputTokens = 100): Request {
  return makeRequest({ id, tenant, inputTokens, arrivalMs, maxTokens: OUTPUT_TOKENS });
}

type Host = 'twin' | 'live';

/**
 * One instance never scraped (stale from the start): a flood tenant offers 60 requests, then a victim
 * offers one; the engine then runs until a few finish and the queue drains. Returns what was sent at
 * once and the order the queue released the rest in.
 */
function scenario(host: Host, staleAware: boolean): { passed: number; released: string[] } {
  const pair = new ViewPair(1, SCRAPE_MS);
  const ctl = createAdmissionController({}, staleAware ? { signalStaleAfterMs: STALE_MS } : {});
  const viewAt = (nowMs: number) => (host === 'twin' ? pair.twinView(nowMs) : pair.liveView(nowMs));
  let nowMs = 1000;
  let passed = 0;
  const offer = (r: Request): void => {
    const verdict = ctl.offer(r, viewAt(nowMs));
    if (verdict.kind === 'dispatch') {
      pair.send(0, r, OUTPUT_TOKENS, nowMs);
      ctl.onDispatched(r, nowMs);
      passed++;
    } else assert.equal(verdict.kind, 'queued');
  };
  for (let i = 0; i < 60; i++) offer(request(`f${i}`, 'flood', nowMs));
  nowMs += 1;
  offer(request('v0', 'victim', nowMs));
  const released: string[] = [];
  for (let round = 0; round < 400 && ctl.queued > 0; round++) {
    nowMs += 5;
    pair.advance(nowMs);
    const { dispatch, expired } = ctl.drain(viewAt(nowMs));
    assert.deepEqual(expired, []);
    for (const r of dispatch) {
      pair.send(0, r, OUTPUT_TOKENS, nowMs);
      ctl.onDispatched(r, nowMs);
      released.push(r.id);
    }
  }
  return { passed, released };
}

describe('admission gate with stale engine signals', () => {
  for (const host of ['twin', 'live'] as const) {
    it(`${host} view: bounds a stale instance by host accounting, so the victim goes ahead of the flood`, () => {
      const { passed, released } = scenario(host, true);
      // staleInFlightMax (32) went straight through; the rest waited in the fair queue.
      assert.equal(passed, 32);
      assert.equal(released.length, 29);
      // VTC: the victim's lane is lifted to the flood's counter, so it leaves within the first two,
      // not behind the flood's 28 queued requests (as the engine's FCFS queue would have served it).
      const at = released.indexOf('v0');
      assert.ok(at >= 0 && at <= 1, `victim released at ${at}: ${released.join(',')}`);
    });
  }

  it('both views release in the same order (the twin rule)', () => {
    assert.deepEqual(scenario('twin', true), scenario('live', true));
  });

  it('without the staleness bound the gate trusts waiting = 0 and lets the whole flood through', () => {
    for (const host of ['twin', 'live'] as const) assert.equal(scenario(host, false).passed, 61);
  });

  it('counts unanswered prompt tokens on a stale instance (stalePrefillTokensMax)', () => {
    for (const host of ['twin', 'live'] as const) {
      const pair = new ViewPair(1, SCRAPE_MS);
      const ctl = createAdmissionController(
        { gate: { stalePrefillTokensMax: 10_000 } },
        { signalStaleAfterMs: STALE_MS },
      );
      const viewAt = (nowMs: number) => (host === 'twin' ? pair.twinView(nowMs) : pair.liveView(nowMs));
      const big = request('big', 't', 1000, 12_000);
      assert.equal(ctl.offer(big, viewAt(1000)).kind, 'dispatch');
      pair.send(0, big, OUTPUT_TOKENS, 1000);
      // One request in flight, far below staleInFlightMax, but its prompt is still unanswered.
      assert.equal(ctl.offer(request('next', 't', 1001), viewAt(1001)).kind, 'queued', host);
    }
  });

  it('trusts fresh signals: within the bound, waiting decides as before', async () => {
    const pair = new ViewPair(1, SCRAPE_MS);
    await pair.scrape(1000);
    const ctl = createAdmissionController({}, { signalStaleAfterMs: STALE_MS });
    let passed = 0;
    for (let i = 0; i < 60; i++) {
      const r = request(`f${i}`, 'flood', 1000);
      if (ctl.offer(r, pair.liveView(1000 + STALE_MS)).kind === 'dispatch') {
        pair.send(0, r, OUTPUT_TOKENS, 1000);
        passed++;
      }
    }
    // The scrape said nothing waits, and is still trusted: only inFlightMax would stop it.
    assert.equal(passed, 60);
  });
});
