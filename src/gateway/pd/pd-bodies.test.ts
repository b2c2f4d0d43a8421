import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseGatewayConfig } from '../config.ts';
import {
  BootstrapRooms,
  kvTransferParamsOf,
  sglangBody,
  vllmDecodeBody,
  vllmPrefillBody,
} from './pd-bodies.ts';

const json = (b: Buffer): Record<string, unknown> =>
  JSON.parse(b.toString('utf8')) as Record<string, unknown>;
const client = Buffer.from(
  JSON.stringify({
    model: 'm',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 50,
    max_completion_tokens: 50,
    stream: true,
    stream_options: { include_usage: true },
  }),
);

describe('vLLM bodies', () => {
  it('prefill: one token, not streamed, asking for a remote decode', () => {
    const b = json(vllmPrefillBody(client));
    assert.equal(b['max_tokens'], 1);
    assert.equal(b['max_completion_tokens'], 1);
    assert.equal(b['stream'], false);
    assert.equal(b['stream_options'], undefined);
    assert.deepEqual(b['kv_transfer_params'], {
      do_remote_decode: true,
      do_remote_prefill: false,
      remote_engine_id: null,
      remote_block_ids: null,
      remote_host: null,
      remote_port: null,
    });
    assert.deepEqual(b['messages'], [{ role: 'user', content: 'hi' }]);
  });

  it('prefill does not add max_completion_tokens the client did not send', () => {
    const b = json(vllmPrefillBody(Buffer.from('{"model":"m","prompt":"x"}')));
    assert.equal(Object.hasOwn(b, 'max_completion_tokens'), false);
  });

  it("prefill lowers vLLM's min_tokens to its one token (past max_tokens vLLM refuses it), keeps the rest", () => {
    const withMin = (v: unknown): unknown =>
      json(vllmPrefillBody(Buffer.from(JSON.stringify({ model: 'm', prompt: 'x', min_tokens: v }))))[
        'min_tokens'
      ];
    assert.deepEqual([withMin(6), withMin(1), withMin(0), withMin(null), withMin('6')], [1, 1, 0, null, '6']);
    assert.equal(Object.hasOwn(json(vllmPrefillBody(Buffer.from('{"model":"m"}'))), 'min_tokens'), false);
  });

  it('decode: the client request unchanged plus the prefill answer parameters', () => {
    const params = { do_remote_prefill: true, remote_block_ids: [1, 2], remote_port: 9 };
    const b = json(vllmDecodeBody(client, params));
    assert.equal(b['max_tokens'], 50);
    assert.equal(b['stream'], true);
    assert.deepEqual(b['kv_transfer_params'], params);
  });

  it('reads kv_transfer_params from an answer, undefined when absent', () => {
    assert.deepEqual(kvTransferParamsOf(Buffer.from('{"id":"x","kv_transfer_params":{"a":1}}')), { a: 1 });
    assert.equal(kvTransferParamsOf(Buffer.from('{"id":"x"}')), undefined);
    // vLLM's proxy copies them only when truthy: an empty object is none.
    assert.equal(kvTransferParamsOf(Buffer.from('{"id":"x","kv_transfer_params":{}}')), undefined);
    assert.throws(() => kvTransferParamsOf(Buffer.from('[1]')));
  });
});

describe('SGLang bodies and rooms', () => {
  it('adds the bootstrap address and room to the client request', () => {
    const b = json(sglangBody(client, '10.0.0.1', 8998, 42));
    assert.equal(b['bootstrap_host'], '10.0.0.1');
    assert.equal(b['bootstrap_port'], 8998);
    assert.equal(b['bootstrap_room'], 42);
    assert.equal(b['max_tokens'], 50);
  });

  it('rooms are unique safe integers, and the same seed gives the same rooms', () => {
    const a = new BootstrapRooms(7);
    const b = new BootstrapRooms(7);
    const seen = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      const room = a.take();
      assert.ok(Number.isSafeInteger(room) && room >= 0);
      assert.equal(b.take(), room);
      seen.add(room);
    }
    assert.equal(seen.size, 10_000);
    assert.notEqual(new BootstrapRooms(8).take(), new BootstrapRooms(7).take());
  });
});

describe('P/D config', () => {
  const be = (id: string, role: string, extra: Record<string, unknown> = {}) => ({
    id,
    type: 'sim',
    url: 'http://127.0.0.1:9',
    models: ['m'],
    role,
    ...extra,
  });
  const problems = (backends: unknown[]): string => {
    try {
      parseGatewayConfig({ backends }, {});
      return '';
    } catch (error) {
      return (error as Error).message;
    }
  };

  it('accepts a prefill and a decode pool of one protocol', () => {
    assert.equal(
      problems([
        be('p', 'prefill', { pdProtocol: 'sglang', bootstrapPort: 8998 }),
        be('d', 'decode', { pdProtocol: 'sglang' }),
      ]),
      '',
    );
  });

  it('refuses a decode pool without a prefill pool of the same model and protocol', () => {
    const m = problems([be('d', 'decode', { pdProtocol: 'vllm' })]);
    assert.match(m, /backends\.0\.role: .*no prefill backend serves that model with that protocol/);
    const mixed = problems([
      be('p', 'prefill', { pdProtocol: 'vllm' }),
      be('d', 'decode', { pdProtocol: 'sglang' }),
    ]);
    assert.match(mixed, /different protocols/);
  });

  it('refuses a protocol on role both and a bootstrapPort off an SGLang prefill', () => {
    assert.match(problems([be('b', 'both', { pdProtocol: 'vllm' })]), /backends\.0\.pdProtocol/);
    const m = problems([
      be('p', 'prefill', { pdProtocol: 'vllm', bootstrapPort: 1 }),
      be('d', 'decode', { pdProtocol: 'vllm' }),
    ]);
    assert.match(m, /backends\.0\.bootstrapPort/);
    assert.match(problems([be('x', 'middle')]), /backends\.0\.role/);
  });
});
