/**
 * End-to-end: the bytes an engine receives for a request's priority (engine-priority.ts), through
 * the gateway to recording upstreams that declare each convention (`enginePriority` lower-first:
 * vLLM's sign; higher-first: SGLang's). The client's `priority` 3 (anonymous clients may ask up to
 * limits.clientPriorityMax 5 here) must reach a lower-first engine as -3 and a higher-first engine
 * as 3, with every other byte the client sent, whatever else in the body says "priority":
 * - `priority` inside message content, a nested object and an escaped key spelling;
 * - a body of 1.1 MiB, parsed off the event loop by the parse pool (its noted priority);
 * - a retry: the attempt refused 503 by a lower-first engine, retried on a higher-first one, each
 *   getting its own convention from the client's body (not the first attempt's edit).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FakeUpstream, startFakeUpstream } from '../../src/gateway/fake-upstream.ts';
import { post, startTestGateway, Teardown, type TestGateway } from './support/cluster.ts';

const teardown = new Teardown();
let lower: FakeUpstream;
let higher: FakeUpstream;
let gw: TestGateway;

before(async () => {
  lower = await startFakeUpstream('lo');
  teardown.add(() => lower.close());
  higher = await startFakeUpstream('hi');
  teardown.add(() => higher.close());
  const backend = (id: string, u: FakeUpstream, models: string[], order: 'lower-first' | 'higher-first') => ({
    id,
    type: 'vllm' as const,
    url: u.url,
    models,
    metricsPath: null,
    enginePriority: order,
  });
  gw = await startTestGateway(
    {
      backends: [
        backend('lo', lower, ['lo', 'both'], 'lower-first'),
        backend('hi', higher, ['hi', 'both'], 'higher-first'),
      ],
      routing: { policy: 'round-robin' },
      limits: { clientPriorityMax: 5, retryBackoffBaseMs: 0, retryBackoffMaxMs: 0 },
    },
    teardown,
  );
});
after(() => teardown.run());

/** Sends `body` (bytes) and returns what `upstream` received for it. */
async function sent(upstream: FakeUpstream, body: Buffer): Promise<string> {
  const before = upstream.received.length;
  const reply = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await reply.text();
  assert.equal(reply.status, 200, text);
  assert.equal(upstream.received.length, before + 1);
  return (upstream.received.at(-1) as { body: string }).body;
}

describe('the engine priority on the wire', { timeout: 60_000 }, () => {
  it('a tricky body: the top-level value edited, every other byte as sent', async () => {
    const tail =
      ',"messages":[{"role":"user","content":"say \\"priority\\": 9 {\\"priority\\":1}"}],"metadata":{"priority":7},"max_tokens":2,\n "priorit\\u0079" :\t3 }';
    const lo = await sent(lower, Buffer.from(`{"model":"lo"${tail}`));
    assert.equal(lo, `{"model":"lo"${tail.replace(':\t3 }', ':\t-3 }')}`);
    const hi = await sent(higher, Buffer.from(` {"model":"hi"${tail}`));
    assert.equal(hi, ` {"model":"hi"${tail}`);
    // No priority in the body: the member is inserted (higher-first names 0 too: SGLang ranks absent last).
    const plain = '{"model":"hi","messages":[{"role":"user","content":"priority"}],"max_tokens":2}';
    assert.equal(await sent(higher, Buffer.from(plain)), `{"priority":0,${plain.slice(1)}`);
  });

  it('a body parsed off the event loop (1.1 MiB) carries its priority', async () => {
    const content = 'x '.repeat(550_000);
    const body = `{"model":"lo","messages":[{"role":"user","content":"${content}"}],"max_tokens":2,"priority":2}`;
    const lo = await sent(lower, Buffer.from(body));
    assert.equal(lo.length, body.length + 1);
    assert.equal(lo, body.replace('"priority":2}', '"priority":-2}'));
    const stats = (await (await fetch(`${gw.url}/stats`)).json()) as { parsePool?: { offThread: number } };
    assert.equal(stats.parsePool?.offThread, 1, 'parsed by the parse pool');
  });

  it('a retry sends each engine its own convention of the client body', async () => {
    higher.behaviour.failStatus = 503;
    try {
      const bodyOf = (k: number) =>
        `{"model":"both","messages":[{"role":"user","content":"hi ${k}"}],"max_tokens":2,"priority":3}`;
      const tried = () => higher.received.filter((r) => r.body.includes('"model":"both"'));
      // Routing picks either first; send until the higher-first engine has refused one (then retried).
      for (let k = 0; k < 20 && tried().length === 0; k++) {
        const body = bodyOf(k);
        const reply = await post(gw.url, '/v1/chat/completions', body);
        assert.equal(reply.status, 200, reply.text);
        assert.equal(lower.received.at(-1)?.body, body.replace('"priority":3', '"priority":-3'));
      }
      assert.ok(
        tried().length > 0,
        `the higher-first engine was never tried: ${JSON.stringify(higher.received.map((r) => r.body.slice(0, 30)))} ${gw.logs.slice(-5).join(' | ')}`,
      );
      const k = Number(/hi (\d+)/.exec(tried()[0]?.body ?? '')?.[1]);
      assert.equal(tried()[0]?.body, bodyOf(k));
      assert.equal(
        lower.received.find((r) => r.body.includes(`"hi ${k}"`))?.body,
        bodyOf(k).replace('"priority":3', '"priority":-3'),
        'the retry on the lower-first engine',
      );
    } finally {
      delete higher.behaviour.failStatus;
    }
  });
});
