/**
 * Replays a fidelity case in the twin: the case's engine, model, GPU and TP as one cluster, its
 * arrivals and lengths as the workload, the twin's simulator and the current performance model
 * unchanged. What comes back is, per measured row (the run, or each measured stage), the twin's
 * figures over the same requests.
 */
import { assert } from '../../core/assert.ts';
import { SwitchyardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { createConfiguredPolicy } from '../../policies/routing/registry.ts';
import { createWorkload } from '../../workload/create.ts';
import type { WorkloadSpecInput } from '../../workload/spec.ts';
import type { TwinRequest } from '../../workload/types.ts';
import { SIM_DEFAULTS, toEngineConfig } from '../config.ts';
import { runSimulation } from '../simulator.ts';
import type { FidelityCase, Measured } from './case.ts';
import { figuresOf, observed, POLL_PREFIX, type PredictedFigures, RequestLog } from './observe.ts';
import { withSharedPrefix } from './prefix.ts';

/** One compared row: a case's whole run, or one of its stages. */
export interface CaseRow {
  /** `name`, or `name#k` for stage k (1-based). */
  readonly label: string;
  /** The offered rate of the row (req/s), or the concurrency of a closed loop, for the table. */
  readonly load: string;
  readonly measured: Measured;
  readonly predicted: PredictedFigures;
}

/** The outcome of one case. */
export interface CaseResult {
  readonly name: string;
  readonly source: FidelityCase['source'];
  readonly rows: readonly CaseRow[];
  /** Requests the engine refused or failed (e.g. a prompt larger than the whole KV cache). */
  readonly failed: number;
}

/** Runs one case in the twin. Deterministic: the same case gives the same result. */
export function runCase(c: FidelityCase): CaseResult {
  return c.workload.arrival === 'closed-loop' ? runClosedLoop(c) : runOpenLoop(c);
}

/** The workload spec of an open-loop case, as `switchyard sim` would take it. */
export function openLoopSpec(c: FidelityCase): WorkloadSpecInput {
  const w = c.workload;
  assert(w.arrival !== 'closed-loop', 'openLoopSpec: a closed-loop case has no open-loop spec');
  const rate =
    w.stages !== undefined
      ? { stages: w.stages.map((s) => ({ rateRps: s.rateRps, durationS: s.durationS })) }
      : { rateRps: w.rateRps as number };
  const limits = {
    ...(w.requests !== undefined ? { maxRequests: w.requests } : {}),
    ...(w.durationS !== undefined ? { durationS: w.durationS } : {}),
  };
  const lengths = { input: w.input, output: w.output };
  switch (w.arrival) {
    case 'gamma':
      return { kind: 'gamma', cv: w.cv, ...rate, ...lengths, ...limits };
    case 'poisson':
    case 'constant':
      return { kind: w.arrival, ...rate, ...lengths, ...limits };
  }
}

function runOpenLoop(c: FidelityCase): CaseResult {
  const w = c.workload;
  assert(w.arrival !== 'closed-loop', 'runOpenLoop: closed-loop case');
  // The same streams `switchyard sim --seed` draws, so a case can be rerun there by hand.
  const requests = withCasePrefix(c, [...createWorkload(openLoopSpec(c), new Rng(c.seed).fork('workload'))]);
  const log = simulate(c, requests);
  const rows: CaseRow[] = [];
  let startMs = 0;
  let anyStageSaturated = false;
  (w.stages ?? []).forEach((stage, k) => {
    const endMs = startMs + stage.durationS * 1000;
    const predicted = figuresOf(log, startMs, endMs);
    anyStageSaturated ||= predicted.saturated;
    if (stage.measured !== undefined) {
      rows.push({
        label: `${c.name}#${k + 1}`,
        load: `${stage.rateRps} req/s`,
        measured: stage.measured,
        predicted,
      });
    }
    startMs = endMs;
  });
  if (c.measured !== undefined) {
    const whole = figuresOf(log, 0, Number.POSITIVE_INFINITY);
    rows.unshift({
      label: c.name,
      load: w.stages !== undefined ? 'stages' : `${w.rateRps} req/s`,
      measured: c.measured,
      // Over stages of different rates the number in flight follows the rate, so the trend test
      // would call a rising staircase saturated: a staged run saturates when one of its stages does.
      predicted: w.stages !== undefined ? { ...whole, saturated: anyStageSaturated } : whole,
    });
  }
  return { name: c.name, source: c.source, rows, failed: log.failed };
}

function runClosedLoop(c: FidelityCase): CaseResult {
  const w = c.workload;
  assert(w.arrival === 'closed-loop', 'runClosedLoop: open-loop case');
  // Lengths as an open-loop run of the same size would draw them; the send times are the loop's.
  const spec: WorkloadSpecInput = {
    kind: 'constant',
    rateRps: 1,
    input: w.input,
    output: w.output,
    maxRequests: w.requests,
  };
  const base = withCasePrefix(c, [...createWorkload(spec, new Rng(c.seed).fork('workload'))]);
  const log = new RequestLog(base.length);
  const source = closedLoopSource(base, w.concurrency, log, CLOSED_LOOP_POLL_MS);
  simulateInto(c, source, log);
  const row = {
    label: c.name,
    load: `${w.concurrency} in flight`,
    measured: c.measured as Measured,
    // A closed loop never holds more than its clients: it slows down instead of queueing.
    predicted: { ...figuresOf(log, 0, Number.POSITIVE_INFINITY), saturated: false },
  };
  return { name: c.name, source: c.source, rows: [row], failed: log.failed };
}

/**
 * The requests with the case's shared prefix in front of each prompt (unchanged without one). The
 * chains use the engine's block size, and their own stream of the seed, so adding a prefix leaves
 * the arrivals and lengths the workload drew as they were.
 */
function withCasePrefix(c: FidelityCase, requests: TwinRequest[]): TwinRequest[] {
  const prefix = c.workload.prefix;
  if (prefix === undefined) return requests;
  const { blockSize } = toEngineConfig(c.engine, c.gpu);
  return withSharedPrefix(requests, prefix, blockSize, new Rng(c.seed).fork('prefix'));
}

/**
 * How often a closed loop looks for answers that ended, in simulated ms. A client sends its next
 * request at the first look after its answer ended, so sends lag ends by less than this (real
 * clients lag by their own HTTP round trip, which is of the same order).
 */
export const CLOSED_LOOP_POLL_MS = 0.5;
/** Most polls one closed loop makes (10,000 s of simulated time at 0.5 ms): a bound, not a target. */
export const CLOSED_LOOP_POLLS_MAX = 20_000_000;

/**
 * A closed loop as a request stream: `concurrency` clients send at 0, then request i (i >=
 * concurrency) goes out when the (i - concurrency)-th answer ends, as a benchmark's semaphore does
 * (`vllm bench serve --max-concurrency C --request-rate inf`). The simulator takes arrivals in
 * advance, one ahead, so while the next send time is unknown the stream hands it a poll: a request
 * named `p<k>` every `pollMs`, which the observing policy refuses without routing (polls reach no
 * engine and no figure). When the simulator pulls the request after a poll, every answer that ended
 * before the poll is in `log`.
 */
export function closedLoopSource(
  base: readonly TwinRequest[],
  concurrency: number,
  log: RequestLog,
  pollMs: number,
): Iterable<TwinRequest> {
  return {
    *[Symbol.iterator]() {
      const first = base[0];
      if (first === undefined) return;
      let sent = 0;
      let nowMs = 0;
      let polls = 0;
      for (; sent < Math.min(concurrency, base.length); sent++)
        yield { ...(base[sent] as TwinRequest), arrivalMs: 0 };
      while (sent < base.length) {
        if (log.ended > sent - concurrency) {
          yield { ...(base[sent] as TwinRequest), arrivalMs: nowMs };
          sent++;
        } else {
          if (polls >= CLOSED_LOOP_POLLS_MAX)
            throw new SwitchyardError(
              'SY_ERR_INVALID_ARGUMENT',
              `closed loop: no answer ended in ${CLOSED_LOOP_POLLS_MAX} polls (${(nowMs / 1000).toFixed(0)} s simulated)`,
            );
          nowMs += pollMs;
          yield { ...first, id: `${POLL_PREFIX}${polls++}`, arrivalMs: nowMs };
        }
      }
    },
  };
}

/** One twin run of the case's cluster on these requests (sorted by arrival, ids r0…). */
function simulate(c: FidelityCase, requests: readonly TwinRequest[]): RequestLog {
  const log = new RequestLog(requests.length);
  simulateInto(c, requests, log);
  return log;
}

function simulateInto(c: FidelityCase, source: Iterable<TwinRequest>, log: RequestLog): void {
  const policy = observed(createConfiguredPolicy('round-robin', {}), log);
  runSimulation(source, {
    seed: c.seed,
    cluster: { groups: [{ count: c.instances, gpu: c.gpu, model: c.model, tp: c.tp }] },
    engine: toEngineConfig(c.engine, c.gpu),
    policy,
    slo: { ttftMs: SIM_DEFAULTS.sloTtftMs, tpotMs: SIM_DEFAULTS.sloTpotMs },
    workload: `fidelity case ${c.name}`,
    cdfPointsMax: 16,
    seriesPointsMax: 16,
  });
}
