/**
 * Zod fields for catalogue names in config files: each reads a name as a user copies it (a Hugging
 * Face model name, an nvidia-smi GPU name) and yields the catalogue id it means, so what follows
 * (and what it prints) sees only ids.
 */
import { z } from 'zod';
import { findGpuId, resolveGpuId } from './gpus.ts';
import { findModelId, resolveModelId } from './models.ts';

/** A field whose name must mean a catalogue entry: the id, or an issue with resolve's message. */
function catalogueField(resolve: (name: string) => string) {
  return z.string().transform((name, ctx) => {
    try {
      return resolve(name);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  });
}

/** A GPU from the catalogue (src/model/gpus.ts resolveGpuId), as its id; any other name is an issue. */
export const catalogueGpuSchema = catalogueField(resolveGpuId);
/** A model from the catalogue (src/model/models.ts resolveModelId), as its id; any other name is an issue. */
export const catalogueModelSchema = catalogueField(resolveModelId);

/**
 * A GPU name read as the catalogue id it means, or kept as written when it means none, for fields
 * whose unknown names are refused later, where used (with SY_ERR_UNKNOWN_NAME).
 */
export const gpuNameSchema = z.string().transform((name) => findGpuId(name) ?? name);
/** A model name read as the catalogue id it means, or kept as written (as gpuNameSchema). */
export const modelNameSchema = z.string().transform((name) => findModelId(name) ?? name);
