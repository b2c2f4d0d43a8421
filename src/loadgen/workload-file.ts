/**
 * `switchyard bench --workload FILE`: a file holding the twin's own `workload:` block (YAML or JSON,
 * validated by the twin's parseWorkloadSpec), or a whole `switchyard sim --config` file, whose
 * `workload:` block (and `seed`) are taken. Either way the load generator then plans its requests
 * from the twin's generator, so a live run sends what the twin would simulate.
 */

import { readYamlFile } from '../adapters/yaml-file.ts';
import { SwitchyardError } from '../core/errors.ts';
import { parseWithSchema, simConfigFileSchema } from '../twin/config.ts';
import { parseWorkloadSpec } from '../workload/create.ts';
import { WORKLOAD_KINDS, type WorkloadSpec } from '../workload/spec.ts';

/** What a workload file held. */
export interface WorkloadFile {
  /** The path as given. */
  readonly path: string;
  /** The validated spec (defaults filled), as the twin receives it. */
  readonly spec: WorkloadSpec;
  /** A sim config's `seed`, when it sets one (the run's seed unless --seed is given). */
  readonly seed: number | undefined;
  /** `workload`: the file is the block itself; `sim-config`: a sim config with a `workload:` block. */
  readonly form: 'workload' | 'sim-config';
}

const PARAM = '--workload';

/**
 * Reads and validates a workload file. A missing file is SY_ERR_NOT_FOUND, bad YAML or a bad sim
 * config SY_ERR_INVALID_CONFIG, a bad spec the workload schema's own error (SY_ERR_INVALID_ARGUMENT
 * naming each bad key as `workload.<key>`, or SY_ERR_UNKNOWN_NAME for an unknown kind); every
 * message starts with the flag and the file.
 */
export function readWorkloadFile(path: string): WorkloadFile {
  const where = `${PARAM} '${path}'`;
  const doc = readYamlFile(path, where, { param: PARAM });
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw notAWorkload(where, doc === undefined || doc === null ? 'an empty file' : `a ${typeof doc}`);
  }
  if ('kind' in doc) return { path, spec: parseSpec(where, doc), seed: undefined, form: 'workload' };
  if ('workload' in doc) {
    const config = parseWithSchema(simConfigFileSchema, doc, `${where} (a sim config)`);
    return { path, spec: parseSpec(where, config.workload), seed: config.seed, form: 'sim-config' };
  }
  throw notAWorkload(where, `a mapping of ${Object.keys(doc).slice(0, 5).join(', ') || 'nothing'}`);
}

/** The workload schema's error, with the file named first. */
function parseSpec(where: string, value: unknown): WorkloadSpec {
  try {
    return parseWorkloadSpec(value);
  } catch (error) {
    if (!(error instanceof SwitchyardError)) throw error;
    throw new SwitchyardError(error.code, `${where}: ${error.message}`, { ...error.details });
  }
}

function notAWorkload(where: string, found: string): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `${where}: expected the twin's workload block (a mapping with kind: ${WORKLOAD_KINDS.join(', ')}) ` +
      `or a sim config with a workload: block; found ${found}`,
    { param: PARAM },
  );
}
