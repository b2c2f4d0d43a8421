/**
 * The GGUF header check, apart from the llama backend so `serve` can check a model file before any
 * engine starts without importing node-llama-cpp (about 0.35 s).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { SwitchyardError } from '../../core/errors.ts';

/** Smallest encoding of one metadata pair (empty key, type, one byte) and of one tensor description. */
const GGUF_KV_BYTES_MIN = 13;
const GGUF_TENSOR_BYTES_MIN = 28;

/**
 * Throws SY_ERR_INVALID_ARGUMENT naming `path` unless it is a readable file with a GGUF v2/v3 header
 * whose counts fit in the file. llama.cpp rejects a bad file by itself, but node-llama-cpp reads the
 * header first and a garbage count can make it allocate without bound.
 */
export function checkGgufHeader(path: string): void {
  const invalid = (why: string) =>
    new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid model '${path}': expected a GGUF model file (${why})`,
      {
        param: 'model',
      },
    );
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw invalid((error as NodeJS.ErrnoException).code ?? 'unreadable');
  }
  try {
    const size = fstatSync(fd).size;
    const header = Buffer.alloc(24);
    let read: number;
    try {
      read = readSync(fd, header, 0, 24, 0);
    } catch (error) {
      throw invalid((error as NodeJS.ErrnoException).code ?? 'unreadable');
    }
    if (read < 24 || header.toString('latin1', 0, 4) !== 'GGUF') throw invalid('no GGUF header');
    const version = header.readUInt32LE(4);
    if (version !== 2 && version !== 3) throw invalid(`GGUF version ${version}, expected 2 or 3`);
    const tensors = header.readBigUInt64LE(8);
    const pairs = header.readBigUInt64LE(16);
    if (tensors * BigInt(GGUF_TENSOR_BYTES_MIN) + pairs * BigInt(GGUF_KV_BYTES_MIN) > BigInt(size)) {
      throw invalid(`${tensors} tensors and ${pairs} metadata pairs do not fit in ${size} bytes`);
    }
  } finally {
    closeSync(fd);
  }
}
