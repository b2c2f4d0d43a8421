import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EngineSignals } from './engine-signals.ts';
import { MetricsScraper, scrapeIntervalAfterMs } from './scraper.ts';

const VLLM_PAGE = readFileSync(new URL('./fixtures/vllm.prom', import.meta.url), 'utf8');

interface TestServer {
  readonly url: string;
  /** Requests seen, and the largest number ever in flight at once. */
  readonly stats: { requests: number; inFlight: number; inFlightMax: number; sockets: number };
  close(): Promise<void>;
}

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>,
): Promise<TestServer> {
  const stats = { requests: 0, inFlight: 0, inFlightMax: 0, sockets: 0 };
  const server: Server = createServer((req, res) => {
    stats.requests++;
    stats.inFlight++;
    stats.inFlightMax = Math.max(stats.inFlightMax, stats.inFlight);
    res.on('close', () => stats.inFlight--);
    void handler(req, res);
  });
  server.on('connection', () => stats.sockets++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const page = (text: string) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
  res.end(text);
};

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function recorder(opts: { intervalMs?: number; timeoutMs?: number } = {}) {
  const signals: { id: string; signals: EngineSignals; atMs: number }[] = [];
  const errors: { id: string; error: Error }[] = [];
  let clock = 1_000;
  const scraper = new MetricsScraper({
    intervalMs: opts.intervalMs ?? 50,
    timeoutMs: opts.timeoutMs ?? 2_000,
    onSignals: (id, s, atMs) => signals.push({ id, signals: s, atMs }),
    onError: (id, error) => errors.push({ id, error }),
    now: () => clock++,
  });
  return { scraper, signals, errors };
}

describe('MetricsScraper', () => {
  it('delivers signals from each target on its interval over one kept-alive connection', async () => {
    const a = await serve(page(VLLM_PAGE));
    const b = await serve(
      page('sglang:num_running_reqs 2\nsglang:num_queue_reqs 1\nsglang:token_usage 0.5\n'),
    );
    const { scraper, signals, errors } = recorder({ intervalMs: 50 });
    try {
      scraper.add('a', a.url);
      scraper.add('b', b.url);
      scraper.start();
      await waitFor('several scrapes of each', () =>
        ['a', 'b'].every((id) => signals.filter((s) => s.id === id).length >= 4),
      );
      const fromA = signals.find((s) => s.id === 'a')!;
      assert.equal(fromA.signals.family, 'vllm');
      assert.equal(fromA.signals.running, 23);
      assert.equal(fromA.signals.kvBlocksTotal, 27503);
      assert.deepEqual(signals.find((s) => s.id === 'b')!.signals, {
        family: 'sglang',
        running: 2,
        waiting: 1,
        kvUsage: 0.5,
      });
      assert.ok(
        signals.every((s, i) => i === 0 || s.atMs > signals[i - 1]!.atMs),
        'atMs comes from the injected clock',
      );
      assert.deepEqual(errors, []);
      assert.equal(a.stats.sockets, 1, 'one keep-alive connection per target');
      assert.equal(a.stats.inFlightMax, 1);
    } finally {
      await scraper.stop();
      await a.close();
      await b.close();
    }
  });

  it('reports a slow target as timed out, never overlaps its scrapes, and keeps scraping the others', async () => {
    const slow = await serve(async (_req, res) => {
      await sleep(1_000);
      if (!res.destroyed) page(VLLM_PAGE)(_req, res);
    });
    const fast = await serve(page(VLLM_PAGE));
    const { scraper, signals, errors } = recorder({ intervalMs: 50, timeoutMs: 150 });
    try {
      scraper.add('slow', slow.url);
      scraper.add('fast', fast.url);
      scraper.start();
      await waitFor('two timeouts', () => errors.filter((e) => e.id === 'slow').length >= 2);
      const timeout = errors.find((e) => e.id === 'slow')!.error as Error & { code?: string };
      assert.equal(timeout.code, 'SY_ERR_TIMEOUT');
      assert.match(timeout.message, /'slow' timed out after 150 ms/);
      assert.equal(slow.stats.inFlightMax, 1, 'scrapes of one target never overlap');
      assert.ok(signals.some((s) => s.id === 'fast'));
      assert.ok(!signals.some((s) => s.id === 'slow'));
      assert.ok(errors.every((e) => e.id === 'slow'));
    } finally {
      await scraper.stop();
      await slow.close();
      await fast.close();
    }
  });

  it('reports refused connections, HTTP errors and malformed pages without throwing', async () => {
    const broken = await serve((req, res) => {
      if (req.url === '/metrics') {
        res.writeHead(500);
        res.end('boom');
      } else {
        page('vllm:num_requests_running{ 1\n')(req, res);
      }
    });
    const dead = await serve(page(''));
    const deadUrl = dead.url;
    await dead.close();
    const { scraper, errors } = recorder({ intervalMs: 20, timeoutMs: 1_000 });
    try {
      scraper.add('http500', broken.url);
      scraper.add('garbled', broken.url.replace('/metrics', '/garbled'));
      scraper.add('refused', deadUrl);
      scraper.start();
      await waitFor('an error from each', () =>
        ['http500', 'garbled', 'refused'].every((id) => errors.some((e) => e.id === id)),
      );
      const byId = (id: string) => errors.find((e) => e.id === id)!.error as Error & { code?: string };
      assert.equal(byId('http500').code, 'SY_ERR_UPSTREAM');
      assert.match(byId('http500').message, /HTTP 500/);
      assert.match(byId('garbled').message, /malformed Prometheus text at line 1/);
      assert.equal(byId('refused').code, 'SY_ERR_UPSTREAM');
      assert.match(byId('refused').message, /ECONNREFUSED/);
    } finally {
      await scraper.stop();
      await broken.close();
    }
  });

  it('schedules the next scrape at the interval, doubling per failure up to the cap', () => {
    const waits = [0, 1, 2, 3, 4, 10, 60].map((f) => scrapeIntervalAfterMs(f, 10, 1_000));
    assert.deepEqual(waits, [10, 10, 20, 40, 80, 1_000, 1_000]);
  });

  it('backs off a failing target instead of hammering it', async () => {
    // When each try reached the target. A timer never fires early, so after f failures the next
    // try comes at least scrapeIntervalAfterMs(f) after the previous try began, however busy the
    // machine is: lower bounds only, less one base interval for the previous request's own way to
    // the server. Without backoff the gaps would all be about the 10 ms interval.
    const arrivals: number[] = [];
    const failing = await serve((_req, res) => {
      arrivals.push(performance.now());
      res.writeHead(503);
      res.end();
    });
    const { scraper, errors } = recorder({ intervalMs: 10, timeoutMs: 500 });
    try {
      scraper.add('e', failing.url);
      scraper.start();
      await waitFor('five tries', () => arrivals.length >= 5);
      for (let f = 2; f < 5; f++) {
        const gapMs = (arrivals[f] as number) - (arrivals[f - 1] as number);
        const scheduledMs = scrapeIntervalAfterMs(f, 10, 1_000) - 10;
        assert.ok(
          gapMs >= scheduledMs,
          `try ${f + 1} came ${gapMs.toFixed(1)} ms after try ${f}, scheduled ${scheduledMs}`,
        );
      }
      assert.ok(errors.length >= 4, `${errors.length} errors reported for ${arrivals.length} failed tries`);
    } finally {
      await scraper.stop();
      await failing.close();
    }
  });

  it('scrapes a re-admitted target at once instead of waiting out its backoff', async () => {
    // The engine is down (503) for its first tries, then restarted. The interval is a minute, so
    // after a failure the next scheduled try is a minute or more away: a scrape that comes within
    // waitFor's 10 s came from scrapeNow.
    let up = false;
    const engine = await serve((req, res) => {
      if (up) return page(VLLM_PAGE)(req, res);
      res.writeHead(503);
      res.end();
    });
    const signals: EngineSignals[] = [];
    const errors: Error[] = [];
    const scraper = new MetricsScraper({
      intervalMs: 60_000,
      timeoutMs: 2_000,
      errorBackoffMaxMs: 3_600_000,
      onSignals: (_id, s) => signals.push(s),
      onError: (_id, error) => errors.push(error),
    });
    try {
      scraper.scrapeNow('e');
      scraper.add('e', engine.url);
      scraper.scrapeNow('e');
      assert.equal(engine.stats.requests, 0, 'nothing before start');
      scraper.start();
      await waitFor('the first failure', () => errors.length === 1);
      scraper.scrapeNow('e');
      await waitFor('a second failure, asked for', () => errors.length === 2);
      up = true;
      // Twice in a row: one scrape, the second call replaces the first's timer.
      scraper.scrapeNow('e');
      scraper.scrapeNow('e');
      scraper.scrapeNow('unknown');
      await waitFor('the restarted engine scraped', () => signals.length === 1);
      assert.equal(signals[0]!.running, 23);
      await waitFor('its connection to close', () => engine.stats.inFlight === 0);
      assert.equal(engine.stats.requests, 3, 'one scrape per scrapeNow, none doubled');
      assert.equal(engine.stats.inFlightMax, 1);
    } finally {
      await scraper.stop();
      await engine.close();
    }
    // Stopped: scrapeNow schedules nothing that outlives the scraper (a timer at 0 would have fired).
    scraper.scrapeNow('e');
    await sleep(100);
    assert.equal(engine.stats.requests, 3);
  });

  it('stops scraping a removed target, mid-flight included, and reports nothing for it', async () => {
    const slowServer = await serve(async (req, res) => {
      await sleep(1_000);
      if (!res.destroyed) page(VLLM_PAGE)(req, res);
    });
    const quick = await serve(page(VLLM_PAGE));
    const { scraper, signals, errors } = recorder({ intervalMs: 30, timeoutMs: 2_000 });
    try {
      scraper.add('slow', slowServer.url);
      scraper.add('quick', quick.url);
      scraper.start();
      await waitFor('the slow scrape to start', () => slowServer.stats.requests === 1);
      scraper.remove('slow');
      // The server answers after 1 s; the request ends sooner only if removal aborted it.
      await waitFor('the in-flight scrape to be aborted', () => slowServer.stats.inFlight === 0, 600);
      await waitFor('a few quick scrapes', () => signals.filter((s) => s.id === 'quick').length >= 2);
      scraper.remove('quick');
      scraper.remove('never-added');
      assert.deepEqual(scraper.ids, []);
      const seen = { slow: slowServer.stats.requests, quick: quick.stats.requests, signals: signals.length };
      await sleep(500);
      assert.equal(slowServer.stats.requests, seen.slow);
      assert.equal(quick.stats.requests, seen.quick);
      assert.equal(signals.length, seen.signals);
      assert.ok(!signals.some((s) => s.id === 'slow'));
      assert.deepEqual(errors, []);
    } finally {
      await scraper.stop();
      await slowServer.close();
      await quick.close();
    }
  });

  it('validates its options and targets', () => {
    const base = { onSignals() {}, onError() {} };
    assert.throws(() => new MetricsScraper({ ...base, intervalMs: 0, timeoutMs: 10 }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
    });
    assert.throws(() => new MetricsScraper({ ...base, intervalMs: 50, timeoutMs: -1 }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
    });
    const scraper = new MetricsScraper({ ...base, intervalMs: 50, timeoutMs: 100 });
    assert.throws(() => scraper.add('x', 'not a url'), { code: 'SY_ERR_INVALID_ARGUMENT' });
    assert.throws(() => scraper.add('x', 'ftp://host/metrics'), { code: 'SY_ERR_INVALID_ARGUMENT' });
    scraper.add('x', 'http://127.0.0.1:9/metrics');
    assert.throws(() => scraper.add('x', 'http://127.0.0.1:9/metrics'), { code: 'SY_ERR_INVALID_ARGUMENT' });
  });
});
