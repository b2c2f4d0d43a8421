import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { loadFidelityCase } from '../twin/fidelity/case.ts';
import { compareAll } from '../twin/fidelity/compare.ts';
import {
  fidelityJson,
  formatCaseNotes,
  formatFidelitySummary,
  formatFidelityTable,
} from '../twin/fidelity/report.ts';
import { type CaseResult, runCase } from '../twin/fidelity/run-case.ts';
import { writeTextFile } from '../twin/fidelity/write.ts';
import { checkOutputFile } from './output-file.ts';
import { withProgress, withSteps } from './progress.ts';

/** Most case files one run reads (a folder of thousands is a mistake, not a benchmark). */
export const CASE_FILES_MAX = 1000;
const CASE_EXTENSIONS = ['.yaml', '.yml', '.json'];

interface FidelityFlags {
  json?: string | true;
  progress: boolean;
}

/** Registers `switchyard fidelity`. */
export function registerFidelityCommand(program: Command): void {
  program
    .command('fidelity')
    .summary('Replay published measurements of real engines in the twin: measured against predicted')
    .description(
      'Replay published end-to-end measurements of real engines in the twin and compare: measured against ' +
        'predicted TTFT, per-token time and E2E with the signed error of each, whether the twin saturates ' +
        'where the real engine did not, and the median error over all cases. See docs/fidelity.md for the ' +
        'case format.',
    )
    .argument('<files...>', 'case files (YAML or JSON), or folders of them, e.g. data/fidelity')
    .option(
      '--json [file]',
      'write the results as JSON to the file, or to stdout instead of the table (give the file after the case ' +
        'files or as --json=FILE: in --json a.yaml b.yaml, a.yaml is taken for the report and refused)',
    )
    .option(
      '--no-progress',
      'do not draw a progress bar (over the cases, or over the requests of a single case)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard fidelity data/fidelity\n' +
        '  switchyard fidelity data/fidelity/a100-40gb-llama-3.1-8b-c1.yaml --json out/fidelity.json\n' +
        '  npm run fidelity',
    )
    .action(async (files: string[], flags: FidelityFlags) => {
      const paths = expandCaseFiles(files);
      if (typeof flags.json === 'string') {
        checkJsonNotACase(flags.json, paths);
        checkOutputFile('json', flags.json);
      }
      // Every file is validated before any case runs, so a typo in the last one fails at once.
      const cases = paths.map((path) =>
        inCase(`fidelity case '${path}'`, () => {
          checkLineEndings(path);
          return loadFidelityCase(path);
        }),
      );
      checkUniqueNames(paths, cases);
      // One case (a staged run of hundreds of thousands of requests, say) gets a bar over its
      // requests; several get one over the cases.
      const only = cases.length === 1 ? cases[0] : undefined;
      const results =
        only !== undefined
          ? [
              await withProgress(flags.progress, undefined, (onProgress) =>
                inCase(`fidelity case '${only.name}'`, () => runCase(only, onProgress)),
              ),
            ]
          : await withSteps(flags.progress, async (step) => {
              const out: CaseResult[] = [];
              for (const [i, c] of cases.entries()) {
                step(c.name, `case ${i + 1} of ${cases.length}`);
                // Let the bar draw between cases.
                await new Promise((resolve) => setImmediate(resolve));
                out.push(inCase(`fidelity case '${c.name}'`, () => runCase(c)));
              }
              return out;
            });
      const { rows, summary } = compareAll(results);
      const json = `${JSON.stringify(fidelityJson(results, rows, summary), null, 2)}\n`;
      if (flags.json === true) {
        process.stdout.write(json);
        return;
      }
      const color = process.stdout.isTTY === true;
      process.stdout.write(`${formatFidelityTable(rows, { color })}\n`);
      process.stdout.write(`${formatFidelitySummary(summary)}\n`);
      process.stdout.write(`${formatCaseNotes(results)}\n`);
      if (flags.json !== undefined) {
        writeTextFile(flags.json, json);
        process.stdout.write(`wrote ${flags.json}\n`);
      }
    });
}

/**
 * Refuses two cases with one name (their rows would share labels), naming both files: a folder of
 * 20 per-stage cases copied from one file shares its name 20 times.
 */
export function checkUniqueNames(paths: readonly string[], cases: readonly { name: string }[]): void {
  const seen = new Map<string, string>();
  for (const [i, c] of cases.entries()) {
    const path = paths[i] ?? '?';
    const before = seen.get(c.name);
    if (before !== undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `two fidelity cases are named '${c.name}': ${before} and ${path}; give each case its own name`,
      );
    seen.set(c.name, path);
  }
}

/**
 * Runs `work`, prefixing a handled error's message with the case it is about (an unknown GPU or
 * a TP the model cannot split by would otherwise not say which of many files holds it).
 */
function inCase<T>(label: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (!(error instanceof SwitchyardError) || error.message.includes(label)) throw error;
    throw new SwitchyardError(
      error.code,
      `${label}: ${error.message}`,
      error.details as Record<string, unknown>,
    );
  }
}

/**
 * `--json` takes an optional value, so in `fidelity --json a.yaml b.yaml` commander hands a.yaml to
 * --json and the report would overwrite that case. A case file, any .yaml/.yml path, or an existing
 * file that holds a case (a JSON case: `fidelity --json a.json b.json`) is refused.
 */
export function checkJsonNotACase(json: string, cases: readonly string[]): void {
  const target = resolve(json);
  if (cases.some((c) => resolve(c) === target) || /\.ya?ml$/i.test(json) || holdsACase(target))
    throw invalidArgument(
      'json',
      json,
      'a .json file to write the report to, not a case file (put the case files first, or write --json=FILE)',
    );
}

/** Most bytes of an existing --json target read to tell whether it is a case (cases are small). */
const CASE_PROBE_BYTES = 1024 * 1024;

/** True when `path` is an existing file whose JSON is an object with a case's `source` and `workload`. */
function holdsACase(path: string): boolean {
  try {
    // A path that cannot be a file (under a file, say) is left to checkOutputFile's error.
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat === undefined || !stat.isFile() || stat.size > CASE_PROBE_BYTES) return false;
    const value: unknown = JSON.parse(readFileSync(path, 'utf8').replace(/^\uFEFF/, ''));
    return typeof value === 'object' && value !== null && 'source' in value && 'workload' in value;
  } catch {
    return false;
  }
}

/** A carriage return that no line feed follows: the line ending of classic Mac OS files. */
const LONE_CR = /\r(?!\n)/;

/**
 * Refuses a case file with a lone CR. The YAML parser does not break lines there: a file saved
 * with CR line endings read as one comment line (then "expected an object ..., got null"), and a
 * stray CR at the end as "Implicit map keys need to be followed by map values" (JSON too, where a
 * CR is whitespace, parsed into a wrong key). A file that cannot be read is left to the loader.
 */
export function checkLineEndings(path: string): void {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return;
  }
  const at = LONE_CR.exec(text);
  if (at === null) return;
  const line = text.slice(0, at.index).split('\n').length;
  throw new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `line ${line} ends in a carriage return without a line feed (a classic Mac OS line ending); ` +
      'save the file with LF or CRLF line endings',
    { line },
  );
}

/** Files as given, folders replaced by their case files (sorted); fails on a missing path or none found. */
export function expandCaseFiles(args: readonly string[]): string[] {
  const out: string[] = [];
  for (const arg of args) {
    let isDir: boolean;
    try {
      isDir = statSync(arg).isDirectory();
    } catch {
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `fidelity case '${arg}' cannot be read`);
    }
    if (!isDir) {
      out.push(arg);
      continue;
    }
    const inside = readdirSync(arg)
      .filter((name) => CASE_EXTENSIONS.some((ext) => name.endsWith(ext)))
      .sort()
      .map((name) => join(arg, name));
    if (inside.length === 0)
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `folder '${arg}' holds no .yaml, .yml or .json case`);
    out.push(...inside);
  }
  if (out.length > CASE_FILES_MAX)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `${out.length} case files; at most ${CASE_FILES_MAX}`,
    );
  return out;
}
