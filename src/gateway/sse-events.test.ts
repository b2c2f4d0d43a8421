import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { JsonFraming, SSE_LINE_BYTES_MAX, SseScanner } from './sse-events.ts';

interface Scan {
  done: boolean;
  events: number;
  usageTokens: number | undefined;
}

/** A plain string implementation of the same rules (WHATWG event-stream), to compare against. */
function reference(text: string): Scan {
  const out: Scan = { done: false, events: 0, usageTokens: undefined };
  // Only terminated lines count: what follows the last line break is an unfinished line.
  const lines = text.split(/\r\n|\r|\n/);
  lines.pop();
  let data: string[] = [];
  for (const line of lines) {
    if (line === '') {
      if (data.length > 0) {
        const joined = data.join('\n');
        if (joined === '[DONE]') out.done = true;
        else {
          out.events++;
          // Usage: the last count in the event's last data line.
          const last = data.at(-1) ?? '';
          const at = last.lastIndexOf('"completion_tokens":');
          const m = at < 0 ? null : /^"completion_tokens": *(\d{1,12})/.exec(last.slice(at));
          out.usageTokens = m === null ? undefined : Number(m[1]);
        }
      }
      data = [];
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') continue;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    data.push(value);
  }
  return out;
}

function scan(chunks: readonly Buffer[]): Scan {
  const s = new SseScanner();
  for (const c of chunks) s.push(c);
  return { done: s.done, events: s.events, usageTokens: s.usageTokens };
}

/** `buf` cut at `cuts` (sorted offsets). */
function split(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of cuts) {
    out.push(buf.subarray(at, c));
    at = c;
  }
  out.push(buf.subarray(at));
  return out;
}

const STREAM = [
  ': keep-alive comment\n\n',
  'data: {"id":"a","choices":[{"delta":{"content":"the answer is [DONE]"}}]}\n\n',
  'event: message\r\ndata:{"choices":[{"delta":{"content":"\\"completion_tokens\\": 99"}}]}\r\n\r\n',
  'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens": 42,"completion_tokens_details":{"x":1}}}\r\r',
  'data: [DONE]\n\n',
].join('');

describe('SseScanner', () => {
  it('reads a whole stream: events, usage, [DONE]', () => {
    assert.deepEqual(scan([Buffer.from(STREAM)]), { done: true, events: 3, usageTokens: 42 });
    assert.deepEqual(reference(STREAM), { done: true, events: 3, usageTokens: 42 });
  });

  it('gives the same answer with the stream cut at any one or two points', () => {
    const buf = Buffer.from(STREAM);
    const whole = scan([buf]);
    for (let a = 0; a <= buf.length; a++)
      for (let b = a; b <= buf.length; b++)
        assert.deepEqual(scan(split(buf, [a, b])), whole, `cut at ${a} and ${b}`);
    assert.deepEqual(scan(Array.from(buf, (_, i) => buf.subarray(i, i + 1))), whole, 'one byte per chunk');
  });

  it('counts [DONE] only as an event whose data is exactly [DONE]', () => {
    const cases: [string, boolean][] = [
      ['data: [DONE]\n\n', true],
      ['data:[DONE]\n\n', true],
      ['data: [DONE]\r\n\r\n', true],
      ['data: [DONE]\r\r', true],
      [': comment\ndata: [DONE]\n\n', true],
      ['id: 7\ndata: [DONE]\n\n', true],
      ['data: [DONE]\n', false], // never dispatched: no blank line
      ['data: [DONE]', false],
      ['data:  [DONE]\n\n', false], // the second space is data
      ['data: [DONE] \n\n', false],
      ['data: [DONE]x\n\n', false],
      ['data: [DONE\n\n', false],
      ['data: [DONE]\ndata: [DONE]\n\n', false], // data is "[DONE]\n[DONE]"
      ['data: {"choices":[{"text":"[DONE]"}]}\n\n', false],
      ['data: {"text":"ends in data: [DONE]"}\n\n', false],
      [': data: [DONE]\n\n', false],
      ['event: [DONE]\n\n', false],
      ['xdata: [DONE]\n\n', false],
      ['dat: [DONE]\n\n', false],
    ];
    for (const [text, done] of cases) {
      assert.equal(scan([Buffer.from(text)]).done, done, JSON.stringify(text));
      assert.equal(reference(text).done, done, `reference: ${JSON.stringify(text)}`);
    }
  });

  it('reads usage from the last event, from a real key only', () => {
    const usage = (text: string) => scan([Buffer.from(text)]).usageTokens;
    assert.equal(
      usage('data: {"a":1}\n\ndata: {"usage":{"completion_tokens":  12}}\n\ndata: [DONE]\n\n'),
      12,
    );
    assert.equal(usage('data: {"usage":{"completion_tokens":12,"completion_tokens_details":{}}}\n\n'), 12);
    // A key inside a string is escaped: not a match.
    assert.equal(usage('data: {"content":"\\"completion_tokens\\":77"}\n\n'), undefined);
    // Only the last event counts, and only when it has a count.
    assert.equal(usage('data: {"usage":{"completion_tokens":3}}\n\ndata: {"a":1}\n\n'), undefined);
    assert.equal(usage('data: {"usage":{"completion_tokens":}}\n\n'), undefined);
    // Usage in an event never dispatched does not count.
    assert.equal(usage('data: {"usage":{"completion_tokens":5}}\n'), undefined);
    // A line longer than the bound is not kept.
    const long = `data: {"pad":"${'x'.repeat(SSE_LINE_BYTES_MAX)}","usage":{"completion_tokens":9}}\n\n`;
    assert.equal(usage(long), undefined);
    const fits = `data: {"pad":"${'x'.repeat(SSE_LINE_BYTES_MAX - 100)}","usage":{"completion_tokens":9}}\n\n`;
    const buf = Buffer.from(fits);
    assert.equal(scan(split(buf, [1000, 40_000])).usageTokens, 9);
  });

  it('knows how to start a clean event after a partial one', () => {
    const s = new SseScanner();
    assert.equal(s.resync(), '');
    s.push(Buffer.from('data: {"a":'));
    assert.equal(s.resync(), '\n\n');
    s.push(Buffer.from('1}\n'));
    assert.equal(s.resync(), '\n');
    s.push(Buffer.from('\n'));
    assert.equal(s.resync(), '');
    s.push(Buffer.from(': comment'));
    assert.equal(s.resync(), '\n\n');
  });

  it('matches the reference on generated streams cut at generated points', () => {
    const piece = fc.constantFrom(
      'data: ',
      'data:',
      'data',
      'event: x',
      ': c',
      'id: 1',
      '[DONE]',
      '[DONE',
      '{"choices":[{"delta":{"content":"[DONE]"}}]}',
      '{"usage":{"completion_tokens":',
      '"completion_tokens":',
      '"completion_',
      ' 17',
      '9',
      '}}',
      '"',
      '\\',
      '\n',
      '\n',
      '\r',
      '\r\n',
      '\n\n',
      'é',
    );
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (pieces, rawCuts) => {
          const text = pieces.join('');
          const buf = Buffer.from(text);
          const cuts = rawCuts.map((c) => c % (buf.length + 1)).sort((a, b) => a - b);
          assert.deepEqual(scan(split(buf, cuts)), reference(text), JSON.stringify({ text, cuts }));
        },
      ),
      { numRuns: 2000, seed: 11 },
    );
  });
});

function framing(chunks: readonly Buffer[]): boolean {
  const f = new JsonFraming();
  for (const c of chunks) f.push(c);
  return f.complete;
}

describe('JsonFraming', () => {
  const body = Buffer.from(
    JSON.stringify({
      id: 'x',
      choices: [{ message: { content: 'a "quoted" \\ back\\slash } ] { [ "' }, finish_reason: 'stop' }],
      usage: { completion_tokens: 3 },
    }),
  );

  it('is complete only for the whole body, wherever the chunks are cut', () => {
    assert.equal(framing([body]), true);
    assert.equal(framing([Buffer.concat([Buffer.from(' \n'), body, Buffer.from('\r\n ')])]), true);
    for (let a = 0; a <= body.length; a++) {
      assert.equal(framing([body.subarray(0, a)]), a === body.length, `prefix of ${a} bytes`);
      assert.equal(framing(split(body, [a])), true, `cut at ${a}`);
      for (let b = a; b <= body.length; b += 7) assert.equal(framing(split(body, [a, b])), true);
    }
    assert.equal(framing(Array.from(body, (_, i) => body.subarray(i, i + 1))), true);
  });

  it('refuses what is not one object or array', () => {
    for (const text of ['', '  ', '{"a":1}x', '{"a":1}{}', '42', '"s"', '{"a":[1}', '{"a":"\\"}', ']'])
      assert.equal(framing([Buffer.from(text)]), false, JSON.stringify(text));
    for (const text of ['[]', '{}', '[{"a":"]"}]', '{"a":"\\\\"}'])
      assert.equal(framing([Buffer.from(text)]), true, JSON.stringify(text));
  });
});
