import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LiveView } from './live-view.ts';

function view(): LiveView {
  const v = new LiveView(300);
  v.add({ id: 'a', models: ['m'], gpu: 'h100', tp: 1, role: 'both', kvBlocksTotal: 1000, blockSize: 16 });
  v.add({ id: 'b', models: ['m'], gpu: 'h100', tp: 1, role: 'both', kvBlocksTotal: 1000, blockSize: 16 });
  return v;
}

describe('LiveView', () => {
  it('shows host accounting for an instance never scraped', () => {
    const v = view();
    const a = v.get('a');
    assert.ok(a !== undefined);
    a.inFlight = 7;
    v.at(1000);
    assert.equal(a.stale, true);
    assert.equal(a.running, 7);
    assert.equal(a.waiting, 0);
    assert.equal(a.kvUsage, 0);
  });

  it('shows fresh scraped signals as scraped, with inFlight from the host', () => {
    const v = view();
    const a = v.get('a');
    assert.ok(a !== undefined);
    a.inFlight = 9;
    v.applySignals('a', { running: 4, waiting: 2, kvUsage: 0.5, kvBlocksTotal: 2048, blockSize: 32 }, 1000);
    v.at(1200);
    assert.equal(a.stale, false);
    assert.equal(a.running, 4);
    assert.equal(a.waiting, 2);
    assert.equal(a.kvUsage, 0.5);
    assert.equal(a.kvBlocksTotal, 2048);
    assert.equal(a.blockSize, 32);
    assert.equal(a.inFlight, 9);
    assert.equal(a.updatedAtMs, 1000);
  });

  it('falls back to host accounting once signals are older than staleAfterMs, keeping the last KV usage', () => {
    const v = view();
    const a = v.get('a');
    assert.ok(a !== undefined);
    v.applySignals('a', { running: 4, waiting: 2, kvUsage: 0.5 }, 1000);
    a.inFlight = 3;
    v.at(1300);
    assert.equal(a.stale, false);
    v.at(1301);
    assert.equal(a.stale, true);
    assert.equal(a.running, 3);
    assert.equal(a.waiting, 0);
    assert.equal(a.kvUsage, 0.5);
    // A new scrape makes it fresh again.
    v.applySignals('a', { running: 1, waiting: 0 }, 1310);
    v.at(1320);
    assert.equal(a.stale, false);
    assert.equal(a.running, 1);
  });

  it('clamps and ignores bad values, ignores old scrapes and unknown ids', () => {
    const v = view();
    const a = v.get('a');
    assert.ok(a !== undefined);
    v.applySignals('a', { running: -3, kvUsage: 7, prefixQueries: 100, prefixHits: 25 }, 1000);
    v.applySignals('a', { running: 50 }, 900);
    v.applySignals('zzz', { running: 50 }, 1000);
    v.at(1000);
    assert.equal(a.running, 0);
    assert.equal(a.kvUsage, 1);
    assert.equal(a.prefixHitRate, 0.25);
    v.applySignals('a', { running: Number.NaN, waiting: 3 }, 1100);
    v.at(1100);
    // No running count: the instance is stale for running (host accounting) but shows waiting.
    assert.equal(a.stale, true);
    assert.equal(a.running, a.inFlight);
    assert.equal(a.waiting, 3);
  });

  it('forgets the scraped signals of an ejected instance until a scrape taken after the ejection', () => {
    const v = view();
    const a = v.get('a');
    assert.ok(a !== undefined);
    v.applySignals(
      'a',
      { running: 4, waiting: 2, kvUsage: 0.5, prefixHitRate: 0.4, kvBlocksTotal: 2048, blockSize: 32 },
      1000,
    );
    // Ejected (its process killed), then re-admitted (restarted) before the scraper reached it again.
    a.forgetSignals(1100);
    a.inFlight = 1;
    v.at(1150);
    assert.equal(a.stale, true);
    assert.equal(a.running, 1);
    assert.equal(a.waiting, 0);
    assert.equal(a.kvUsage, 0, 'not the KV usage of the killed process');
    assert.equal(a.prefixHitRate, 0);
    assert.equal(a.signalAgeMs(1150), Number.POSITIVE_INFINITY);
    // The sizes are the engine's configuration: kept.
    assert.equal(a.kvBlocksTotal, 2048);
    assert.equal(a.blockSize, 32);
    // A scrape taken before the ejection and delivered late is ignored; one taken after it counts.
    v.applySignals('a', { running: 4, waiting: 2, kvUsage: 0.5 }, 1050);
    v.at(1160);
    assert.equal(a.kvUsage, 0);
    assert.equal(a.stale, true);
    v.applySignals('a', { running: 0, waiting: 0, kvUsage: 0.01 }, 1200);
    v.at(1210);
    assert.equal(a.stale, false);
    assert.equal(a.kvUsage, 0.01);
    assert.equal(a.running, 0);
  });

  it('refuses a duplicate id', () => {
    const v = view();
    assert.throws(() =>
      v.add({ id: 'a', models: ['m'], gpu: 'h100', tp: 1, role: 'both', kvBlocksTotal: 1, blockSize: 16 }),
    );
  });
});
