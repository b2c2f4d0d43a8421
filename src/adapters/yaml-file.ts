/**
 * Reading a YAML file (JSON is a subset) for a config or case loader: one place that turns an
 * unreadable file or a YAML syntax error into a SwitchyardError naming the file, so the gateway
 * config, the sim config and fidelity cases all fail the same way.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { YAMLError } from 'yaml';
import { type ErrorCode, SwitchyardError } from '../core/errors.ts';

let yamlLibrary: typeof import('yaml') | undefined;
/**
 * The yaml library, loaded at the first file read: `sim`, `serve`, `bench`, `fidelity` and
 * `plan-gpus` import this module, and most of their runs read no YAML (no --config). Loading it was
 * 0.10 s of CPU of each of their starts (docs/benchmarks.md, "CLI start-up (stop 34)"). Through
 * require, so that reading stays synchronous: under node, `import 'yaml'` resolves to the same
 * CommonJS file (the package's "node" export), so its YAMLError is the one class either way.
 */
function yaml(): typeof import('yaml') {
  yamlLibrary ??= createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yamlLibrary;
}

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
    // Merge keys (`<<: *defaults`), YAML 1.1's and what compose files and Helm values use: without
    // them `<<` was read as a key, and a workload built from an anchor failed as if it had no kind.
    return yaml().parse(text, { merge: true }) as unknown;
  } catch (error) {
    // The library refuses a document whose aliases expand past its bound (a "billion laughs" file)
    // with a bare ReferenceError, which reached the user as a stack trace.
    if (error instanceof ReferenceError && /alias/i.test(error.message))
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `${what} is not a usable YAML document: its aliases expand too far (${error.message})`,
        details,
      );
    if (!(error instanceof yaml().YAMLError)) throw error;
    const where = yamlErrorWhere(error, text);
    throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `${what} is not valid YAML: ${where.text}`, {
      ...details,
      ...where.details,
    });
  }
}

/** Longest source excerpt an error quotes. */
const YAML_EXCERPT_CHARS_MAX = 80;

/**
 * One line for a YAML error: `line L, column C: <message> (<code>); near "<source>"`. The library's
 * own message ends in a multi-line excerpt with a caret (and a blank line where the error sits on an
 * empty line); the position and code come from its `linePos` and `code` instead, and the excerpt is
 * the last non-blank source line at or before the error.
 */
export function yamlErrorWhere(
  error: YAMLError,
  text: string,
): { text: string; details: Record<string, unknown> } {
  const message = (error.message.split(/ at line \d+, column \d+:/)[0] ?? error.message).trim();
  const pos = error.linePos?.[0];
  if (pos === undefined) return { text: `${message} (${error.code})`, details: { yamlCode: error.code } };
  const lines = text.split(/\r?\n/);
  let near = '';
  for (let i = Math.min(pos.line, lines.length) - 1; i >= 0 && near === ''; i--)
    near = (lines[i] ?? '').trim();
  if (near.length > YAML_EXCERPT_CHARS_MAX) near = `${near.slice(0, YAML_EXCERPT_CHARS_MAX)}...`;
  return {
    text: `line ${pos.line}, column ${pos.col}: ${message} (${error.code})${near === '' ? '' : `; near ${JSON.stringify(near)}`}`,
    details: { line: pos.line, column: pos.col, yamlCode: error.code },
  };
}
