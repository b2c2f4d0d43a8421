/**
 * Writes the tiny random-weight llama model the `llama` engine's tests and demos run on (see
 * src/engine-servers/llama/tiny-gguf.ts): GGUF v3, F32, 4 layers of width 64, a byte-level BPE vocabulary.
 * With `--size-mb N`, a larger random-weight model of about N MB instead (wider and deeper, same
 * vocabulary; streamed to disk, a few seconds for 600 MB), for loading benchmarks.
 *
 *   node --import tsx scripts/make-tiny-gguf.ts [out.gguf]   (default: .cache/models/tiny-llama.gguf)
 *   node --import tsx scripts/make-tiny-gguf.ts --size-mb 600 [--seed N] [out.gguf]
 *                                           (default: .cache/models/random-llama-600mb.gguf)
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  ensureSizedLlamaGguf,
  ensureTinyLlamaGguf,
  sizedLlamaShape,
  TINY_LLAMA_DEFAULT_PATH,
  TINY_LLAMA_SHAPE,
} from '../src/engine-servers/llama/tiny-gguf.ts';
import { scriptArgs } from './script-args.ts';

const USAGE = `Usage: node --import tsx scripts/make-tiny-gguf.ts [options] [out.gguf]

Writes a random-weight llama model in GGUF (its text is gibberish), for trying the llama engine's
plumbing; a file already there with the same header and size is kept. out.gguf defaults to
.cache/models/tiny-llama.gguf, or with --size-mb N to .cache/models/random-llama-<N>mb.gguf.

Options:
  --size-mb N  a larger model of about N MB, wider and deeper (default: the tiny one, 4 layers of
               width 64), e.g. --size-mb 600
  --seed N     with --size-mb: the weights' seed, an integer (default ${TINY_LLAMA_SHAPE.seed})
  -h, --help   this text

Examples:
  node --import tsx scripts/make-tiny-gguf.ts
  node --import tsx scripts/make-tiny-gguf.ts --size-mb 100 --seed 2 .cache/models/b.gguf`;

const { values, positionals } = scriptArgs('make-tiny-gguf', USAGE, () =>
  parseArgs({
    allowPositionals: true,
    options: { 'size-mb': { type: 'string' }, seed: { type: 'string' } },
  }),
);
const sizeMb = values['size-mb'] === undefined ? undefined : Number(values['size-mb']);
const seed = values.seed === undefined ? TINY_LLAMA_SHAPE.seed : Number(values.seed);
if ((sizeMb !== undefined && !(sizeMb > 0)) || !Number.isInteger(seed)) {
  console.error('usage: make-tiny-gguf.ts [--size-mb N (> 0)] [--seed N (integer)] [out.gguf]');
  process.exit(2);
}
let path: string;
if (sizeMb === undefined) {
  path = ensureTinyLlamaGguf(positionals[0] ?? TINY_LLAMA_DEFAULT_PATH);
} else {
  const shape = sizedLlamaShape(sizeMb * 1e6, seed);
  path = ensureSizedLlamaGguf(positionals[0] ?? `.cache/models/random-llama-${sizeMb}mb.gguf`, shape);
  console.log(
    `${shape.blockCount} layers of width ${shape.embeddingLength}, ${shape.headCount} heads ` +
      `(${shape.headCountKv} KV), feed-forward ${shape.feedForwardLength}, seed ${shape.seed}`,
  );
}
console.log(`${path}: ${statSync(path).size} bytes`);
