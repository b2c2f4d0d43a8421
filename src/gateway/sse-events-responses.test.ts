import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RESPONSES_EVENT, SSE_LINE_BYTES_MAX, SseScanner } from './sse-events.ts';

/** One Responses event as OpenAI and vLLM send it: a typed `event:` line, then its JSON data. */
function typed(type: string, fields: string, eventLine = true): string {
  return `${eventLine ? `event: ${type}\n` : ''}data: {"type":"${type}",${fields}}\n\n`;
}

function stream(deltas: readonly string[], eventLines = true, outputTokens = deltas.length): string {
  let out = typed(
    'response.created',
    '"sequence_number":0,"response":{"status":"in_progress","usage":null}',
    eventLines,
  );
  deltas.forEach((d, i) => {
    out += typed(
      RESPONSES_EVENT.delta,
      `"sequence_number":${i + 1},"delta":${JSON.stringify(d)}`,
      eventLines,
    );
  });
  out += typed(
    RESPONSES_EVENT.completed,
    `"sequence_number":${deltas.length + 1},"response":{"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"x"}]}],"usage":{"input_tokens":9,"output_tokens":${outputTokens},"output_tokens_details":{"reasoning_tokens":0},"total_tokens":${9 + outputTokens}}}`,
    eventLines,
  );
  return out;
}

/** Scans `text` cut into chunks of `size` bytes; returns the scanner and the delta count seen after each chunk. */
function scan(text: string, size: number, responses = true): { s: SseScanner; deltasAt: number[] } {
  const s = new SseScanner(responses);
  const buf = Buffer.from(text);
  const deltasAt: number[] = [];
  for (let i = 0; i < buf.length; i += size) {
    s.push(buf.subarray(i, i + size));
    deltasAt.push(s.deltas);
  }
  return { s, deltasAt };
}

describe('SseScanner on a Responses stream', () => {
  for (const eventLines of [true, false])
    it(`counts text deltas, completes at response.completed, reads output_tokens (${eventLines ? 'event: lines' : 'data only'}), at any chunking`, () => {
      const text = stream([' the', ' yard', ' is', ' full'], eventLines, 4);
      for (const size of [1, 2, 3, 7, 64, text.length]) {
        const { s } = scan(text, size);
        assert.equal(s.deltas, 4, `size ${size}`);
        assert.equal(s.tokenEvents, 4);
        assert.equal(s.done, true, `size ${size}`);
        assert.equal(s.usageTokens, 4);
        assert.equal(s.events, 6, 'created, four deltas, completed');
      }
    });

  it('sees no delta before the first delta event is whole (response.created is no token)', () => {
    const text = stream([' a', ' b']);
    const firstDeltaEnd = text.indexOf('\n\n', text.indexOf(RESPONSES_EVENT.delta)) + 2;
    const { deltasAt } = scan(text, 1);
    assert.equal(deltasAt[firstDeltaEnd - 2], 0, 'not before its blank line');
    assert.equal(deltasAt[firstDeltaEnd - 1], 1, 'at its blank line');
  });

  it('is not complete without response.completed (a cut stream, response.failed, an error event)', () => {
    const full = stream([' a', ' b']);
    const cut = full.slice(0, full.indexOf(`event: ${RESPONSES_EVENT.completed}`));
    for (const text of [
      cut,
      cut + typed('response.failed', '"response":{"status":"failed"}'),
      `${cut}event: error\ndata: {"type":"error","code":"x","message":"m"}\n\n`,
    ]) {
      const { s } = scan(text, 5);
      assert.equal(s.done, false);
      assert.equal(s.deltas, 2);
      // The server's own error told the client why; a cut stream did not.
      assert.equal(s.endedWithError, text !== cut);
    }
    // Only as the last event: a stream that goes on past an error event ended with no error told.
    const { s } = scan(
      `${cut}event: error\ndata: {"type":"error"}\n\n${typed(RESPONSES_EVENT.delta, '"delta":"c"')}`,
      5,
    );
    assert.equal(s.endedWithError, false);
  });

  it('response.incomplete (max_output_tokens reached) ends the stream too', () => {
    const text = typed(RESPONSES_EVENT.incomplete, '"response":{"usage":{"output_tokens":3}}');
    const { s } = scan(text, 4);
    assert.equal(s.done, true);
    assert.equal(s.usageTokens, 3);
  });

  it('is not fooled by a delta whose text names an event type', () => {
    for (const eventLines of [true, false]) {
      const text = typed(
        RESPONSES_EVENT.delta,
        '"delta":"\\"type\\":\\"response.completed\\" response.completed"',
        eventLines,
      );
      const { s } = scan(text, 3);
      assert.equal(s.done, false);
      assert.equal(s.deltas, 1);
    }
  });

  it('completes on the event: line when the completed event is longer than SSE_LINE_BYTES_MAX (usage unread)', () => {
    const long = 'w'.repeat(SSE_LINE_BYTES_MAX);
    const text = `${typed(RESPONSES_EVENT.delta, '"delta":"w"')}${typed(RESPONSES_EVENT.completed, `"response":{"output":"${long}","usage":{"output_tokens":1}}`)}`;
    const { s } = scan(text, 4096);
    assert.equal(s.done, true);
    assert.equal(s.usageTokens, undefined);
    assert.equal(s.tokenEvents, 1, 'the delta count stands in');
  });

  it('an over-long event: value is no type the gateway acts on (its data is not read for one)', () => {
    const text = `event: ${'x'.repeat(100)}\ndata: {"type":"response.output_text.delta","delta":"a"}\n\n`;
    const { s } = scan(text, 1);
    assert.equal(s.deltas, 0, 'the event: line named a type, one the gateway does not act on');
  });

  it('a chat scanner ignores event: lines and needs [DONE]', () => {
    const { s } = scan(stream([' a']), 8, false);
    assert.equal(s.done, false);
    assert.equal(s.deltas, 0);
    assert.equal(s.events, 3);
  });
});
