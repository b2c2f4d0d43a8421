import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { SwitchyardError } from '../core/errors.ts';
import { ROUTING_PREFIX_BLOCKS_MAX } from './fast-parse.ts';
import { ParsePool } from './parse-pool.ts';
import type { ExchangeKind } from './proxy.ts';
import { parseBodyFields } from './request-build.ts';

type Outcome = { fields: unknown } | { error: { code: string; message: string; details: unknown } };

function errorOutcome(error: unknown): Outcome {
  assert.ok(error instanceof SwitchyardError, `not a handled error: ${String(error)}`);
  return { error: { code: error.code, message: error.message, details: error.details } };
}

function onMainThread(kind: ExchangeKind, body: Buffer): Outcome {
  try {
    return { fields: parseBodyFields(kind, body) };
  } catch (error) {
    return errorOutcome(error);
  }
}

async function onPool(pool: ParsePool, kind: ExchangeKind, body: Buffer): Promise<Outcome> {
  try {
    return { fields: await pool.parse(kind, body) };
  } catch (error) {
    return errorOutcome(error);
  }
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const longText = 'The quick brown fox jumps over the lazy dog. '.repeat(30_000); // 1.35 MB: past the chain cap

/** Bodies of every kind the gateway parses, valid and not. */
const CORPUS: readonly [string, ExchangeKind, Buffer][] = [
  ['chat, one message', 'chat', json({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })],
  [
    'chat, every routing field',
    'chat',
    json({
      model: 'm',
      messages: [
        { role: 'system', content: 'be brief', name: 'sys' },
        { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url' }] },
      ],
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: 7,
      priority: -3,
      user: 'u1',
    }),
  ],
  [
    'chat, long prompt past the chain cap',
    'chat',
    json({ model: 'm', messages: [{ role: 'user', content: longText }] }),
  ],
  [
    'chat, unicode',
    'chat',
    json({ model: 'm', messages: [{ role: 'user', content: 'héllo 日本語 🙂 \u0000' }] }),
  ],
  [
    'chat, lone surrogate escape',
    'chat',
    Buffer.from('{"model":"m","messages":[{"role":"user","content":"a\\ud800b"}]}'),
  ],
  [
    'chat, invalid UTF-8 bytes',
    'chat',
    Buffer.from([
      ...Buffer.from('{"model":"m","messages":[{"role":"user","content":"'),
      0xff,
      0xfe,
      ...Buffer.from('"}]}'),
    ]),
  ],
  [
    'chat, bad temperature (the schema error)',
    'chat',
    json({ model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
  ],
  ['chat, no messages', 'chat', json({ model: 'm', messages: [] })],
  ['chat, unknown role', 'chat', json({ model: 'm', messages: [{ role: 'robot', content: 'x' }] })],
  [
    'chat, max_tokens 0',
    'chat',
    json({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }),
  ],
  [
    'chat, fractional priority',
    'chat',
    json({ model: 'm', messages: [{ role: 'user', content: 'x' }], priority: 1.5 }),
  ],
  ['completion, text', 'completion', json({ model: 'm', prompt: 'once upon a time', max_tokens: 3 })],
  ['completion, one-string list', 'completion', json({ model: 'm', prompt: ['once'] })],
  [
    'completion, token ids',
    'completion',
    json({ model: 'm', prompt: Array.from({ length: 5000 }, (_, i) => i % 997) }),
  ],
  ['completion, nested token ids', 'completion', json({ model: 'm', prompt: [[1, 2, 3, 4]] })],
  ['completion, a list of prompts, n 2', 'completion', json({ model: 'm', prompt: ['a', 'b', 'c'], n: 2 })],
  ['chat, n 3', 'chat', json({ model: 'm', messages: [{ role: 'user', content: 'hi' }], n: 3 })],
  ['completion, negative token id', 'completion', json({ model: 'm', prompt: [1, -2] })],
  ['completion, no prompt', 'completion', json({ model: 'm' })],
  ['embeddings, text', 'embeddings', json({ model: 'e', input: 'a sentence' })],
  ['embeddings, list', 'embeddings', json({ model: 'e', input: ['a', 'bb', 'ccc'] })],
  ['embeddings, token ids', 'embeddings', json({ model: 'e', input: [1, 2, 3] })],
  ['embeddings, lists of ids', 'embeddings', json({ model: 'e', input: [[1, 2], [3]] })],
  ['embeddings, no input', 'embeddings', json({ model: 'e' })],
  ['embeddings, no model', 'embeddings', json({ input: 'x' })],
  ['not JSON', 'chat', Buffer.from('{"model": "m", ')],
  ['empty body', 'completion', Buffer.alloc(0)],
  ['null', 'chat', Buffer.from('null')],
  ['an array', 'completion', Buffer.from('[1,2]')],
  [
    'a view into a larger buffer',
    'chat',
    Buffer.concat([
      Buffer.from('xxxx'),
      json({ model: 'm', messages: [{ role: 'user', content: 'v' }] }),
    ]).subarray(4),
  ],
];

describe('ParsePool', () => {
  const pool = new ParsePool({ bytesMax: 64 << 20, threads: 2 });
  after(() => pool.close());

  it('gives the same fields and errors as the main-thread parse over a corpus of bodies', async () => {
    for (const [name, kind, body] of CORPUS)
      assert.deepEqual(await onPool(pool, kind, body), onMainThread(kind, body), name);
    const long = await pool.parse('chat', CORPUS[2]?.[2] as Buffer);
    assert.equal(long.prefix.hashes.length, ROUTING_PREFIX_BLOCKS_MAX);
    assert.equal(pool.stats.offThread, CORPUS.length + 1);
    assert.equal(pool.stats.fallbacks, 0);
    assert.equal(pool.stats.bytes, 0);
  });

  it('agrees with the main-thread parse on generated bodies', async () => {
    const kinds = fc.constantFrom<ExchangeKind>('chat', 'completion', 'embeddings');
    const message = fc.record({
      role: fc.constantFrom('user', 'system', 'tool', 'x'),
      content: fc.string({ unit: 'grapheme' }),
    });
    const body = fc.oneof(
      fc.json(),
      fc
        .record(
          {
            model: fc.oneof(fc.constant('m'), fc.string()),
            messages: fc.array(message, { maxLength: 4 }),
            prompt: fc.oneof(fc.string({ unit: 'binary' }), fc.array(fc.nat(), { maxLength: 40 })),
            input: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 4 })),
            max_tokens: fc.integer({ min: -1, max: 5 }),
            stream: fc.boolean(),
            priority: fc.integer({ min: -3, max: 3 }),
            user: fc.string(),
          },
          { requiredKeys: [] },
        )
        .map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(kinds, body, async (kind, text) => {
        const bytes = Buffer.from(text);
        assert.deepEqual(await onPool(pool, kind, bytes), onMainThread(kind, bytes));
      }),
      { numRuns: 150 },
    );
  });

  it('refuses a body that would pass bytesMax with SY_ERR_PARSE_QUEUE_FULL, and takes the next once room is back', async () => {
    const small = new ParsePool({ bytesMax: 300, threads: 1 });
    try {
      const body = json({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(200) }] });
      const first = small.parse('chat', body);
      await assert.rejects(
        small.parse('chat', body),
        (e: SwitchyardError) => e.code === 'SY_ERR_PARSE_QUEUE_FULL' && e.status === 503,
      );
      assert.equal(small.stats.refused, 1);
      assert.equal((await first).model, 'm');
      assert.equal((await small.parse('chat', body)).model, 'm');
      assert.equal(small.stats.bytesPeak, body.length);
    } finally {
      await small.close();
    }
  });
});

describe('ParsePool with a worker that dies', () => {
  // A worker module that exits on a body holding CRASH and parses every other body as the real one.
  const dir = mkdtempSync(join(tmpdir(), 'sy-parse-pool-'));
  const real = new URL('./parse-worker.ts', import.meta.url).href;
  const crashing = join(dir, 'crashing-worker.mts');
  writeFileSync(
    crashing,
    `import parse from ${JSON.stringify(real)};\n` +
      `export default function (task) {\n` +
      `  if (Buffer.from(task.body).includes('CRASH')) process.exit(3);\n` +
      `  return parse(task);\n}\n`,
  );
  const pool = new ParsePool({ bytesMax: 1 << 20, threads: 1, workerUrl: pathToFileURL(crashing) });
  after(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('parses the body on the main thread instead (same fields, same errors), and a new worker takes the next body', async () => {
    const crash = json({ model: 'm', messages: [{ role: 'user', content: 'CRASH' }], max_tokens: 4 });
    assert.deepEqual(await onPool(pool, 'chat', crash), onMainThread('chat', crash));
    const crashBad = Buffer.from('{"model":"CRASH",');
    assert.deepEqual(await onPool(pool, 'chat', crashBad), onMainThread('chat', crashBad));
    assert.equal(pool.stats.fallbacks, 2);
    const fine = json({ model: 'm', prompt: 'fine' });
    assert.deepEqual(await onPool(pool, 'completion', fine), onMainThread('completion', fine));
    assert.equal(pool.stats.offThread, 1);
    assert.equal(pool.stats.bytes, 0);
  });
});
