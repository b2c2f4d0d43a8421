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
    // commander leaves a description holding an indented line unwrapped altogether (it takes it
    // for hand-formatted), so an option with a list of choices printed its prose and every item
    // on one line each, however long. Prose is reflowed above; here every line is wrapped.
    preformatted: () => false,
    boxWrap(this: Help, str: string, width: number) {
      return wrapLines(str, width, (s) => this.displayWidth(s));
    },
  };
}

/** Continuation lines of an indented line sit this much deeper than it. */
const HANGING_INDENT = 2;

/**
 * Wraps each line of `text` at whitespace to `width` columns (a word longer than the width stays
 * whole). An indented line keeps its indent, and its continuation lines hang under it
 * (HANGING_INDENT deeper), so a list item reads as one item.
 */
export function wrapLines(
  text: string,
  width: number,
  displayWidth: (s: string) => number = (s) => s.length,
): string {
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (displayWidth(line) <= width) {
      out.push(line);
      continue;
    }
    const indent = /^\s*/.exec(line)?.[0] ?? '';
    const hang = indent === '' ? '' : indent + ' '.repeat(HANGING_INDENT);
    let current = indent;
    for (const word of line.slice(indent.length).split(/\s+/)) {
      if (word === '') continue;
      const candidate = current.trim() === '' ? current + word : `${current} ${word}`;
      if (displayWidth(candidate) <= width || current.trim() === '') current = candidate;
      else {
        out.push(current);
        current = hang + word;
      }
    }
    out.push(current);
  }
  return out.join('\n');
}
