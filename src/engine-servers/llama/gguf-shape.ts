/**
 * A GGUF model's shape, from its metadata: what must be equal for another checkpoint to load in
 * place of the current one (`POST /update_weights_from_disk`, ../weight-update.ts). Two fine-tunes
 * of one base share it; a checkpoint of another architecture, depth, width, head layout, FFN or
 * vocabulary does not.
 */
import { type GgufFileInfo, readGgufFileInfo } from 'node-llama-cpp';
import { SwitchyardError } from '../../core/errors.ts';
import { checkGgufHeader } from './gguf-header.ts';
import type { GgufRope } from './llama-backend.ts';

/** The fields compared, in the order a difference is reported. */
export interface GgufShape {
  readonly architecture: string;
  readonly layers: unknown;
  readonly embedding: unknown;
  readonly heads: unknown;
  readonly kvHeads: unknown;
  readonly ffn: unknown;
  readonly vocab: number;
}

/** The shape of a GGUF whose metadata node-llama-cpp read (a loaded model's `fileInfo`, or a file's). */
export function ggufShape(info: Pick<GgufFileInfo, 'metadata'>): GgufShape {
  const metadata = info.metadata as unknown as Record<string, unknown> & {
    general?: { architecture?: string };
    tokenizer?: { ggml?: { tokens?: readonly string[] } };
  };
  const architecture = metadata.general?.architecture ?? 'unknown';
  const arch = (metadata[architecture] ?? {}) as {
    block_count?: unknown;
    embedding_length?: unknown;
    feed_forward_length?: unknown;
    attention?: { head_count?: unknown; head_count_kv?: unknown };
  };
  return {
    architecture,
    layers: arch.block_count ?? null,
    embedding: arch.embedding_length ?? null,
    heads: arch.attention?.head_count ?? null,
    // llama.cpp's default when absent: as many KV heads as heads.
    kvHeads: arch.attention?.head_count_kv ?? arch.attention?.head_count ?? null,
    ffn: arch.feed_forward_length ?? null,
    vocab: metadata.tokenizer?.ggml?.tokens?.length ?? 0,
  };
}

/** A GGUF's shape and what bounds the context an engine may run it with. */
export interface GgufCheckpoint {
  readonly shape: GgufShape;
  /** `<arch>.context_length`: the training context (0 when absent). */
  readonly trainedContext: number;
  /** `<arch>.rope`: RoPE scaling that extends it (llama-backend.ts `modelContextMax`). */
  readonly rope: GgufRope | undefined;
  /**
   * `<arch>.attention.key_length` and `value_length` (null when absent): the K and V widths per head
   * that size the KV cache where they differ from embedding / heads (src/core/standby-reserve.ts).
   * Not part of `shape`, which two checkpoints must share for a swap.
   */
  readonly headWidths: { readonly keyWidth: unknown; readonly valueWidth: unknown };
}

/**
 * Reads the shape of the GGUF at `path` (its header and metadata, not its tensors). Throws 400
 * SY_ERR_INVALID_ARGUMENT (`param` model_path) when it is not a readable GGUF.
 */
export async function readGgufShape(path: string): Promise<GgufCheckpoint> {
  const invalid = (message: string) =>
    new SwitchyardError('SY_ERR_INVALID_ARGUMENT', message, { param: 'model_path' });
  try {
    checkGgufHeader(path);
  } catch (error) {
    throw invalid((error as Error).message);
  }
  try {
    const info = await readGgufFileInfo(path, {
      readTensorInfo: false,
      sourceType: 'filesystem',
      logWarnings: false,
    });
    const shape = ggufShape(info);
    const arch = (info.metadata as unknown as Record<string, unknown>)[shape.architecture] as
      | {
          context_length?: unknown;
          rope?: GgufRope;
          attention?: { key_length?: unknown; value_length?: unknown };
        }
      | undefined;
    const trained = Number(arch?.context_length ?? 0);
    return {
      shape,
      trainedContext: Number.isFinite(trained) ? trained : 0,
      rope: arch?.rope,
      headWidths: {
        keyWidth: arch?.attention?.key_length ?? null,
        valueWidth: arch?.attention?.value_length ?? null,
      },
    };
  } catch (error) {
    throw invalid(
      `invalid model '${path}': its GGUF metadata could not be read (${(error as Error).message})`,
    );
  }
}
