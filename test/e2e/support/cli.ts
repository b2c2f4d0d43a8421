/** Running the real `switchyard` CLI (bin/switchyard.mjs) as a child process, for the CLI e2e tests. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The CLI entry point the tests run. */
export const BIN = fileURLToPath(new URL('../../../bin/switchyard.mjs', import.meta.url));

/** How one CLI run ended. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `switchyard ...args` to its end (killed after `timeoutMs`); never rejects. */
export function runCli(args: readonly string[], timeoutMs = 120_000): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { timeout: timeoutMs, maxBuffer: 32 << 20 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
