/**
 * The llama engine's start-up, stage by stage, in seconds since its process started (Node's time
 * origin, `performance.now()`). The stages follow the order the engine does them:
 *
 * | stage | ends when |
 * | --- | --- |
 * | `runtime` | the engine command starts (Node, the CLI's modules) |
 * | `import` | node-llama-cpp's JavaScript is imported |
 * | `binding` | `getLlama` returns (on Linux it forks a process to test the prebuilt binary, then loads it) |
 * | `weights` | `loadModel` returns (mmap of the GGUF, populated from the page cache or the disk) |
 * | `context` | `createContext` returns (KV cache allocated and cleared, compute graph reserved) |
 * | `listen` | the HTTP server listens and the ready line is out |
 *
 * Then the first token of the first request, whenever it comes. Exported on `/metrics` under
 * vLLM-style names (`switchyard:engine_startup_*_seconds`) and logged once as one JSON line on stderr.
 *
 * A standby engine (`--standby`) runs the first three stages, then waits for a model: for it every
 * figure counts from the moment it was given the model (`activate`), the stages before are left out,
 * and `switchyard:engine_standby_seconds` says when that was.
 */
import { performance } from 'node:perf_hooks';

/** Start-up stages in order (each ends at its mark). */
export const STARTUP_STAGES = ['runtime', 'import', 'binding', 'weights', 'context', 'listen'] as const;
/** One stage of the start-up. */
export type StartupStage = (typeof STARTUP_STAGES)[number];

/** What the start-up took, in seconds since the process started. */
export interface StartupReport {
  /** Process start to the end of each stage that has ended. */
  readonly stageEndS: Partial<Record<StartupStage, number>>;
  /** Process start to ready (the end of `listen`), once ready. */
  readonly readyS: number | undefined;
  /** Process start to the first generated token, once one was generated. */
  readonly firstTokenS: number | undefined;
  /** Bytes of the model file (for bandwidth: bytes over seconds). */
  readonly modelBytes: number | undefined;
  /** A standby engine: process start to the moment it was given its model (the figures' origin). */
  readonly standbyS: number | undefined;
}

/** Marks the stages' ends as they happen. Marking a stage twice keeps the first mark. */
export class StartupClock {
  private readonly endsMs: Partial<Record<StartupStage, number>> = {};
  private firstTokenMs: number | undefined;
  private bytes: number | undefined;
  private originMs: number | undefined;

  /** @param nowMs milliseconds since the process started (a test passes its own) */
  constructor(private readonly nowMs: () => number = () => performance.now()) {}

  /** The stage just ended. */
  mark(stage: StartupStage): void {
    this.endsMs[stage] ??= this.nowMs();
  }

  /** A standby engine was given its model now: later figures count from here. */
  activate(): void {
    this.originMs ??= this.nowMs();
  }

  /** A token was generated; the first one counts. Returns true for the first. */
  markToken(): boolean {
    if (this.firstTokenMs !== undefined) return false;
    this.firstTokenMs = this.nowMs();
    return true;
  }

  set modelBytes(bytes: number) {
    this.bytes = bytes;
  }

  report(): StartupReport {
    const origin = this.originMs ?? 0;
    const stageEndS: Partial<Record<StartupStage, number>> = {};
    for (const stage of STARTUP_STAGES) {
      const ms = this.endsMs[stage];
      if (ms !== undefined && ms >= origin) stageEndS[stage] = (ms - origin) / 1000;
    }
    return {
      stageEndS,
      readyS: stageEndS.listen,
      firstTokenS: this.firstTokenMs === undefined ? undefined : (this.firstTokenMs - origin) / 1000,
      modelBytes: this.bytes,
      standbyS: this.originMs === undefined ? undefined : this.originMs / 1000,
    };
  }
}

/** Prometheus label values are quoted strings with `\`, `"` and newlines escaped. */
function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * The report as Prometheus exposition text: gauges `switchyard:engine_startup_ready_seconds`,
 * `switchyard:engine_startup_first_token_seconds` (each absent until it happened),
 * `switchyard:engine_startup_stage_seconds{stage}` (each ended stage's own duration) and
 * `switchyard:engine_model_bytes`, labelled like the vLLM series (`model_name`, `engine="0"`).
 */
export function startupMetricsText(report: StartupReport, modelName: string): string {
  const labels = `model_name="${labelValue(modelName)}",engine="0"`;
  const lines: string[] = [];
  const gauge = (name: string, help: string, samples: readonly (readonly [string, number])[]): void => {
    if (samples.length === 0) return;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [extra, value] of samples) lines.push(`${name}{${labels}${extra}} ${value}`);
  };
  const one = (value: number | undefined): [string, number][] => (value === undefined ? [] : [['', value]]);
  gauge(
    'switchyard:engine_startup_ready_seconds',
    'Seconds from the engine process start (a standby engine: from its model) to ready (listening, model loaded, context created).',
    one(report.readyS),
  );
  gauge(
    'switchyard:engine_startup_first_token_seconds',
    'Seconds from the engine process start (a standby engine: from its model) to the first generated token of its first request.',
    one(report.firstTokenS),
  );
  const stages: [string, number][] = [];
  let previousS = 0;
  for (const stage of STARTUP_STAGES) {
    const endS = report.stageEndS[stage];
    if (endS === undefined) continue;
    stages.push([`,stage="${stage}"`, Math.max(0, endS - previousS)]);
    previousS = endS;
  }
  gauge(
    'switchyard:engine_startup_stage_seconds',
    'Seconds each start-up stage took (runtime, import, binding, weights, context, listen); they add up to ready.',
    stages,
  );
  gauge(
    'switchyard:engine_model_bytes',
    'Bytes of the model file the engine loaded.',
    one(report.modelBytes),
  );
  gauge(
    'switchyard:engine_standby_seconds',
    'Seconds from the process start until a standby engine was given its model (the origin of the start-up figures).',
    one(report.standbyS),
  );
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** The one log line (JSON) that sums the start-up up, printed at the first token. */
export function startupLogLine(report: StartupReport, engine: string): string {
  const round = (s: number | undefined) => (s === undefined ? null : Math.round(s * 1000) / 1000);
  const stages: Record<string, number | null> = {};
  let previousS = 0;
  for (const stage of STARTUP_STAGES) {
    const endS = report.stageEndS[stage];
    if (endS === undefined) continue;
    stages[stage] = round(endS - previousS);
    previousS = endS;
  }
  return JSON.stringify({
    event: 'startup',
    engine,
    readyS: round(report.readyS),
    firstTokenS: round(report.firstTokenS),
    stagesS: stages,
    modelBytes: report.modelBytes ?? null,
    ...(report.standbyS === undefined ? {} : { standbyS: round(report.standbyS) }),
  });
}
