/**
 * Bundled trace samples under `data/samples/`, addressed as `sample:<name>`. Paths resolve from
 * this module's location (import.meta.url), not the working directory, so they work from any cwd.
 */
import { fileURLToPath } from 'node:url';
import { unknownName } from '../../core/errors.ts';
import type { TraceFormat } from '../types.ts';

/** The `sample:` prefix that names a bundled trace instead of a path. */
export const SAMPLE_PREFIX = 'sample:';

/** The bundled samples: file name under data/samples/ and format. */
export const SAMPLES = {
  'azure-conv': { file: 'azure-conv.csv', format: 'azure' },
  'mooncake-conversation': { file: 'mooncake-conversation.jsonl.gz', format: 'mooncake' },
} as const satisfies Record<string, { file: string; format: TraceFormat }>;

/** Name of a bundled sample. */
export type SampleName = keyof typeof SAMPLES;

/** The data/samples/ directory of this package (src/workload/traces/ is three levels below the root). */
export const SAMPLES_DIR = fileURLToPath(new URL('../../../data/samples/', import.meta.url));

/** True when the argument names a bundled sample rather than a path. */
export function isSampleRef(pathOrSample: string): boolean {
  return pathOrSample.startsWith(SAMPLE_PREFIX);
}

/**
 * Resolves `sample:<name>` to its file and format; any other string is returned as a path with no
 * known format. An unknown sample name fails with SY_ERR_UNKNOWN_NAME listing the valid ones.
 */
export function resolveTraceRef(pathOrSample: string): { path: string; format: TraceFormat | undefined } {
  if (!isSampleRef(pathOrSample)) return { path: pathOrSample, format: undefined };
  const name = pathOrSample.slice(SAMPLE_PREFIX.length);
  if (!Object.hasOwn(SAMPLES, name)) {
    throw unknownName(
      'trace sample',
      name,
      Object.keys(SAMPLES).map((n) => SAMPLE_PREFIX + n),
    );
  }
  const sample = SAMPLES[name as SampleName];
  return { path: SAMPLES_DIR + sample.file, format: sample.format };
}
