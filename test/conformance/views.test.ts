import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_SCRAPE_INTERVAL_MS,
  ENGINE_SIGNAL_FIELDS,
  HOST_ACCOUNTING_FIELDS,
} from '../../src/core/view.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';
import { loadedPair, VIEW_FIELDS, ViewPair, viewRequest } from './views.ts';

test('the field table covers every InstanceView field once: identity, host accounting or engine signal', () => {
  const identity = ['id', 'models', 'gpu', 'tp', 'role'];
  const all = [...identity, ...HOST_ACCOUNTING_FIELDS, ...ENGINE_SIGNAL_FIELDS].sort();
  assert.deepEqual(all, [...VIEW_FIELDS].sort());
});

test("the twin's default scrape interval is the gateway's", () => {
  const config = parseGatewayConfig({
    backends: [{ id: 'a', type: 'sim', url: 'http://127.0.0.1:1', models: ['m'] }],
  });
  assert.equal(config.scrapeIntervalMs, DEFAULT_SCRAPE_INTERVAL_MS);
});

test('the twin and live views agree field by field: before any scrape, fresh, between scrapes, stale', async () => {
  const pair = new ViewPair(3);
  // Never scraped: both show host accounting (running = inFlight, waiting = 0).
  pair.send(0, viewRequest(1, 512, 0), 32, 0);
  pair.send(0, viewRequest(2, 512, 0), 32, 0);
  pair.send(1, viewRequest(3, 2048, 0), 8, 0);
  assert.deepEqual(pair.differences(0), []);
  assert.equal(pair.twinView(0).instances[0]?.running, 2);
  assert.equal(pair.twinView(0).instances[0]?.pendingPrefillTokens, 1024);

  // After steps and a scrape: engine signals as scraped, host accounting from what was sent.
  pair.advance(40);
  await pair.scrape(40);
  assert.deepEqual(pair.differences(40), []);
  const scraped = pair.twinView(40).instances[0];
  assert.ok(scraped !== undefined && scraped.kvUsage > 0 && scraped.updatedAtMs === 40);

  // More sends after the scrape: host accounting moves at once, engine signals wait for the next scrape.
  pair.send(2, viewRequest(4, 4096, 50), 8, 50);
  assert.deepEqual(pair.differences(60), []);
  const between = pair.twinView(60).instances[2];
  assert.equal(between?.inFlight, 1);
  assert.equal(between?.pendingPrefillTokens, 4096);
  assert.equal(between?.running, 0, 'the engine signal is as scraped at 40 ms, before the send');

  // First tokens seen: pending prefill drops in both; a scrape that skips i1 leaves it to go stale.
  pair.advance(200);
  await pair.scrape(200, (i) => i !== 1);
  assert.deepEqual(pair.differences(200), []);
  assert.equal(pair.twinView(200).instances[0]?.pendingPrefillTokens, 0);
  const late = 40 + 3 * DEFAULT_SCRAPE_INTERVAL_MS + 1;
  pair.advance(late);
  assert.deepEqual(pair.differences(late), []);
  const stale = pair.twinView(late).instances[1];
  assert.equal(stale?.running, stale?.inFlight, 'a stale instance shows host accounting in both views');
  assert.equal(stale?.waiting, 0);
});

test('a loaded situation: every field agrees, and host accounting is ahead of the last scrape', async () => {
  const { pair, nowMs } = await loadedPair();
  assert.deepEqual(pair.differences(nowMs), []);
  const view = pair.twinView(nowMs).instances;
  assert.ok(
    view.some((i) => i.inFlight !== i.running + i.waiting),
    'some instance got requests since its scrape',
  );
  assert.ok(view.some((i) => i.pendingPrefillTokens > 0));
  assert.ok(
    view.some((i) => i.prefixHitRate > 0),
    'the shared prefix blocks hit',
  );
});
