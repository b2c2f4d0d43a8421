import { type Command, type CommanderError, InvalidArgumentError } from 'commander';
import { type ErrorCode, SwitchyardError } from '../core/errors.ts';

/**
 * Commander's own usage errors (an unknown option or command, a value a flag's parser refuses, a
 * missing value) printed as every other handled error prints: one line, `switchyard: message [code]`.
 * Commander writes `error: ...` and, after a suggestion or the help hint, a second line, with no
 * `SY_ERR_*` code; a script reading stderr then needs two formats.
 */

/** The hint every usage line ends with, before its code. */
const HELP_HINT = '(run with --help for usage)';

/** A refusal's own code, as `refusal` appends it to the message. */
const TRAILING_CODE = /\s*\[(SY_ERR_[A-Z0-9_]+)\]$/;
/** How commander refuses a value outside an option's `.choices()`. */
const CHOICES_REFUSAL = 'Allowed choices are ';

/**
 * A flag parser's refusal carrying its catalogue code (a name outside a known set is
 * SY_ERR_UNKNOWN_NAME, as the same mistake caught after parsing is). Commander keeps only the
 * message of what a parser throws, so the code travels at its end and `commanderUsageLine` takes it
 * back off.
 */
export function refusal(message: string, code: ErrorCode): InvalidArgumentError {
  return new InvalidArgumentError(`${message} [${code}]`);
}

/**
 * A flag parser's refusal met outside commander (the same parser reading a config file's field): the
 * handled error it stands for, its message led by `where` (e.g. `config autoscaler.name`), its code
 * the one `refusal` gave it (else SY_ERR_INVALID_ARGUMENT). Anything else is returned as it is.
 */
export function refusalAsError(error: unknown, where: string): unknown {
  if (!(error instanceof InvalidArgumentError)) return error;
  const own = TRAILING_CODE.exec(error.message);
  const message = own === null ? error.message : error.message.slice(0, own.index);
  return new SwitchyardError(
    (own?.[1] as ErrorCode | undefined) ?? 'SY_ERR_INVALID_ARGUMENT',
    `${where}: ${message}`,
  );
}

/**
 * The catalogue code of a commander usage error: an unknown option or command, or a value outside an
 * option's choices, names something outside the known set; any other refusal is a bad value.
 */
function codeOf(error: CommanderError): ErrorCode {
  if (error.code === 'commander.unknownOption' || error.code === 'commander.unknownCommand')
    return 'SY_ERR_UNKNOWN_NAME';
  if (error.code === 'commander.invalidArgument' && error.message.includes(CHOICES_REFUSAL))
    return 'SY_ERR_UNKNOWN_NAME';
  return 'SY_ERR_INVALID_ARGUMENT';
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
  const own = TRAILING_CODE.exec(message);
  if (own !== null)
    return `switchyard: ${message.slice(0, own.index)} ${HELP_HINT} [${own[1] as ErrorCode}]\n`;
  return `switchyard: ${message} ${HELP_HINT} [${codeOf(error)}]\n`;
}

/**
 * Output settings for the program before its subcommands are added (they copy them): commander
 * prints no error itself, `main` prints `commanderUsageLine` once the error reaches it.
 */
export const QUIET_COMMANDER_ERRORS = { outputError: (): void => {} } as const;

/**
 * Refuses a run that lacks one of `names` (options' attribute names, e.g. `rate`), with the line
 * commander's `requiredOption` prints. Register it as a `preAction` hook instead of `requiredOption`:
 * commander checks required options before unknown ones, so a mistyped required flag (`--modle`)
 * read as "--model not specified" and lost its "Did you mean --model?"; a hook runs after that check.
 */
export function requireOptions(command: Command, names: readonly string[]): void {
  for (const option of command.options) {
    const name = option.attributeName();
    if (names.includes(name) && command.getOptionValue(name) === undefined)
      command.error(`error: required option '${option.flags}' not specified`, {
        code: 'commander.missingMandatoryOptionValue',
      });
  }
}
