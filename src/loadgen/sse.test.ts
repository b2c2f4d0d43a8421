import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { readOpenAiChunk, SSE_LINE_CHARS_MAX, type SseEvent, SseLineTooLongError, SseParser } from './sse.ts';

function parseAll(pieces: readonly string[]): SseEvent[] {
  const parser = new SseParser();
  const events: SseEvent[] = [];
  for (const p of pieces) events.push(...parser.feed(p));
  events.push(...parser.end());
  return events;
}

test('events, comments, multi-line data, event names and all three line endings', () => {
  const stream =
    ': keep-alive\n\n' +
    'data: {"a":1}\n\n' +
    'event: ping\r\ndata: x\r\n\r\n' +
    'data: line one\rdata: line two\r\r' +
    'data:no-space\n\n' +
    'data\n\n' +
    'id: 7\nretry: 10\ndata: [DONE]\n\n';
  assert.deepEqual(parseAll([stream]), [
    { event: 'message', data: '{"a":1}' },
    { event: 'ping', data: 'x' },
    { event: 'message', data: 'line one\nline two' },
    { event: 'message', data: 'no-space' },
    { event: 'message', data: '' },
    { event: 'message', data: '[DONE]' },
  ]);
});

test('an event is handed back only once its blank line arrives', () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed('data: {"x"'), []);
  assert.deepEqual(parser.feed(':1}\n'), []);
  assert.deepEqual(parser.feed('\n'), [{ event: 'message', data: '{"x":1}' }]);
});

test('a CR at the end of one piece and its LF at the start of the next make one line end', () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed('data: a\r'), []);
  assert.deepEqual(parser.feed('\n\r'), [{ event: 'message', data: 'a' }]);
  assert.deepEqual(parser.feed('\ndata: b\n\n'), [{ event: 'message', data: 'b' }]);
});

test('end() hands back a last event that lost its blank line', () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed('data: tail'), []);
  assert.deepEqual(parser.end(), [{ event: 'message', data: 'tail' }]);
});

test('property: any split of a stream into pieces gives the same events', () => {
  const field = fc.string({ unit: fc.constantFrom('a', 'b', ' ', ':', '{', '}', '"', 'é', '😀') });
  const newline = fc.constantFrom('\n', '\r\n', '\r');
  const eventArb = fc.record({
    data: fc.array(field, { minLength: 1, maxLength: 3 }),
    nl: newline,
    name: fc.option(fc.constantFrom('ping', 'message', 'update'), { nil: undefined }),
    comment: fc.boolean(),
  });
  fc.assert(
    fc.property(
      fc.array(eventArb, { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (events, cuts) => {
        let stream = '';
        for (const e of events) {
          if (e.comment) stream += `: note${e.nl}`;
          if (e.name !== undefined) stream += `event: ${e.name}${e.nl}`;
          for (const d of e.data) stream += `data: ${d}${e.nl}`;
          stream += e.nl;
        }
        const expected = events.map((e) => ({ event: e.name ?? 'message', data: e.data.join('\n') }));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const pieces: string[] = [];
        let last = 0;
        for (const p of points) {
          pieces.push(stream.slice(last, p));
          last = p;
        }
        pieces.push(stream.slice(last));
        assert.deepEqual(parseAll(pieces), expected);
        assert.deepEqual(parseAll([stream]), expected);
      },
    ),
    { numRuns: 300 },
  );
});

test('a line that never ends is refused past its bound', () => {
  const parser = new SseParser();
  const chunk = 'x'.repeat(1 << 20);
  assert.throws(() => {
    for (let i = 0; i <= SSE_LINE_CHARS_MAX / chunk.length; i++) parser.feed(chunk);
  }, SseLineTooLongError);
});

test('readOpenAiChunk reads chat deltas, completion text, usage, errors and [DONE]', () => {
  assert.deepEqual(readOpenAiChunk('[DONE]'), { kind: 'done' });
  assert.deepEqual(readOpenAiChunk('{"choices":[{"index":0,"delta":{"content":"Hi"}}]}'), {
    kind: 'data',
    text: 'Hi',
    promptTokens: undefined,
    completionTokens: undefined,
  });
  assert.equal(readOpenAiChunk('{"choices":[{"delta":{"role":"assistant","content":""}}]}').kind, 'data');
  assert.deepEqual(readOpenAiChunk('{"choices":[{"delta":{"reasoning_content":"hmm"}}]}'), {
    kind: 'data',
    text: 'hmm',
    promptTokens: undefined,
    completionTokens: undefined,
  });
  assert.deepEqual(readOpenAiChunk('{"choices":[{"index":0,"text":" world","finish_reason":null}]}'), {
    kind: 'data',
    text: ' world',
    promptTokens: undefined,
    completionTokens: undefined,
  });
  assert.deepEqual(readOpenAiChunk('{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}'), {
    kind: 'data',
    text: '',
    promptTokens: 12,
    completionTokens: 5,
  });
  assert.deepEqual(readOpenAiChunk('{"error":{"message":"boom","code":"SY_ERR_INTERNAL"}}'), {
    kind: 'error',
    code: 'SY_ERR_INTERNAL',
    message: 'boom',
  });
  assert.deepEqual(readOpenAiChunk('{"error":{"message":"bad","code":400}}'), {
    kind: 'error',
    code: '400',
    message: 'bad',
  });
  const bad = readOpenAiChunk('{"choices":');
  assert.equal(bad.kind, 'error');
  assert.equal(bad.kind === 'error' ? bad.code : '', 'bad_json');
});
