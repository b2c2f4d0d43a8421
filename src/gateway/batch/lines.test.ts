import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateInput } from './lines.ts';

const LIMITS = { linesMax: 100, errorsMax: 10 };
const chat = (id: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
    ...extra,
  });

describe('batch input validation', () => {
  it('keeps good lines in order and refuses bad requests with a code, skipping blank lines', () => {
    const text = [
      chat('a'),
      '',
      chat('b', { url: '/v1/completions' }),
      chat('c', { method: 'GET' }),
      chat('d', { body: { model: 'm', messages: 'nope' } }),
      chat('e', { body: { model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true } }),
      chat('f'),
      '',
    ].join('\n');
    const r = validateInput(text, '/v1/chat/completions', LIMITS);
    assert.equal(r.kind, 'ok');
    if (r.kind !== 'ok') return;
    assert.deepEqual(
      r.lines.map((l) => [l.line, l.customId]),
      [
        [1, 'a'],
        [7, 'f'],
      ],
    );
    assert.deepEqual(
      r.refused.map((l) => [l.line, l.customId, l.code]),
      [
        [3, 'b', 'SY_ERR_INVALID_ARGUMENT'],
        [4, 'c', 'SY_ERR_INVALID_ARGUMENT'],
        [5, 'd', 'SY_ERR_INVALID_ARGUMENT'],
        [6, 'e', 'SY_ERR_INVALID_ARGUMENT'],
      ],
    );
    assert.match(r.refused[0]?.message ?? '', /url/);
    const body = JSON.parse((r.lines[0] ?? assert.fail()).body.toString('utf8')) as { model: string };
    assert.equal(body.model, 'm');
  });

  it('fails the whole file for lines without a usable custom_id, naming each line', () => {
    const text = [chat('a'), '{not json', JSON.stringify({ method: 'POST' }), chat('a')].join('\n');
    const r = validateInput(text, '/v1/chat/completions', LIMITS);
    assert.equal(r.kind, 'failed');
    if (r.kind !== 'failed') return;
    assert.deepEqual(
      r.errors.map((e) => e.line),
      [2, 3, 4],
    );
    assert.match(r.errors[2]?.message ?? '', /repeats/);
  });

  it('fails an empty file and one over linesMax; caps the errors listed', () => {
    assert.equal(validateInput('\n\n', '/v1/completions', LIMITS).kind, 'failed');
    const many = Array.from({ length: 5 }, (_, i) => chat(`x${i}`)).join('\n');
    const over = validateInput(many, '/v1/chat/completions', { linesMax: 3, errorsMax: 10 });
    assert.equal(over.kind, 'failed');
    if (over.kind === 'failed') assert.equal(over.errors[0]?.code, 'SY_ERR_REQUEST_TOO_LARGE');
    const bad = Array.from({ length: 20 }, () => 'x').join('\n');
    const capped = validateInput(bad, '/v1/chat/completions', { linesMax: 100, errorsMax: 5 });
    assert.equal(capped.kind, 'failed');
    if (capped.kind === 'failed') {
      assert.equal(capped.errors.length, 5);
      assert.match(capped.errors[4]?.message ?? '', /16 more/);
    }
  });
});
