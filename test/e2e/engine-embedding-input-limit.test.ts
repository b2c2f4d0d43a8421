/**
 * End-to-end: the built-in engine's embeddings endpoint refuses an input past
 * EMBEDDING_INPUT_TOKENS_MAX (OpenAI's 8,192 tokens an input) with 400 `param: "input"` naming the
 * input's index, for every input shape, and embeds one at the bound; against a real
 * `switchyard engine sim` child. The deadline only guards against a hang.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CHARS_PER_TOKEN } from '../../src/core/text-prefix.ts';
import { EMBEDDING_INPUT_TOKENS_MAX } from '../../src/engine-servers/embeddings.ts';

const BIN = join(fileURLToPath(new URL('../..', import.meta.url)), 'bin', 'switchyard.mjs');
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 30_000;

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

/** A text estimated at exactly `tokens` tokens. */
const textOf = (tokens: number): string => 'a'.repeat(tokens * CHARS_PER_TOKEN);
const idsOf = (tokens: number): number[] => Array.from({ length: tokens }, (_, i) => i % 1000);

describe('engine embeddings: the per-input token bound', { timeout: 60_000 }, () => {
  let child: ChildProcess | undefined;
  let url = '';
  let model = '';

  before(async () => {
    const c = spawn(process.execPath, [BIN, 'engine', 'sim', '--port', '0', '--kv-events', 'none'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    const stderr: string[] = [];
    createInterface({ input: c.stderr! }).on('line', (l) => stderr.push(l));
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line: ${stderr.join('\n')}`)), HANG_GUARD_MS);
      createInterface({ input: c.stdout! }).once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
      c.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
    });
    ({ url, model } = JSON.parse(line) as { url: string; model: string });
  });
  after(() => {
    if (child?.exitCode === null) child.kill('SIGKILL');
  });

  const embed = (input: unknown): Promise<Response> =>
    fetch(`${url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, input, dimensions: 8 }),
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    });

  async function refusedAt(input: unknown, index: number): Promise<void> {
    const res = await embed(input);
    const text = await res.text();
    assert.equal(res.status, 400, text);
    const { error } = JSON.parse(text) as ErrorBody;
    assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(error.param, 'input');
    assert.match(
      error.message,
      new RegExp(
        `input ${index} has ${EMBEDDING_INPUT_TOKENS_MAX + 1} tokens; the limit is ${EMBEDDING_INPUT_TOKENS_MAX} per input`,
      ),
    );
  }

  it('refuses an input one token past the bound, naming its index, in every input shape', async () => {
    const over = EMBEDDING_INPUT_TOKENS_MAX + 1;
    await refusedAt(textOf(over), 0);
    await refusedAt(['short', 'also short', textOf(over)], 2);
    await refusedAt(idsOf(over), 0);
    await refusedAt([[1, 2, 3], idsOf(over)], 1);
  });

  it('embeds inputs at the bound', async () => {
    const res = await embed([textOf(EMBEDDING_INPUT_TOKENS_MAX), 'short']);
    const body = (await res.json()) as { data: { embedding: number[] }[]; usage: { prompt_tokens: number } };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.data.length, 2);
    assert.equal(body.data[0]!.embedding.length, 8);
    assert.equal(body.usage.prompt_tokens, EMBEDDING_INPUT_TOKENS_MAX + 2);
    const ids = await embed([idsOf(EMBEDDING_INPUT_TOKENS_MAX)]);
    assert.equal(ids.status, 200, await ids.text());
  });
});
