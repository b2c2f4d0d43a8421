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
