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

/** A `switchyard sim` P/D run: a Poisson workload of fixed-length prompts and outputs. */
export interface SimPdRun {
  readonly rate: number;
  /** `--requests`; otherwise `--duration` in `durationS`. */
  readonly requests?: number;
  readonly durationS?: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly prefills: number;
  readonly decodes: number;
}

/** The `sim` flags of `run` on a P/D cluster (no progress line), then the flags in `extra`. */
export function simPdArgs(run: SimPdRun, extra: readonly string[] = []): string[] {
  const span =
    run.requests !== undefined ? ['--requests', String(run.requests)] : ['--duration', String(run.durationS)];
  return [
    'sim',
    '--workload',
    'poisson',
    '--rate',
    String(run.rate),
    ...span,
    '--input-tokens',
    String(run.inputTokens),
    '--output-tokens',
    String(run.outputTokens),
    '--prefill-instances',
    String(run.prefills),
    '--decode-instances',
    String(run.decodes),
    '--no-progress',
    ...extra,
  ];
}
