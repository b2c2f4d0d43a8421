import type { CommanderError } from 'commander';
import type { ErrorCode } from '../core/errors.ts';

/**
 * Commander's own usage errors (an unknown option or command, a value a flag's parser refuses, a
 * missing value) printed as every other handled error prints: one line, `switchyard: message [code]`.
 * Commander writes `error: ...` and, after a suggestion or the help hint, a second line, with no
 * `SY_ERR_*` code; a script reading stderr then needs two formats.
 */

/** The hint every usage line ends with, before its code. */
const HELP_HINT = '(run with --help for usage)';

/** The catalogue code of a commander usage error: a name outside the known set, else a bad value. */
function codeOf(error: CommanderError): ErrorCode {
  return error.code === 'commander.unknownOption' || error.code === 'commander.unknownCommand'
    ? 'SY_ERR_UNKNOWN_NAME'
    : 'SY_ERR_INVALID_ARGUMENT';
}

/**
 * The one line (with its newline) a commander usage error prints, or undefined for what is not one
 * (help or the version shown, help shown for a command given without its subcommand).
 */
export function commanderUsageLine(error: CommanderError): string | undefined {
  if (!error.message.startsWith('error: ')) return undefined;
  // A suggestion comes on its own line ("\n(Did you mean --rate?)"): one line holds it.
  const message = error.message
    .slice('error: '.length)
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  return `switchyard: ${message} ${HELP_HINT} [${codeOf(error)}]\n`;
}

/**
 * Output settings for the program before its subcommands are added (they copy them): commander
 * prints no error itself, `main` prints `commanderUsageLine` once the error reaches it.
 */
export const QUIET_COMMANDER_ERRORS = { outputError: (): void => {} } as const;
