import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { expandPrevious, ResponseCapture, ResponseStore, type StoredResponse } from './response-store.ts';
import { inputItemsPage, responseRouteOf } from './response-store-http.ts';

/** A store on a clock the test moves. */
function storeOf(
  countMax: number,
  bytesMax = 1 << 20,
  ttlMs = 0,
): { store: ResponseStore; clock: { ms: number } } {
  const clock = { ms: 0 };
  return { store: new ResponseStore({ countMax, bytesMax, ttlMs }, () => clock.ms), clock };
}

function entry(id: string, bytes = 10): Omit<StoredResponse, 'storedAtMs'> {
  return { id, response: { id }, inputItems: [], outputItems: [], bytes };
}

function thrownCode(f: () => unknown): string | undefined {
  try {
    f();
  } catch (error) {
    if (error instanceof SwitchyardError) return error.code;
    throw error;
  }
  return undefined;
}

describe('ResponseStore', () => {
  it('evicts the least recently used past its count; a read makes an entry recent', () => {
    const { store } = storeOf(2);
    store.put('t', entry('r1'));
    store.put('t', entry('r2'));
    assert.ok(store.get('t', 'r1'));
    store.put('t', entry('r3'));
    assert.equal(store.get('t', 'r2'), undefined);
    assert.ok(store.get('t', 'r1'));
    assert.ok(store.get('t', 'r3'));
    assert.deepEqual([store.stats.count, store.stats.evicted, store.stats.bytes], [2, 1, 20]);
  });

  it('evicts past its bytes, and stores nothing larger than them', () => {
    const { store } = storeOf(100, 1024);
    store.put('t', entry('r1', 600));
    store.put('t', entry('r2', 600));
    assert.equal(store.get('t', 'r1'), undefined);
    assert.equal(store.put('t', entry('big', 1025)), false);
    assert.deepEqual([store.stats.count, store.stats.bytes, store.stats.tooLarge], [1, 600, 1]);
  });

  it('scopes ids by tenant', () => {
    const { store } = storeOf(10);
    store.put('a', entry('r1'));
    assert.equal(store.get('b', 'r1'), undefined);
    assert.equal(store.delete('b', 'r1'), false);
    assert.ok(store.get('a', 'r1'));
    assert.equal(store.delete('a', 'r1'), true);
    assert.equal(store.get('a', 'r1'), undefined);
    assert.deepEqual([store.stats.count, store.stats.bytes], [0, 0]);
  });

  it('forgets an entry at its age on the given clock', () => {
    const { store, clock } = storeOf(10, 1 << 20, 1000);
    store.put('t', entry('r1'));
    clock.ms = 999;
    assert.ok(store.get('t', 'r1'));
    clock.ms = 1000;
    assert.equal(store.get('t', 'r1'), undefined);
    assert.equal(store.stats.expired, 1);
  });

  it('countMax 0 stores nothing', () => {
    const { store } = storeOf(0);
    assert.equal(store.put('t', entry('r1')), false);
    assert.equal(store.enabled, false);
  });
});

describe('expandPrevious', () => {
  const { store } = storeOf(10);
  store.put('t', {
    id: 'resp_1',
    response: { id: 'resp_1' },
    inputItems: [{ type: 'message', role: 'user', content: 'hi' }],
    outputItems: [
      { type: 'message', role: 'assistant', id: 'msg_1', content: [{ type: 'output_text', text: 'yo' }] },
    ],
    bytes: 10,
  });

  it('sends the whole conversation, without the field and without the old instructions', () => {
    const body = Buffer.from(
      JSON.stringify({ model: 'm', previous_response_id: 'resp_1', input: 'again', instructions: 'new' }),
    );
    const expandedBuffer = expandPrevious(body, 't', store, 1 << 20) as Buffer;
    const expanded = JSON.parse(expandedBuffer.toString()) as Record<string, unknown>;
    assert.equal('previous_response_id' in expanded, false);
    assert.equal(expanded['instructions'], 'new');
    // Its answer, stored, names the response it continued (the engine saw no such field).
    const capture = new ResponseCapture(store, 't', expandedBuffer, 1 << 20);
    const answer = { id: 'resp_2', status: 'completed', previous_response_id: null, output: [] };
    const sent = JSON.parse(String(capture.json(Buffer.from(JSON.stringify(answer)))));
    assert.equal(sent['previous_response_id'], 'resp_1');
    assert.equal(store.get('t', 'resp_2')?.response['previous_response_id'], 'resp_1');
    assert.deepEqual(
      (expanded['input'] as { role: string }[]).map((item) => item.role),
      ['user', 'assistant', 'user'],
    );
  });

  it('leaves a body naming none as it is; refuses an unknown or malformed id', () => {
    assert.equal(expandPrevious(Buffer.from('{"model":"m","input":"x"}'), 't', store, 1 << 20), undefined);
    assert.equal(
      expandPrevious(Buffer.from('{"previous_response_id":null}'), 't', store, 1 << 20),
      undefined,
    );
    const unknown = Buffer.from('{"model":"m","previous_response_id":"resp_1","input":"x"}');
    assert.equal(
      thrownCode(() => expandPrevious(unknown, 'other', store, 1 << 20)),
      'SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND',
    );
    // A conversation grown past the body bound is refused as a body that large sent whole is.
    assert.equal(
      thrownCode(() => expandPrevious(unknown, 't', store, 100)),
      'SY_ERR_REQUEST_TOO_LARGE',
    );
    const bad = Buffer.from('{"previous_response_id":7}');
    assert.equal(
      thrownCode(() => expandPrevious(bad, 't', store, 1 << 20)),
      'SY_ERR_INVALID_ARGUMENT',
    );
  });
});

describe('ResponseCapture', () => {
  const request = Buffer.from(JSON.stringify({ model: 'm', input: 'hi' }));
  const answer = {
    id: 'resp_9',
    object: 'response',
    status: 'completed',
    store: false,
    output: [{ id: 'msg_9' }],
  };

  it('stores a JSON answer and rewrites it to say store: true', () => {
    const { store } = storeOf(10);
    const capture = new ResponseCapture(store, 't', request, 1 << 20);
    capture.begin(false);
    const sent = capture.json(Buffer.from(JSON.stringify(answer)));
    assert.equal(JSON.parse(String(sent))['store'], true);
    const kept = store.get('t', 'resp_9');
    assert.deepEqual(kept?.inputItems, [{ type: 'message', role: 'user', content: 'hi' }]);
    assert.deepEqual(kept?.outputItems, [{ id: 'msg_9' }]);
  });

  it('does not store a failed answer, nor one the request asked not to store', () => {
    const { store } = storeOf(10);
    const failed = new ResponseCapture(store, 't', request, 1 << 20);
    assert.equal(failed.json(Buffer.from(JSON.stringify({ ...answer, status: 'failed' }))), undefined);
    const unasked = new ResponseCapture(store, 't', Buffer.from('{"input":"x","store":false}'), 1 << 20);
    assert.equal(unasked.json(Buffer.from(JSON.stringify(answer))), undefined);
    assert.equal(store.stats.count, 0);
  });

  it("reads a stream's final event split across chunks; drops an event over its bound", () => {
    const events =
      'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_9","status":"in_progress"}}\n\n' +
      `event: response.completed\ndata: ${JSON.stringify({ type: 'response.completed', response: answer })}\n\n`;
    const { store } = storeOf(10);
    const capture = new ResponseCapture(store, 't', request, 1 << 20);
    capture.begin(true);
    const bytes = Buffer.from(events);
    for (let at = 0; at < bytes.length; at += 7) capture.sseChunk(bytes.subarray(at, at + 7));
    capture.sseEnded();
    assert.equal(store.get('t', 'resp_9')?.response['store'], true);

    const tight = storeOf(10).store;
    const bounded = new ResponseCapture(tight, 't', request, 100);
    bounded.begin(true);
    for (let at = 0; at < bytes.length; at += 7) bounded.sseChunk(bytes.subarray(at, at + 7));
    bounded.sseEnded();
    assert.equal(tight.stats.count, 0);
  });
});

describe('the routes by id', () => {
  it('reads the id and the input_items route from the path', () => {
    assert.deepEqual(responseRouteOf('/v1/responses/resp_1'), { id: 'resp_1', items: false });
    assert.deepEqual(responseRouteOf('/v1/responses/resp_1/input_items'), { id: 'resp_1', items: true });
    assert.equal(responseRouteOf('/v1/responses/resp_1/cancel'), undefined);
    assert.equal(responseRouteOf('/v1/responses/'), undefined);
  });

  it('pages input items newest first, with limit, order and after', () => {
    const stored: StoredResponse = {
      id: 'resp_1',
      response: {},
      inputItems: ['a', 'b', 'c'].map((content) => ({ type: 'message', role: 'user', content })),
      outputItems: [],
      bytes: 1,
      storedAtMs: 0,
    };
    const page = inputItemsPage(stored, new URLSearchParams('limit=2'));
    assert.deepEqual(
      [page['first_id'], page['last_id'], page['has_more']],
      ['resp_1_in_2', 'resp_1_in_1', true],
    );
    const rest = inputItemsPage(stored, new URLSearchParams('limit=2&after=resp_1_in_1'));
    assert.deepEqual([rest['first_id'], rest['has_more']], ['resp_1_in_0', false]);
    const asc = inputItemsPage(stored, new URLSearchParams('order=asc'));
    assert.equal(asc['first_id'], 'resp_1_in_0');
    assert.equal(
      thrownCode(() => inputItemsPage(stored, new URLSearchParams('limit=0'))),
      'SY_ERR_INVALID_ARGUMENT',
    );
  });
});
