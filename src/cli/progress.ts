import cliProgress from 'cli-progress';

/** Reports progress: requests that have arrived, and the simulated time reached. */
export type ProgressFn = (arrived: number, simulatedMs: number) => void;

/**
 * Runs `work` with a progress bar on stderr when `enabled` and stderr is a terminal. With a known
 * total the bar fills; without one it counts.
 */
export async function withProgress<T>(
  enabled: boolean,
  total: number | undefined,
  work: (onProgress: ProgressFn) => T | Promise<T>,
): Promise<T> {
  if (!enabled || process.stderr.isTTY !== true) return await work(() => {});
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        total !== undefined
          ? 'simulating [{bar}] {percentage}% | {value}/{total} requests | t={simS} s'
          : 'simulating {value} requests | t={simS} s',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total ?? 0, 0, { simS: '0' });
  try {
    return await work((arrived, simulatedMs) => {
      bar.update(arrived, { simS: (simulatedMs / 1000).toFixed(0) });
    });
  } finally {
    bar.stop();
  }
}

/**
 * Runs a multi-run experiment with a bar over its runs: each call of `step(policy, what)` names the
 * run under way. Silent when disabled or when stderr is not a terminal.
 */
export async function withSteps<T>(
  enabled: boolean,
  work: (step: (policy: string, what: string) => void) => T | Promise<T>,
  stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
): Promise<T> {
  if (!enabled || stream.isTTY !== true) return await work(() => {});
  const bar = new cliProgress.SingleBar(
    {
      stream,
      // {run} is 'policy: what' once a run is under way; before the first it says so.
      format: 'runs {value} | {run}',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(0, 0, { run: 'starting' });
  let runs = 0;
  try {
    return await work((policy, what) => {
      bar.update(++runs, { run: `${policy}: ${what}` });
    });
  } finally {
    bar.stop();
  }
}

/**
 * Writes a warning line (a trace in the wrong time unit) to stderr; the run goes on. On a terminal
 * the progress bar's line is cleared first (the bar redraws below it on its next update).
 */
export function warnLine(line: string): void {
  process.stderr.write(`${process.stderr.isTTY === true ? '\r\x1b[K' : ''}${line}\n`);
}
