import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { clientRequestName, renameAnswerId, TagRenamer } from './pd-rename.ts';

async function renamed(chunks: readonly string[], tag: string, name: string): Promise<string> {
  const out: Buffer[] = [];
  const renamer = Readable.from(chunks.map((c) => Buffer.from(c))).pipe(new TagRenamer(tag, name));
  for await (const chunk of renamer) out.push(chunk as Buffer);
  return Buffer.concat(out).toString('utf8');
}

test('TagRenamer renames every id ending in the tag, however the stream is cut', async () => {
  const tag = 'pdab12cd341';
  const event = (i: number) => `data: {"id":"chatcmpl-${tag}","choices":[{"text":"w${i} ${tag}1\\" x"}]}\n\n`;
  const text = `${event(0)}${event(1)}data: [DONE]\n\n`;
  const want = text.replaceAll(`${tag}"`, 'client \\"id\\""');
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 12 }),
      async (cuts) => {
        const at = [0, ...cuts.sort((a, b) => a - b), text.length];
        const chunks = at.slice(1).map((end, i) => text.slice(at[i], end));
        assert.equal(await renamed(chunks, tag, 'client "id"'), want);
      },
    ),
  );
  // A longer tag that starts with this one, and the tag inside a text (its quote escaped), stay.
  assert.equal(await renamed([`{"id":"cmpl-${tag}0"}`], tag, 'x'), `{"id":"cmpl-${tag}0"}`);
});

test('TagRenamer holds back only a tail that could start the tag', async () => {
  const renamer = new TagRenamer('pdab12cd341', 'x');
  const got: string[] = [];
  renamer.on('data', (c: Buffer) => got.push(c.toString()));
  renamer.write(Buffer.from('data: {"id":"chatcmpl-pdab12'));
  renamer.write(Buffer.from('cd341"}\n\n'));
  await new Promise((r) => setImmediate(r));
  // The event's end goes out with the chunk that carries it, not with the next one.
  assert.equal(got.join(''), 'data: {"id":"chatcmpl-x"}\n\n');
  assert.deepEqual(got[0], 'data: {"id":"chatcmpl-');
});

test('clientRequestName and renameAnswerId follow the OpenAI server naming', () => {
  assert.equal(clientRequestName('abc'), 'abc');
  assert.equal(clientRequestName(''), undefined);
  assert.equal(clientRequestName('a'.repeat(129)), undefined);
  assert.equal(clientRequestName(['a', 'b']), undefined);
  for (const [id, want] of [
    ['chatcmpl-pd1', 'chatcmpl-me'],
    ['cmpl-pd1', 'cmpl-me'],
    ['resp_pd1', 'resp_me'],
    ['other', 'other'],
  ]) {
    const out: Record<string, unknown> = { id };
    renameAnswerId(out, 'me');
    assert.equal(out['id'], want);
  }
});
