/**
 * End-to-end: an embeddings request with more inputs than EMBEDDING_INPUTS_MAX (OpenAI's 2048), or
 * with none, is refused 400 SY_ERR_INVALID_ARGUMENT with `param: "input"` and a message that gives
 * the count and the limit, for text and token-id inputs alike, through a gateway to a real sim
 * engine; one at the bound is served. Before, zod's union answered only "input: Invalid input".
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EMBEDDING_INPUTS_MAX } from '../../src/engine-servers/embeddings.ts';
import { assertErrorBody, MODEL, post } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const setUp = simGateway();

const embed = (input: unknown) =>
  post(setUp.gw.url, '/v1/embeddings', { model: MODEL, input, dimensions: 8 });

describe('gateway embeddings: the input count', { timeout: 60_000 }, () => {
  it('refuses one input past the limit, naming the count and the limit', async () => {
    const over = EMBEDDING_INPUTS_MAX + 1;
    const shapes: [string, unknown][] = [
      ['texts', Array.from({ length: over }, (_, i) => `doc ${i}`)],
      ['token-id lists', Array.from({ length: over }, (_, i) => [i % 1000, 7])],
    ];
    for (const [name, input] of shapes) {
      const r = await embed(input);
      assert.equal(r.status, 400, `${name}: ${r.text.slice(0, 300)}`);
      const body = assertErrorBody(r.text, 400, name);
      assert.equal(body.error.code, 'SY_ERR_INVALID_ARGUMENT', name);
      assert.equal(body.error.param, 'input', name);
      assert.match(
        body.error.message,
        new RegExp(`${over} inputs; the limit is ${EMBEDDING_INPUTS_MAX} per request`),
        name,
      );
    }
  });

  it('refuses an empty input list naming the range, and serves one at the limit', async () => {
    const empty = await embed([]);
    assert.equal(empty.status, 400, empty.text);
    const body = assertErrorBody(empty.text, 400, 'empty');
    assert.equal(body.error.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(body.error.param, 'input');
    assert.match(body.error.message, new RegExp(`no inputs; .*1 to ${EMBEDDING_INPUTS_MAX}`));

    const full = await embed(Array.from({ length: EMBEDDING_INPUTS_MAX }, (_, i) => `doc ${i}`));
    assert.equal(full.status, 200, full.text.slice(0, 300));
    const data = (JSON.parse(full.text) as { data: { index: number }[] }).data;
    assert.equal(data.length, EMBEDDING_INPUTS_MAX);
  });
});
