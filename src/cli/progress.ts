import type { SingleBar } from 'cli-progress';

/**
 * cli-progress, loaded when a bar is drawn, which is only on a terminal: a `sim`, `demo` or
 * `fidelity` run whose stderr is a pipe or a file (scripts, tests, CI) skips its load, 0.024 s of
 * CPU (median of 9 fresh imports on the loaded 2-core machine; bench/cli-startup.ts times starts).
 */
async function loadCliProgress(): Promise<typeof import('cli-progress')> {
  return (await import('cli-progress')).default;
}

/**
 * Reports progress: requests that have arrived, and the simulated time reached; `total`, the run's
 * request count when the run knows it (a trace replay counts its requests before it starts).
 */
export type ProgressFn = (arrived: number, simulatedMs: number, total?: number) => void;

/**
 * Runs `work` with a progress bar on `stream` (stderr) when `enabled` and it is a terminal. With a
 * known total (given, or told by the run's first report, which wins: a trace may hold fewer
 * requests than --requests) the bar fills; without one it counts.
 */
export async function withProgress<T>(
  enabled: boolean,
  total: number | undefined,
  work: (onProgress: ProgressFn) => T | Promise<T>,
  stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
): Promise<T> {
  if (!enabled || stream.isTTY !== true) return await work(() => {});
  const cliProgress = await loadCliProgress();
  let bar: SingleBar | undefined;
  /** The bar, drawn at the run's first report, when its total is known if it ever is. */
  const open = (n: number | undefined): SingleBar => {
    const b = new cliProgress.SingleBar(
      {
        stream,
        format:
          n !== undefined
            ? 'simulating [{bar}] {percentage}% | {value}/{total} requests | t={simS} s'
            : 'simulating {value} requests | t={simS} s',
        hideCursor: true,
        clearOnComplete: true,
      },
      cliProgress.Presets.shades_classic,
    );
    b.start(n ?? 0, 0, { simS: '0' });
    return b;
  };
  try {
    return await work((arrived, simulatedMs, known) => {
      bar ??= open(known ?? total);
      bar.update(arrived, { simS: (simulatedMs / 1000).toFixed(0) });
    });
  } finally {
    bar?.stop();
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
  const cliProgress = await loadCliProgress();
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
