/**
 * Switchyard's vLLM block hashes against the reference: fixtures written by
 * scripts/vllm-block-hashes.py (cbor2 + hashlib, from vLLM's source; see fixtures/README.md).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeRequest } from '../../core/request.ts';
import { Rng } from '../../core/rng.ts';
import {
  blockHashLow32,
  cborBlockKey,
  vllmBlockHashes,
  vllmNoneHash,
  vllmPrefixChain,
} from '../../core/token-blocks.ts';
import { testCluster } from '../../policies/routing/conformance.ts';
import { createKvEvents, kvEventsParams } from '../../policies/routing/kv-events/kv-events.ts';
import { nodeSha256 } from '../tokenizer/load.ts';
import { blockHashTo32, decodeKvEventBatch } from './vllm-format.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

interface Case {
  name: string;
  seed: string;
  blockSize: number;
  noneHash: string;
  tokenIds: number[];
  cborFirstBlock: string;
  hashes: string[];
}
interface Chat {
  messages: { role: string; content: string }[];
  text: string;
  tokenIds: number[];
  hashes: string[];
}
interface Reference {
  seed: string;
  blockSize: number;
  noneHash: string;
  cases: Case[];
  chats: Record<string, Chat>;
}

/** The reference fixture. */
export const REFERENCE = JSON.parse(readFileSync(`${FIXTURES}vllm-block-hashes.json`, 'utf8')) as Reference;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('vllm hashes: NONE_HASH from PYTHONHASHSEED equals the reference', () => {
  assert.equal(hex(vllmNoneHash(REFERENCE.seed, nodeSha256)), REFERENCE.noneHash);
  for (const c of REFERENCE.cases) assert.equal(hex(vllmNoneHash(c.seed, nodeSha256)), c.noneHash, c.seed);
});

test('vllm hashes: the CBOR of a block key is byte-for-byte cbor2 canonical', () => {
  for (const c of REFERENCE.cases) {
    const root = Buffer.from(c.noneHash, 'hex');
    assert.equal(hex(cborBlockKey(root, c.tokenIds, 0, c.blockSize)), c.cborFirstBlock, c.name);
    // Into a scratch buffer too small: a fresh one, same bytes.
    assert.equal(hex(cborBlockKey(root, c.tokenIds, 0, c.blockSize, new Uint8Array(4))), c.cborFirstBlock);
  }
});

test('vllm hashes: chained sha256_cbor block hashes equal the reference for every case', () => {
  assert.ok(REFERENCE.cases.length >= 8);
  for (const c of REFERENCE.cases) {
    const hashing = {
      blockSize: c.blockSize,
      noneHash: vllmNoneHash(c.seed, nodeSha256),
      sha256: nodeSha256,
    };
    const ours = vllmBlockHashes(c.tokenIds, hashing).map(hex);
    assert.deepEqual(ours, c.hashes, `${c.name} seed ${c.seed} block ${c.blockSize}`);
    // The 32-bit chain is the digests' low words, and only full blocks are hashed.
    const chain = vllmPrefixChain(c.tokenIds, hashing);
    assert.equal(chain.hashes.length, Math.floor(c.tokenIds.length / c.blockSize));
    assert.equal(chain.exact, true);
    assert.deepEqual(
      chain.hashes,
      c.hashes.map((h) => blockHashLow32(Buffer.from(h, 'hex'))),
    );
    // maxBlocks bounds the work.
    assert.equal(vllmBlockHashes(c.tokenIds, hashing, 1).length, 1);
  }
});

test("vllm hashes: a request's cache_salt is the first block's extra key, as vLLM hashes it", () => {
  // Reference computed with cbor2 + hashlib as scripts/vllm-block-hashes.py restates vLLM, with the
  // first block's extra_keys ('tenant-a',) (generate_block_hash_extra_keys: salt at token 0 only):
  //   none = sha256(cbor2.dumps('0', canonical=True))
  //   key0 = cbor2.dumps((none, tuple(range(100, 116)), ('tenant-a',)), canonical=True)
  //   h1 = sha256(cbor2.dumps((sha256(key0), tuple(range(116, 132)), None), canonical=True))
  const hashing = { blockSize: 16, noneHash: vllmNoneHash('0', nodeSha256), sha256: nodeSha256 };
  const ids = Array.from({ length: 40 }, (_, i) => 100 + i);
  const salt = new TextEncoder().encode('tenant-a');
  assert.equal(
    hex(cborBlockKey(hashing.noneHash, ids, 0, 16, undefined, salt)),
    '8358204e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e90186418651866186718681869186a186b186c186d186e186f1870187118721873816874656e616e742d61',
  );
  const salted = vllmBlockHashes(ids, hashing, undefined, 'tenant-a').map(hex);
  assert.deepEqual(salted, [
    '18cbb49ed7d21f6e6b5ed2dfe523ef9d4df25407f42cdc561a93f8b08d5b18b9',
    '4415f16386c7d5d70e67c04dbf4b7ee72c20fdebc1f31cbce220bb769b900210',
  ]);
  // No block is shared with the unsalted chain or another salt's; the exact chain carries the salt.
  const plain = vllmBlockHashes(ids, hashing).map(hex);
  const other = vllmBlockHashes(ids, hashing, undefined, 'tenant-b').map(hex);
  for (let i = 0; i < 2; i++) {
    assert.notEqual(salted[i], plain[i]);
    assert.notEqual(salted[i], other[i]);
  }
  assert.deepEqual(
    vllmPrefixChain(ids, hashing, undefined, 'tenant-a').hashes,
    salted.map((h) => blockHashLow32(Buffer.from(h, 'hex'))),
  );
});

test('vllm hashes: a different seed or block size gives a different chain', () => {
  const [a, b] = REFERENCE.cases.filter((c) => c.name === 'small-ids' && c.blockSize === REFERENCE.blockSize);
  assert.ok(a !== undefined && b !== undefined && a.seed !== b.seed);
  assert.notEqual(a.hashes[0], b.hashes[0]);
});

for (const form of ['bytes', 'int'] as const) {
  test(`vllm hashes: KV events from the reference (${form} hashes) decode to our hashes of the same tokens`, () => {
    const chat = REFERENCE.chats['shared'] as Chat;
    const batch = decodeKvEventBatch(readFileSync(`${FIXTURES}vllm-events-shared-${form}.msgpack`));
    const stored = batch.events.flatMap((e) => (e.type === 'BlockStored' ? [...e.hashes] : []));
    const hashing = {
      blockSize: REFERENCE.blockSize,
      noneHash: vllmNoneHash(REFERENCE.seed, nodeSha256),
      sha256: nodeSha256,
    };
    const ours = vllmPrefixChain(chat.tokenIds, hashing);
    assert.ok(ours.hashes.length >= 2);
    assert.deepEqual(stored, ours.hashes);
    // The second event's parent is the first event's last block.
    const [first, second] = batch.events;
    assert.ok(first?.type === 'BlockStored' && second?.type === 'BlockStored');
    assert.equal(first.parentHash, undefined);
    const parent = chat.hashes[first.hashes.length - 1] as string;
    assert.equal(second.parentHash, blockHashTo32(Buffer.from(parent, 'hex')));
  });
}

test('vllm hashes: kv-events fed the reference events routes our exact chain to the instance holding it', () => {
  // The match alone decides here (what this test checks); the default prices it against load, and
  // these short chats save too little prefill to outweigh the holder's queue.
  const policy = createKvEvents(kvEventsParams.parse({ score: 'longest-prefix' }));
  const hashing = {
    blockSize: REFERENCE.blockSize,
    noneHash: vllmNoneHash(REFERENCE.seed, nodeSha256),
    sha256: nodeSha256,
  };
  const feed = (instance: string, file: string): void => {
    for (const e of decodeKvEventBatch(readFileSync(`${FIXTURES}${file}`)).events)
      policy.onKvEvent?.(instance, e, 0);
  };
  // i0 is the least loaded; the prefix is on i2, the other chat on i1.
  const view = testCluster(3, (i) => ({ inFlight: [0, 3, 5][i] ?? 0, waiting: 0 }));
  feed('i2', 'vllm-events-shared-bytes.msgpack');
  feed('i1', 'vllm-events-other-int.msgpack');
  const request = (name: string) => {
    const ids = (REFERENCE.chats[name] as Chat).tokenIds;
    return makeRequest({
      id: name,
      inputTokens: ids.length,
      maxTokens: 8,
      arrivalMs: 0,
      prefix: vllmPrefixChain(ids, hashing),
    });
  };
  const routed = (name: string): string => {
    const d = policy.decide(view, request(name), new Rng(1));
    return d.kind === 'route' ? d.instanceId : d.kind;
  };
  assert.equal(routed('shared'), 'i2');
  assert.equal(routed('other'), 'i1');
});
