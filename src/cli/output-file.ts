/**
 * Output files named on the command line (`--json FILE`, `--html FILE`, `--decision-log FILE`) are
 * checked before any work runs: a long simulation or fidelity sweep that ends in a stack trace
 * because the report cannot be written loses the run. The check creates the folder (as the writers
 * do) and opens the file the way the writer will; a probe file it had to create is removed again.
 */
import { closeSync, mkdirSync, openSync, type Stats, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { invalidArgument } from '../core/errors.ts';

/**
 * Fails with SY_ERR_INVALID_ARGUMENT (a usage error, exit 2) naming `flag` when `path` cannot be
 * written: empty, a folder, or a place this process may not create or open a file. An existing
 * file is opened without truncating it, so a run that fails later leaves it as it was.
 */
export function checkOutputFile(flag: string, path: string): void {
  if (path.trim() === '') throw invalidArgument(flag, path, 'a file path to write to');
  const stat = statOrUndefined(path);
  if (stat?.isDirectory() === true)
    throw invalidArgument(flag, path, 'a file path, not a folder (name the file inside it)');
  try {
    mkdirSync(dirname(path), { recursive: true });
    if (stat !== undefined) closeSync(openSync(path, 'r+'));
    else {
      closeSync(openSync(path, 'wx'));
      unlinkSync(path);
    }
  } catch (error) {
    if (!isErrno(error)) throw error;
    throw invalidArgument(flag, path, `a file this process can write (${error.code}: ${reason(error)})`);
  }
}

/** Checks every output file that is set, each under its flag's name; two flags may not share a file. */
export function checkOutputFiles(files: Readonly<Record<string, string | undefined>>): void {
  const seen = new Map<string, string>();
  for (const [flag, path] of Object.entries(files)) {
    if (path === undefined) continue;
    checkOutputFile(flag, path);
    const other = seen.get(resolve(path));
    // The second report would overwrite the first.
    if (other !== undefined) throw invalidArgument(flag, path, `a file other than ${other}'s`);
    seen.set(resolve(path), flag);
  }
}

/** The file's stat, or undefined when there is nothing (readable) at `path`. */
function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function isErrno(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

/** The system's words for an errno, without the code and path node puts around them. */
function reason(error: NodeJS.ErrnoException): string {
  const words: Record<string, string> = {
    ENOENT: 'its folder cannot be created or does not take files',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EEXIST: 'a part of the path is a file, not a folder',
    EISDIR: 'it is a folder',
    ENOSPC: 'no space left on the device',
  };
  return words[error.code ?? ''] ?? error.message;
}
