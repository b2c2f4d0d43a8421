/**
 * Reading a YAML file (JSON is a subset) for a config or case loader: one place that turns an
 * unreadable file or a YAML syntax error into a SwitchyardError naming the file, so the gateway
 * config, the sim config and fidelity cases all fail the same way.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { type ErrorCode, SwitchyardError } from '../core/errors.ts';

/** How a loader wants its failures reported. */
export interface YamlFileErrors {
  /** Code for a file that cannot be read (default SY_ERR_NOT_FOUND). */
  readonly unreadableCode?: ErrorCode;
  /** The `param` the errors carry, if any (the flag or field that named the file). */
  readonly param?: string;
}

/**
 * The parsed document of `path` (undefined for an empty file). `what` names it in errors, e.g.
 * `gateway config 'serve.yaml'`; a syntax error is SY_ERR_INVALID_CONFIG.
 */
export function readYamlFile(path: string, what: string, errors: YamlFileErrors = {}): unknown {
  const details = errors.param === undefined ? undefined : { param: errors.param };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SwitchyardError(
      errors.unreadableCode ?? 'SY_ERR_NOT_FOUND',
      `cannot read ${what}: ${(error as Error).message}`,
      details,
    );
  }
  try {
    return parseYaml(text) as unknown;
  } catch (error) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `${what} is not valid YAML: ${(error as Error).message}`,
      details,
    );
  }
}
