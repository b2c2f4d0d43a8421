import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import {
  expandPrevious,
  heldBytesOf,
  ResponseCapture,
  ResponseStore,
  type StoredResponse,
} from './response-store.ts';
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

describe('item_reference inputs', () => {
  const message = (id: string, text: string): object => ({
    type: 'message',
    role: 'assistant',
    id,
    content: [{ type: 'output_text', text }],
  });
  /** A stored turn with one output message `msg_<n>`; turn 2 (chained) holds msg_1 in its input too. */
  function turn(n: number, inputItems: unknown[] = []): Omit<StoredResponse, 'storedAtMs'> {
    return { ...entry(`resp_${n}`), inputItems, outputItems: [message(`msg_${n}`, `a${n}`)] };
  }
  const reference = (ids: string[]): Buffer =>
    Buffer.from(
      JSON.stringify({
        model: 'm',
        input: [{ role: 'user', content: 'hi' }, ...ids.map((id) => ({ type: 'item_reference', id }))],
      }),
    );
  const resolved = (store: ResponseStore, ids: string[], tenant = 't'): unknown[] =>
    (JSON.parse(String(expandPrevious(reference(ids), tenant, store, 1 << 20))) as { input: unknown[] })
      .input;
  function thrown(f: () => unknown): [string, string | null] | undefined {
    try {
      f();
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      return [error.code, error.toJSON().error.param];
    }
    return undefined;
  }

  it('replaces each reference by the stored item, in place; refuses one not held, naming input[i]', () => {
    const { store } = storeOf(10);
    store.put('t', turn(1));
    assert.deepEqual(resolved(store, ['msg_1']), [{ role: 'user', content: 'hi' }, message('msg_1', 'a1')]);
    assert.deepEqual(
      thrown(() => expandPrevious(reference(['msg_1', 'msg_9']), 't', store, 1 << 20)),
      ['SY_ERR_ITEM_NOT_FOUND', 'input[2]'],
    );
    // Another tenant's item is not found; a malformed reference is a 400 naming its id.
    assert.deepEqual(
      thrown(() => resolved(store, ['msg_1'], 'other')),
      ['SY_ERR_ITEM_NOT_FOUND', 'input[1]'],
    );
    assert.deepEqual(
      thrown(() => resolved(store, [''])),
      ['SY_ERR_INVALID_ARGUMENT', 'input[1].id'],
    );
    // The store off: references pass as sent, for the engine to answer.
    assert.equal(expandPrevious(reference(['msg_1']), 't', storeOf(0).store, 1 << 20), undefined);
  });

  it("resolves alongside previous_response_id, the references in this turn's input", () => {
    const { store } = storeOf(10);
    store.put('t', turn(1));
    const body = Buffer.from(
      JSON.stringify({
        model: 'm',
        previous_response_id: 'resp_1',
        input: [{ type: 'item_reference', id: 'msg_1' }],
      }),
    );
    const input = (JSON.parse(String(expandPrevious(body, 't', store, 1 << 20))) as { input: unknown[] })
      .input;
    assert.deepEqual(input, [message('msg_1', 'a1'), message('msg_1', 'a1')]);
  });

  it('the index follows eviction, expiry and delete, and a chained turn still holds an earlier item', () => {
    const { store, clock } = storeOf(2, 1 << 20, 1000);
    store.put('t', turn(1));
    store.put('t', turn(2, [message('msg_1', 'a1')]));
    assert.equal(store.itemCount, 2);
    // Deleting turn 1 leaves msg_1 found in turn 2's input.
    store.delete('t', 'resp_1');
    assert.deepEqual(store.item('t', 'msg_1'), message('msg_1', 'a1'));
    // Turn 3 and 4 evict turn 2 (count 2): msg_1 and msg_2 are gone with it.
    store.put('t', turn(3));
    store.put('t', turn(4));
    assert.equal(store.item('t', 'msg_1'), undefined);
    assert.equal(store.item('t', 'msg_2'), undefined);
    assert.deepEqual(store.item('t', 'msg_4'), message('msg_4', 'a4'));
    assert.equal(store.itemCount, 2);
    store.delete('t', 'resp_4');
    assert.equal(store.item('t', 'msg_4'), undefined);
    // Expired on the clock: not found, and out of the index.
    clock.ms = 1000;
    assert.equal(store.item('t', 'msg_3'), undefined);
    assert.deepEqual([store.itemCount, store.stats.count, store.stats.expired], [0, 0, 1]);
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

  it('counts a kept answer as the heap it holds: its JSON parsed, plus each indexed item', () => {
    const items = Array.from({ length: 200 }, (_, i) => ({ id: `msg_${i}`, type: 'message', content: 'x' }));
    const many = Buffer.from(JSON.stringify({ model: 'm', input: items }));
    const { store } = storeOf(10, 1 << 30);
    const capture = new ResponseCapture(store, 't', many, 1 << 20);
    capture.begin(false);
    const answerBytes = Buffer.from(JSON.stringify(answer));
    capture.json(answerBytes);
    const json = many.length + answerBytes.length;
    // 201 items with ids (200 sent, one answered) cost more than their JSON: R measured 5.6x at 200 per entry.
    assert.ok(
      store.stats.bytes >= json + 201 * 250,
      `${store.stats.bytes} bytes counted for ${json} of JSON`,
    );
    assert.equal(store.stats.bytes, heldBytesOf(json, [...items, { id: 'msg_9' }]));
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

    // One byte a chunk: every blank line falls across two chunks, where the search resumes.
    const bytewise = storeOf(10).store;
    const single = new ResponseCapture(bytewise, 't', request, 1 << 20);
    single.begin(true);
    for (let at = 0; at < bytes.length; at++) single.sseChunk(bytes.subarray(at, at + 1));
    single.sseEnded();
    assert.equal(bytewise.get('t', 'resp_9')?.response['store'], true);

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
