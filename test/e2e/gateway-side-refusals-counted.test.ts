/**
 * End-to-end: refusals on the admin API and the Batch API count in `/stats` `rejected{code}` and in
 * `switchyard_gateway_requests_rejected_total{code}`, as the main path's do. They were answered
 * through `sendError` alone, so a slowloris on `PUT /admin/policy` or `POST /v1/batches` (each
 * stalled body a 408) left no trace an operator could see. Exact bytes go over raw sockets against
 * a real gateway on 127.0.0.1; the client-side deadline only guards against a hang.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  type GatewayStatsJson,
  getJson,
  metricSum,
  scrape,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { openSocket, readUntilClose } from './support/raw-http.ts';

const BODY_READ_TIMEOUT_MS = 400;
const ADMIN_KEY = 'side-refusals-admin';
/** Client-side bound on one raw exchange: a hang guard, far past the deadline under test. */
const HANG_GUARD_MS = 15_000;
const REJECTED = 'switchyard_gateway_requests_rejected_total';

/** What one refusal code reads in /stats and /metrics. */
interface Counted {
  readonly stats: number;
  readonly statsTotal: number;
  readonly metric: number;
}

/**
 * Sends the head of a `length`-byte body and only its first `sent` bytes, then waits for the gateway
 * to answer and close; returns the status and the answer's body.
 */
async function stalled(
  url: string,
  method: string,
  path: string,
  body: string,
  sent: number,
  authorization: string,
): Promise<{ status: number; body: string }> {
  const socket = await openSocket(url);
  const all = readUntilClose(socket, HANG_GUARD_MS);
  socket.write(
    `${method} ${path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n` +
      `authorization: Bearer ${authorization}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n` +
      body.slice(0, sent),
  );
  const text = await all;
  const headEnd = text.indexOf('\r\n\r\n');
  assert.ok(headEnd > 0, `not an HTTP answer: ${JSON.stringify(text.slice(0, 200))}`);
  return { status: Number(text.slice(9, 12)), body: text.slice(headEnd + 4) };
}

/**
 * Sends the head of a body and only its first `sent` bytes, waits until the gateway has read them,
 * then closes its socket without reading anything.
 */
async function leaves(
  url: string,
  method: string,
  path: string,
  body: string,
  sent: number,
  authorization: string,
): Promise<void> {
  const socket = await openSocket(url);
  socket.on('error', () => {});
  socket.write(
    `${method} ${path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n` +
      `authorization: Bearer ${authorization}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n` +
      body.slice(0, sent),
  );
  // A round trip on another connection: the gateway has taken this one's head and bytes by then.
  await getJson<GatewayStatsJson>(`${url}/stats`);
  socket.destroy();
}

describe('admin and batch refusals are counted', { timeout: 60_000 }, () => {
  const teardown = new Teardown();
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-side-refusals-'));
  let gw: TestGateway;
  const counted = async (code: string): Promise<Counted> => {
    const s = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    return {
      stats: s.rejected[code] ?? 0,
      statsTotal: Object.values(s.rejected).reduce((a, b) => a + b, 0),
      metric: metricSum(await scrape(gw.url), REJECTED, `code="${code}"`),
    };
  };
  /** Runs `refuse` and asserts it raised `code` (and nothing else) by one in /stats and /metrics. */
  const assertCountsOne = async (code: string, refuse: () => Promise<void>): Promise<void> => {
    const before = await counted(code);
    await refuse();
    assert.deepEqual(await counted(code), {
      stats: before.stats + 1,
      statsTotal: before.statsTotal + 1,
      metric: before.metric + 1,
    });
  };

  before(async () => {
    gw = await startTestGateway(
      {
        backends: [],
        adminKey: ADMIN_KEY,
        batch: { dir },
        limits: { bodyReadTimeoutMs: BODY_READ_TIMEOUT_MS },
      },
      teardown,
    );
  });
  after(async () => {
    await teardown.run();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts a stalled PUT /admin/policy body (408) once', async () => {
    await assertCountsOne('SY_ERR_REQUEST_TIMEOUT', async () => {
      const body = JSON.stringify({ policy: 'round-robin' });
      const answer = await stalled(gw.url, 'PUT', '/admin/policy', body, 3, ADMIN_KEY);
      assert.equal(answer.status, 408, answer.body);
      assert.equal(assertErrorBody(answer.body, answer.status).error.code, 'SY_ERR_REQUEST_TIMEOUT');
    });
  });

  it('counts a stalled POST /v1/batches body (408) once', async () => {
    await assertCountsOne('SY_ERR_REQUEST_TIMEOUT', async () => {
      const body = JSON.stringify({
        input_file_id: 'file-none',
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      const answer = await stalled(gw.url, 'POST', '/v1/batches', body, 10, 'none');
      assert.equal(answer.status, 408, answer.body);
      assert.equal(assertErrorBody(answer.body, answer.status).error.code, 'SY_ERR_REQUEST_TIMEOUT');
    });
  });

  /** Waits (hang guard only) until /stats shows `code` past `from`. */
  const untilRejected = async (code: string, from: number): Promise<void> => {
    const start = Date.now();
    while ((await counted(code)).stats === from) {
      assert.ok(Date.now() - start < HANG_GUARD_MS, `${code} never counted`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  it('counts a PUT /admin/policy whose client leaves mid-body once, as the main path names it', async () => {
    const code = 'SY_ERR_INVALID_ARGUMENT';
    await assertCountsOne(code, async () => {
      const from = (await counted(code)).stats;
      await leaves(gw.url, 'PUT', '/admin/policy', JSON.stringify({ policy: 'round-robin' }), 5, ADMIN_KEY);
      await untilRejected(code, from);
    });
  });

  it('counts a POST /v1/batches whose client leaves mid-body once', async () => {
    const code = 'SY_ERR_INVALID_ARGUMENT';
    await assertCountsOne(code, async () => {
      const from = (await counted(code)).stats;
      const body = JSON.stringify({ input_file_id: 'file-none', endpoint: '/v1/chat/completions' });
      await leaves(gw.url, 'POST', '/v1/batches', body, 10, 'none');
      await untilRejected(code, from);
    });
  });

  it('counts a wrong admin key (401) and a batch that names no file (404) once each', async () => {
    await assertCountsOne('SY_ERR_UNAUTHORIZED', async () => {
      const res = await fetch(`${gw.url}/admin/instances`, {
        headers: { authorization: 'Bearer not-the-key' },
        signal: AbortSignal.timeout(HANG_GUARD_MS),
      });
      assert.equal(res.status, 401, await res.text());
    });
    await assertCountsOne('SY_ERR_NOT_FOUND', async () => {
      const res = await fetch(`${gw.url}/v1/batches/batch_none`, {
        signal: AbortSignal.timeout(HANG_GUARD_MS),
      });
      assert.equal(res.status, 404, await res.text());
    });
  });
});
