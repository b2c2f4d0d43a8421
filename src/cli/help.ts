/**
 * Help layout shared by every command. Descriptions are written as prose, sometimes split over
 * source lines with `\n`; commander keeps such newlines as hard breaks and then wraps each piece
 * on its own, which breaks sentences in the middle at any width but the one they were written
 * for. Here prose lines are joined and wrapped to the terminal instead; lines that start with
 * whitespace (a JSON sample, an indented example) are kept as they are.
 */
import { Help, type HelpConfiguration } from 'commander';

/** Help is never wrapped wider than this, however wide the terminal: long lines are hard to read. */
export const HELP_WIDTH_MAX = 120;
/** Width used when neither the terminal nor COLUMNS says (commander's own default). */
export const HELP_WIDTH_DEFAULT = 80;

/**
 * Joins the lines of each paragraph into one line, so the wrapper can break them at the width of
 * the terminal. Blank lines (paragraph breaks) and indented lines (preformatted) stay.
 */
export function reflowProse(text: string): string {
  const out: string[] = [];
  let joinable = false;
  for (const line of text.split(/\r?\n/)) {
    const prose = line.trim() !== '' && !/^\s/.test(line);
    if (prose && joinable) out[out.length - 1] = `${out[out.length - 1]} ${line.trim()}`;
    else out.push(line);
    joinable = prose;
  }
  return out.join('\n');
}

/** The first sentence of a description, for the list of subcommands in the parent's help. */
export function firstSentence(text: string): string {
  const paragraph = reflowProse(text).split('\n')[0] ?? '';
  const end = /[.!?](?=\s+[A-Z(`])/.exec(paragraph);
  return end === null ? paragraph : paragraph.slice(0, end.index + 1);
}

/**
 * Help width: the terminal's columns when stdout is a terminal, else $COLUMNS when it is a
 * number, else 80; never above HELP_WIDTH_MAX.
 */
export function helpWidth(
  stdout: { isTTY?: boolean; columns?: number } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): number {
  const fromEnv = Number(env['COLUMNS']);
  const columns =
    stdout.isTTY === true && stdout.columns !== undefined && stdout.columns > 0
      ? stdout.columns
      : Number.isInteger(fromEnv) && fromEnv > 0
        ? fromEnv
        : HELP_WIDTH_DEFAULT;
  return Math.min(columns, HELP_WIDTH_MAX);
}

/**
 * The help configuration for `program.configureHelp`, set on the root command before any
 * subcommand is added so that every subcommand inherits it.
 */
export function helpConfiguration(width: number = helpWidth()): HelpConfiguration {
  const base = Help.prototype;
  return {
    helpWidth: width,
    sortSubcommands: false,
    commandDescription(this: Help, cmd) {
      return reflowProse(base.commandDescription.call(this, cmd));
    },
    subcommandDescription(this: Help, cmd) {
      return cmd.summary() || firstSentence(cmd.description());
    },
    optionDescription(this: Help, option) {
      return reflowProse(base.optionDescription.call(this, option));
    },
    argumentDescription(this: Help, argument) {
      return reflowProse(base.argumentDescription.call(this, argument));
    },
  };
}
