/**
 * Writes the tiny random-weight llama model the `llama` engine's tests and demos run on (see
 * src/engine-servers/llama/tiny-gguf.ts): GGUF v3, F32, 4 layers of width 64, a byte-level BPE vocabulary.
 *
 *   node --import tsx scripts/make-tiny-gguf.ts [out.gguf]   (default: .cache/models/tiny-llama.gguf)
 */
import { statSync } from 'node:fs';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../src/engine-servers/llama/tiny-gguf.ts';

const path = ensureTinyLlamaGguf(process.argv[2] ?? TINY_LLAMA_DEFAULT_PATH);
console.log(`${path}: ${statSync(path).size} bytes`);
