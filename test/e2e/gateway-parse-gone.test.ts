/**
 * End-to-end: a client that leaves while its large body (limits.offThreadParseBytes or more) is
 * parsed on a worker is counted, as one that leaves while its body is read is: `rejected`
 * SY_ERR_INVALID_ARGUMENT. It was counted nowhere (R1: 10 requests with 6.7 MB bodies whose clients
 * left gave accepted +0, rejected +0), so /stats lost every such request. Raw sockets against a real
 * gateway on 127.0.0.1; the waits are hang guards only.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, it } from 'node:test';
import {
  type GatewayStatsJson,
  getJson,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { openSocket } from './support/raw-http.ts';

/** Bodies sent at once: the one parse worker (2 cores) takes one at a time, the rest wait their turn. */
const CLIENTS = 4;
const HANG_GUARD_MS = 30_000;

type Stats = GatewayStatsJson & { parsePool?: { bytes: number; offThread: number } };

const teardown = new Teardown();
let gw: TestGateway;

before(async () => {
  // No backend: a body that is parsed with its client still there is refused (unknown model), also
  // counted in `rejected`; every request must show up exactly once either way.
  gw = await startTestGateway({ backends: [], limits: { offThreadParseBytes: 1024 * 1024 } }, teardown);
});
after(() => teardown.run());

/** A chat body of about 3 MB: 8,000 short messages (tens of milliseconds of parsing each). */
function largeBody(k: number): string {
  const messages = Array.from({ length: 8000 }, (_, i) => ({
    role: 'user',
    content: `${'word '.repeat(60)}${k}-${i}`,
  }));
  return JSON.stringify({ model: 'no-such-model', messages, max_tokens: 2 });
}

const stats = () => getJson<Stats>(`${gw.url}/stats`);
const counted = (s: Stats) => s.accepted + Object.values(s.rejected).reduce((a, b) => a + b, 0);

/** Polls /stats until `done` holds (hang guard only). */
async function until(done: (s: Stats) => boolean, what: string): Promise<Stats> {
  const start = Date.now();
  for (;;) {
    const s = await stats();
    if (done(s)) return s;
    assert.ok(Date.now() - start < HANG_GUARD_MS, `${what}: ${JSON.stringify(s)}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

it('counts a client that leaves while its body is parsed off-thread', async () => {
  const before = await stats();
  const bodies = Array.from({ length: CLIENTS }, (_, k) => largeBody(k));
  const total = bodies.reduce((n, b) => n + Buffer.byteLength(b), 0);
  const sockets: Socket[] = [];
  for (const body of bodies) {
    const socket = await openSocket(gw.url);
    socket.on('error', () => {});
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    sockets.push(socket);
  }
  // Every body is read whole and waits in (or on) the parse pool: the clients leave now.
  await until((s) => (s.parsePool?.bytes ?? 0) === total, 'bodies never all reached the parse pool');
  for (const socket of sockets) socket.destroy();
  const after = await until((s) => s.parsePool?.bytes === 0, 'parse pool never emptied');
  assert.equal(after.parsePool?.offThread, (before.parsePool?.offThread ?? 0) + CLIENTS);
  assert.equal(counted(after) - counted(before), CLIENTS, JSON.stringify(after));
  assert.equal(after.inFlight, 0);
  // The gateway still answers.
  assert.equal(typeof (await stats()).accepted, 'number');
});
