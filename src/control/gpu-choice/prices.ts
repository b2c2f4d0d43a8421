/**
 * GPU prices for cost-aware planning: a table of USD per GPU-hour per catalogue GPU, with the public
 * source it came from. The shipped table is data/prices/gpu-prices.yaml; this module validates a
 * parsed document (it reads no files: the CLI and tests read the YAML and pass the value in).
 */
import { z } from 'zod';
import { SwitchyardError } from '../../core/errors.ts';
import type { GpuId } from '../../core/ids.ts';
import { gpuIds, resolveGpuId } from '../../model/gpus.ts';
import { gpuNameSchema } from '../../model/names-schema.ts';

/** How far a row's usdPerGpuHour may sit from instanceUsdPerHour / gpusPerInstance (rounding). */
const PER_GPU_TOLERANCE_USD = 0.01;
/** A table never needs more rows than this (one per GPU class, with room to grow). */
export const PRICE_ROWS_MAX = 64;

const priceRowSchema = z
  .object({
    /** A catalogue GPU; a vendor name (`NVIDIA H100 80GB HBM3`) is read as its id. */
    gpu: z.string().min(1).pipe(gpuNameSchema),
    /** The cloud instance the price is for, e.g. p5.48xlarge. */
    instance: z.string().min(1),
    gpusPerInstance: z.number().int().min(1).max(16),
    instanceUsdPerHour: z.number().positive(),
    usdPerGpuHour: z.number().positive(),
  })
  .strict();

const priceFileSchema = z
  .object({
    source: z
      .object({
        name: z.string().min(1),
        url: z.string().url(),
        /** The date the prices were read, YYYY-MM-DD. */
        retrieved: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date YYYY-MM-DD'),
        region: z.string().min(1),
      })
      .strict(),
    currency: z.literal('USD'),
    gpus: z.array(priceRowSchema).min(1).max(PRICE_ROWS_MAX),
  })
  .strict();

/** One validated price file. */
export type GpuPriceFile = z.infer<typeof priceFileSchema>;

/** USD per GPU-hour by GPU id; GPUs without a row have no price (the planner skips them). */
export type GpuPriceTable = ReadonlyMap<GpuId, number>;

/** A validated price table with its provenance. */
export interface GpuPrices {
  readonly table: GpuPriceTable;
  readonly source: GpuPriceFile['source'];
}

function invalid(where: string, problems: string[]): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_CONFIG', `${where}: ${problems.join('; ')}`, {
    param: 'prices',
    problems,
  });
}

/** Checks what the schema cannot: known GPU ids, no duplicates, per-GPU price consistent with the instance's. */
function rowProblems(rows: GpuPriceFile['gpus']): string[] {
  const known = new Set(gpuIds());
  const seen = new Set<string>();
  const problems: string[] = [];
  rows.forEach((row, i) => {
    if (!known.has(row.gpu)) {
      try {
        resolveGpuId(row.gpu);
      } catch (error) {
        problems.push(`gpus.${i}.gpu: ${(error as Error).message}`);
      }
    }
    if (seen.has(row.gpu)) problems.push(`gpus.${i}.gpu: '${row.gpu}' is listed twice`);
    seen.add(row.gpu);
    const perGpu = row.instanceUsdPerHour / row.gpusPerInstance;
    if (Math.abs(perGpu - row.usdPerGpuHour) > PER_GPU_TOLERANCE_USD) {
      problems.push(
        `gpus.${i}.usdPerGpuHour: ${row.usdPerGpuHour} is not instanceUsdPerHour / gpusPerInstance = ${perGpu.toFixed(4)}`,
      );
    }
  });
  return problems;
}

/**
 * Validates a parsed price document (data/prices/gpu-prices.yaml's shape). `where` names it in
 * errors. Throws SY_ERR_INVALID_CONFIG listing every bad field.
 */
export function parseGpuPrices(value: unknown, where = 'gpu prices'): GpuPrices {
  const parsed = priceFileSchema.safeParse(value);
  if (!parsed.success) {
    throw invalid(
      where,
      parsed.error.issues.map(
        (issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(top level)'}: ${issue.message}`,
      ),
    );
  }
  const problems = rowProblems(parsed.data.gpus);
  if (problems.length > 0) throw invalid(where, problems);
  const table = new Map<GpuId, number>(parsed.data.gpus.map((row) => [row.gpu, row.usdPerGpuHour]));
  return { table, source: parsed.data.source };
}

/** A price table from plain pairs, validated like a file's rows (tests, callers with their own prices). */
export function priceTable(entries: Readonly<Record<GpuId, number>>): GpuPriceTable {
  const known = new Set(gpuIds());
  const problems: string[] = [];
  for (const [gpu, usd] of Object.entries(entries)) {
    if (!known.has(gpu)) problems.push(`unknown gpu '${gpu}'`);
    if (!(Number.isFinite(usd) && usd > 0)) problems.push(`${gpu}: price ${usd} is not a positive number`);
  }
  if (problems.length > 0) throw invalid('gpu prices', problems);
  return new Map(Object.entries(entries));
}
