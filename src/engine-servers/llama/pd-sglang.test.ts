/**
 * The SGLang rooms of a llama P/D engine: claimed once, each ended by its bound when nobody comes
 * (timers mocked), the ROOMS_MAX bound, and the bootstrap endpoint on its own listener.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { LlamaPd } from './pd.ts';
import {
  LlamaSglang,
  LlamaSglangFront,
  newSglangPdStats,
  ROOM_RELEASE_GUARD_MS,
  ROOMS_MAX,
  roomReleaseMs,
  type SglangPdStats,
  SglangRooms,
} from './pd-sglang.ts';

const RELEASE_MS = 1000;
const WAIT_MS = 300;
const OFFER = { transferId: 't-1', bytes: 2048, tokens: 12 };

describe('SglangRooms', () => {
  let stats: SglangPdStats;
  let rooms: SglangRooms;
  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout'] });
    stats = newSglangPdStats();
    rooms = new SglangRooms(stats, RELEASE_MS, WAIT_MS);
  });
  afterEach(() => mock.timers.reset());

  it('a decode that asks first gets the state once the prefill files it, and only once', async () => {
    const claim = rooms.claim('5', WAIT_MS);
    assert.equal(stats.rooms, 1, 'the asked-for room exists, pending');
    rooms.fill('5', OFFER);
    assert.deepEqual(await claim, { state: 'ready', offer: OFFER });
    assert.equal(stats.rooms, 0);
    assert.equal(stats.roomsClaimed, 1);
    const again = rooms.claim('5', WAIT_MS);
    mock.timers.tick(WAIT_MS);
    assert.deepEqual(await again, { state: 'pending' }, 'a claimed room is not handed out twice');
  });

  it('a decode that left while waiting does not take the room; the next one does', async () => {
    const left = rooms.claim('6', WAIT_MS, () => true);
    rooms.fill('6', OFFER);
    assert.deepEqual(await left, { state: 'pending' });
    assert.equal(stats.rooms, 1, 'the state stays for a decode that asks again');
    assert.deepEqual(await rooms.claim('6', WAIT_MS), { state: 'ready', offer: OFFER });
    assert.equal(stats.roomsClaimed, 1);
  });

  it('a filled room no decode claims is released before the KV server deletes its state', () => {
    rooms.fill('7', OFFER);
    const lifeMs = roomReleaseMs(RELEASE_MS);
    assert.ok(lifeMs < RELEASE_MS, 'the room goes first, so no claim gets a deleted state');
    mock.timers.tick(lifeMs - 1);
    assert.equal(stats.rooms, 1);
    mock.timers.tick(1);
    assert.equal(stats.rooms, 0);
    assert.equal(stats.roomsReleasedTimeout, 1);
  });

  it('the guard is a second for long timeouts and half the timeout for short ones', () => {
    assert.equal(roomReleaseMs(60_000), 60_000 - ROOM_RELEASE_GUARD_MS);
    assert.equal(roomReleaseMs(1000), 500);
  });

  it('a failed prefill reaches the waiting decode with its reason', async () => {
    const claim = rooms.claim('8', WAIT_MS);
    rooms.fail('8', 'the prefill answered 500');
    assert.deepEqual(await claim, { state: 'failed', message: 'the prefill answered 500' });
    mock.timers.tick(WAIT_MS);
    assert.equal(stats.rooms, 0, 'the failed room goes after the wait bound');
    assert.equal(stats.roomsFailed, 1);
  });

  it('a room asked for that no prefill fills is abandoned after the wait bound', async () => {
    const claim = rooms.claim('9', WAIT_MS / 2);
    mock.timers.tick(WAIT_MS / 2);
    assert.deepEqual(await claim, { state: 'pending' });
    assert.equal(stats.rooms, 1);
    mock.timers.tick(WAIT_MS / 2);
    assert.equal(stats.rooms, 0);
    assert.equal(stats.roomsAbandoned, 1);
  });

  it('a claim whose wait runs out leaves the waiter list: polling a pending room does not grow it', async () => {
    const pollMs = WAIT_MS / 10;
    const held = rooms.claim('10', WAIT_MS);
    for (let i = 0; i < 5; i++) {
      const poll = rooms.claim('10', pollMs);
      assert.equal(rooms.waitersOf('10'), 2, 'the poll waits beside the held claim');
      mock.timers.tick(pollMs);
      assert.deepEqual(await poll, { state: 'pending' });
    }
    assert.equal(stats.rooms, 1, 'the room is still pending');
    assert.equal(rooms.waitersOf('10'), 1, 'only the claim still waiting is listed');
    rooms.fill('10', OFFER);
    assert.deepEqual(await held, { state: 'ready', offer: OFFER });
    assert.equal(rooms.waitersOf('10'), 0);
  });

  it('refuses one room past ROOMS_MAX with SY_ERR_OVERLOADED', () => {
    for (let i = 0; i < ROOMS_MAX; i++) rooms.open(String(i));
    assert.throws(
      () => rooms.open('next'),
      (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_OVERLOADED' && e.status === 429,
    );
    rooms.clear();
    assert.equal(stats.rooms, 0);
  });
});

describe('the bootstrap listener (--bootstrap-port)', () => {
  it('hands a filled room over with the KV server address, then 504 for it; 404 elsewhere', async () => {
    const pd = new LlamaPd({ role: 'prefill', kvHost: '127.0.0.1', kvPort: 0 });
    const sg = new LlamaSglang(pd, { bootstrapPort: 0, kvWaitTimeoutMs: 50, kvReleaseTimeoutMs: 60_000 });
    await sg.start();
    try {
      const base = `http://127.0.0.1:${sg.bootstrapPort}`;
      sg.rooms.fill('42', OFFER);
      const r = await fetch(`${base}/pd/bootstrap/42?wait_ms=0`);
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), {
        state: 'ready',
        room: '42',
        kv_host: '127.0.0.1',
        kv_port: pd.kvPort,
        transfer_id: OFFER.transferId,
        bytes: OFFER.bytes,
        tokens: OFFER.tokens,
      });
      assert.equal((await fetch(`${base}/pd/bootstrap/42?wait_ms=0`)).status, 504);
      sg.rooms.fail('43', 'no state');
      const failed = await fetch(`${base}/pd/bootstrap/43`);
      assert.equal(failed.status, 410);
      assert.equal(((await failed.json()) as { message: string }).message, 'no state');
      assert.equal((await fetch(`${base}/v1/completions`)).status, 404);
      assert.equal(pd.stats.sglang?.roomsClaimed, 1, '/pd/stats carries the rooms');
    } finally {
      await sg.close();
    }
  });
});

describe('the decode front', () => {
  it('answers 400 SY_ERR_INVALID_ARGUMENT for a bootstrap address no prefill can have', async () => {
    const pd = new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0 });
    const sg = new LlamaSglang(pd, { kvWaitTimeoutMs: 50, kvReleaseTimeoutMs: 60_000 });
    // The inner server is never reached: each request fails its check first.
    const front = new LlamaSglangFront(sg, 1);
    const port = await front.listen('127.0.0.1', 0);
    try {
      const bad = [
        { bootstrap_host: '127.0.0.1', bootstrap_port: 70_000 },
        { bootstrap_host: '127.0.0.1', bootstrap_port: 0 },
        { bootstrap_host: 'evil.example/x?', bootstrap_port: 8998 },
        { bootstrap_host: '', bootstrap_port: 8998 },
      ];
      for (const address of bad) {
        const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', prompt: 'hi', max_tokens: 2, bootstrap_room: 7, ...address }),
        });
        const body = (await r.json()) as { error: { code: string; param: string } };
        assert.equal(r.status, 400, JSON.stringify(address));
        assert.equal(body.error.code, 'SY_ERR_INVALID_ARGUMENT');
      }
      assert.equal(
        sg.stats.transferFailures,
        0,
        "a bad address is the client's error, not a transfer failure",
      );
    } finally {
      await front.close();
      await sg.close();
    }
  });
});
