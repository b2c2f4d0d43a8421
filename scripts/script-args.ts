/**
 * Command-line handling for the scripts and benchmarks run by hand (`node --import tsx scripts/X.ts`,
 * `npm run fidelity:derived`): node's parseArgs throws on an unknown option or a missing value, which
 * printed a stack trace and exited 1, and `--help` was such an unknown option.
 */

/** The exit status of a usage error, as `switchyard` exits on one. */
export const SCRIPT_USAGE_EXIT_CODE = 2;

/**
 * Runs `parse` (a `parseArgs` call) for the script `name`. `--help` or `-h` among `argv` prints
 * `usage` on stdout and exits 0 before parsing; a parseArgs refusal (`ERR_PARSE_ARGS_*`: an unknown
 * option, a missing value, a stray positional) prints `name: message` and the usage on stderr and
 * exits 2. Anything else `parse` throws propagates.
 */
export function scriptArgs<T>(
  name: string,
  usage: string,
  parse: () => T,
  argv: readonly string[] = process.argv.slice(2),
): T {
  const text = usage.endsWith('\n') ? usage : `${usage}\n`;
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(text);
    process.exit(0);
  }
  try {
    return parse();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
      process.stderr.write(`${name}: ${(error as Error).message}\n${text}`);
      process.exit(SCRIPT_USAGE_EXIT_CODE);
    }
    throw error;
  }
}

/**
 * Refuses input that parses but cannot run (a required flag left out, a value out of range) as
 * `scriptArgs` refuses a parse error: `name: message` and `usage` on stderr, exit 2, rather than a
 * thrown Error's stack trace.
 */
export function scriptUsageError(name: string, usage: string, message: string): never {
  const text = usage.endsWith('\n') ? usage : `${usage}\n`;
  process.stderr.write(`${name}: ${message}\n${text}`);
  process.exit(SCRIPT_USAGE_EXIT_CODE);
}
