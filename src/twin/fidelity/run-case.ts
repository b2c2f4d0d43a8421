/**
 * Replays a fidelity case in the twin: the case's engine, model, GPU and TP as one cluster, its
 * arrivals and lengths as the workload, the twin's simulator and the current performance model
 * unchanged. What comes back is, per measured row (the run, or each measured stage), the twin's
 * figures over the same requests.
 */
import { assert } from '../../core/assert.ts';
import { SwitchyardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { fitsContext } from '../../model/context.ts';
import { modelSpec } from '../../model/models.ts';
import { createConfiguredPolicy } from '../../policies/routing/registry.ts';
import type { RoutingPolicy } from '../../policies/routing/types.ts';
import { createWorkload } from '../../workload/create.ts';
import type { WorkloadSpecInput } from '../../workload/spec.ts';
import type { TwinRequest } from '../../workload/types.ts';
import { SIM_DEFAULTS, toEngineConfig } from '../config.ts';
import { runSimulation } from '../simulator.ts';
import type { FidelityCase, Measured } from './case.ts';
import {
  clientFiguresOf,
  figuresOf,
  observed,
  POLL_PREFIX,
  type PredictedFigures,
  RequestLog,
} from './observe.ts';
import { withSharedPrefix } from './prefix.ts';

/** One compared row: a case's whole run, or one of its stages. */
export interface CaseRow {
  /** `name`, or `name#k` for stage k (1-based). */
  readonly label: string;
  /**
   * The offered rate of the row (req/s) and its client cap where it has one, or the concurrency of
   * a closed loop, for the table.
   */
  readonly load: string;
  readonly measured: Measured;
  readonly predicted: PredictedFigures;
}

/** The outcome of one case. */
export interface CaseResult {
  readonly name: string;
  readonly source: FidelityCase['source'];
  /**
   * What the twin ran: the catalogue ids the case's model and GPU names resolved to (a case may
   * write `meta-llama/Llama-2-7b-hf`, `NVIDIA H100 80GB HBM3`), its TP and its instances, so a
   * reader can check the names were read as meant.
   */
  readonly setup: CaseSetup;
  readonly rows: readonly CaseRow[];
  /** Requests the engine refused or failed (e.g. a prompt larger than the whole KV cache). */
  readonly failed: number;
}

/** The catalogue model and GPU a case ran on, with its tensor parallelism and engine count. */
export interface CaseSetup {
  readonly model: string;
  readonly gpu: string;
  readonly tp: number;
  readonly instances: number;
}

function setupOf(c: FidelityCase): CaseSetup {
  return { model: c.model, gpu: c.gpu, tp: c.tp, instances: c.instances };
}

/**
 * How far a case's run has got: requests that ended (answered or not) of the case's total, and the
 * simulated time reached. Called every few thousand arrivals, as requests end (about 200 times a run)
 * and once at the end; for a progress bar.
 */
export type CaseProgress = (ended: number, simulatedMs: number, total: number) => void;

/**
 * Runs one case in the twin. Deterministic: the same case gives the same result (`onProgress`
 * only watches).
 */
export function runCase(c: FidelityCase, onProgress?: CaseProgress): CaseResult {
  return c.workload.arrival === 'closed-loop' ? runClosedLoop(c, onProgress) : runOpenLoop(c, onProgress);
}

/**
 * What a case's requests declare as max_tokens: their output length. Benchmark clients send it so
 * (`vllm bench serve` sets max_tokens to each request's output length, and with --ignore-eos the
 * engine generates all of it); `switchyard sim`'s default, a 4096 cap, would cut longer outputs
 * short and compare a shorter run against the measured one.
 */
const BENCH_MAX_TOKENS = 'exact';

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
  const lengths = { input: w.input, output: w.output, declaredMaxTokens: BENCH_MAX_TOKENS };
  switch (w.arrival) {
    case 'gamma':
      return { kind: 'gamma', cv: w.cv, ...rate, ...lengths, ...limits };
    case 'poisson':
    case 'constant':
      return { kind: w.arrival, ...rate, ...lengths, ...limits };
  }
}

function runOpenLoop(c: FidelityCase, onProgress?: CaseProgress): CaseResult {
  return replayOpenLoop(c, onProgress).result;
}

/** An open-loop case's result with the per-request log it was computed from (for tests and checks). */
export function replayOpenLoop(
  c: FidelityCase,
  onProgress?: CaseProgress,
): { result: CaseResult; log: RequestLog } {
  const w = c.workload;
  assert(w.arrival !== 'closed-loop', 'replayOpenLoop: closed-loop case');
  const requests = openLoopRequests(c);
  checkCaseContext(c, requests);
  const cap = w.maxConcurrency;
  const log = new RequestLog(requests.length);
  simulateInto(
    c,
    cap === undefined ? requests : cappedSource(requests, cap, log, CLIENT_POLL_MS),
    log,
    onProgress,
  );
  const capped = cap === undefined ? '' : `, cap ${cap}`;
  const figures = (fromMs: number, toMs: number): PredictedFigures => {
    const predicted = figuresOf(log, fromMs, toMs);
    return cap === undefined ? predicted : { ...predicted, client: clientFiguresOf(log, cap, fromMs, toMs) };
  };
  const rows: CaseRow[] = [];
  let startMs = 0;
  let anyStageSaturated = false;
  let anyStageClientBound = false;
  (w.stages ?? []).forEach((stage, k) => {
    const endMs = startMs + stage.durationS * 1000;
    const predicted = figures(startMs, endMs);
    anyStageSaturated ||= predicted.saturated;
    anyStageClientBound ||= predicted.client?.clientBound === true;
    if (stage.measured !== undefined) {
      rows.push({
        label: `${c.name}#${k + 1}`,
        load: `${stage.rateRps} req/s${capped}`,
        measured: stage.measured,
        predicted,
      });
    }
    startMs = endMs;
  });
  if (c.measured !== undefined) {
    const whole = figures(0, Number.POSITIVE_INFINITY);
    rows.unshift({
      label: c.name,
      load: `${w.stages !== undefined ? 'stages' : `${w.rateRps} req/s`}${capped}`,
      measured: c.measured,
      // A staged run saturates when one of its stages does (and its client queue grows when one
      // stage's does): a trend test over the whole run would weigh a stage past capacity against
      // the others, and the queue at each arrival follows each stage's rate.
      predicted: w.stages !== undefined ? stagedWhole(whole, anyStageSaturated, anyStageClientBound) : whole,
    });
  }
  return { result: { name: c.name, source: c.source, setup: setupOf(c), rows, failed: log.failed }, log };
}

/** A staged run's whole-run figures with the verdicts its stages gave. */
function stagedWhole(whole: PredictedFigures, saturated: boolean, clientBound: boolean): PredictedFigures {
  return {
    ...whole,
    saturated,
    ...(whole.client !== undefined ? { client: { ...whole.client, clientBound } } : {}),
  };
}

function runClosedLoop(c: FidelityCase, onProgress?: CaseProgress): CaseResult {
  const w = c.workload;
  assert(w.arrival === 'closed-loop', 'runClosedLoop: open-loop case');
  const drawn = closedLoopRequests(c);
  checkCaseContext(c, drawn);
  // A closed loop is a capped client with every request due at once.
  const base = drawn.map((r) => ({ ...r, arrivalMs: 0 }));
  const log = new RequestLog(base.length);
  simulateInto(c, cappedSource(base, w.concurrency, log, CLIENT_POLL_MS), log, onProgress);
  const row = {
    label: c.name,
    load: `${w.concurrency} in flight`,
    measured: c.measured as Measured,
    // A closed loop never holds more than its clients: it slows down instead of queueing.
    predicted: { ...figuresOf(log, 0, Number.POSITIVE_INFINITY), saturated: false },
  };
  return { name: c.name, source: c.source, setup: setupOf(c), rows: [row], failed: log.failed };
}

/** An open-loop case's requests at their scheduled times, the shared prefix in front. */
function openLoopRequests(c: FidelityCase): TwinRequest[] {
  // The same streams `switchyard sim --seed` draws, so a case can be rerun there by hand.
  return withCasePrefix(c, [...createWorkload(openLoopSpec(c), new Rng(c.seed).fork('workload'))]);
}

/** A closed-loop case's requests in sending order, the shared prefix in front (times: the loop's). */
function closedLoopRequests(c: FidelityCase): TwinRequest[] {
  const w = c.workload;
  assert(w.arrival === 'closed-loop', 'closedLoopRequests: open-loop case');
  // Lengths as an open-loop run of the same size would draw them; the send times are the loop's.
  const spec: WorkloadSpecInput = {
    kind: 'constant',
    rateRps: 1,
    input: w.input,
    output: w.output,
    declaredMaxTokens: BENCH_MAX_TOKENS,
    maxRequests: w.requests,
  };
  return withCasePrefix(c, [...createWorkload(spec, new Rng(c.seed).fork('workload'))]);
}

/**
 * Refuses a case one of whose requests would not fit its model's context: a prompt (shared prefix
 * included) plus output past the catalogue's `contextTokensMax` (src/model/context.ts). The engine
 * would answer it 400 before any work, as vLLM does, and the twin would fail it (`failed
 * upstream_4xx`) and compare figures over fewer requests than the source measured; a case exists to
 * compare, so it fails with SY_ERR_INVALID_CONFIG naming the case, the model, the limit and the first
 * such request. `requests`: the case's draw (drawn here when not given, as the run draws it).
 */
export function checkCaseContext(c: FidelityCase, requests?: readonly TwinRequest[]): void {
  const drawn =
    requests ?? (c.workload.arrival === 'closed-loop' ? closedLoopRequests(c) : openLoopRequests(c));
  const modelMax = modelSpec(c.model).contextTokensMax;
  const n = (x: number): string => x.toLocaleString('en-US');
  const maxModelLen = c.engine.maxModelLen;
  if (maxModelLen !== undefined && maxModelLen > modelMax)
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `case '${c.name}': engine.maxModelLen ${n(maxModelLen)} is past ${c.model}'s context of ` +
        `${n(modelMax)} tokens; vLLM refuses to start with it. Leave it out or write at most ${n(modelMax)}`,
    );
  const contextTokensMax = Math.min(modelMax, maxModelLen ?? modelMax);
  const limit = maxModelLen === undefined ? `${c.model}'s context` : `max_model_len (engine.maxModelLen)`;
  let first: TwinRequest | undefined;
  let over = 0;
  for (const r of drawn) {
    if (fitsContext(contextTokensMax, r.inputTokens, r.trueOutputTokens)) continue;
    first ??= r;
    over++;
  }
  if (first === undefined) return;
  throw new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `case '${c.name}': ${n(over)} of ${n(drawn.length)} requests pass ${limit} of ` +
      `${n(contextTokensMax)} tokens (the first, ${first.id}: ${n(first.inputTokens)} prompt + ` +
      `${n(first.trueOutputTokens)} output = ${n(first.inputTokens + first.trueOutputTokens)}); an engine ` +
      'refuses such a request with 400, so the twin would compare over the rest. Bound the lengths ' +
      "(a lognormal's or normal's max, a fixed or uniform length) or pick a model with a longer context",
  );
}

/** The case's engine options as the twin's engine takes them: without vLLM's max_model_len, a bound on requests only. */
function twinEngineOptions(c: FidelityCase): Parameters<typeof toEngineConfig>[0] {
  const { maxModelLen: _bound, ...options } = c.engine;
  return options;
}

/**
 * The requests with the case's shared prefix in front of each prompt (unchanged without one). The
 * chains use the engine's block size, and their own stream of the seed, so adding a prefix leaves
 * the arrivals and lengths the workload drew as they were.
 */
function withCasePrefix(c: FidelityCase, requests: TwinRequest[]): TwinRequest[] {
  const prefix = c.workload.prefix;
  if (prefix === undefined) return requests;
  const { blockSize } = toEngineConfig(twinEngineOptions(c), c.gpu);
  return withSharedPrefix(requests, prefix, blockSize, new Rng(c.seed).fork('prefix'));
}

/**
 * How often a capped client whose slots are all taken looks for answers that ended, in simulated
 * ms. It sends its next request at the first look after an answer ended, so a send lags the end
 * that frees its slot by less than this (real clients lag by their own HTTP round trip, which is
 * of the same order).
 */
export const CLIENT_POLL_MS = 0.5;
/**
 * Most polls one run makes in all (10,000 s of simulated time with every slot taken, at 0.5 ms): a
 * bound on a run's work, not a target. It counts every wait of the run, so a long run whose client
 * is full most of the time reaches it as an engine that answers nothing would; the error says which.
 */
export const CLIENT_POLLS_MAX = 20_000_000;

/**
 * A client that keeps at most `maxConcurrency` requests in flight, as a request stream. `base`
 * holds the requests (ids r0…) at their scheduled times, in order. Request k goes out at its
 * scheduled time if a slot is free then, else when the (k − maxConcurrency)-th answer ends (first
 * come, first sent): `vllm bench serve --max-concurrency C`, whose requests wait on a semaphore
 * and are timed from when they get it. Every request due at 0 is a closed loop of C clients.
 *
 * The simulator takes arrivals in advance, one ahead, so while the next send time is unknown the
 * stream hands it a poll (a request named `p<k>`, which the observing policy refuses without
 * routing: polls reach no engine and no figure), at the request's scheduled time or `pollMs` after
 * the last look, whichever is later. When the simulator pulls the request after a poll, every
 * answer that ended before the poll is in `log`. `pollsMax` bounds the run's polls in all.
 */
export function cappedSource(
  base: readonly TwinRequest[],
  maxConcurrency: number,
  log: RequestLog,
  pollMs: number,
  pollsMax: number = CLIENT_POLLS_MAX,
): Iterable<TwinRequest> {
  return {
    *[Symbol.iterator]() {
      const first = base[0];
      if (first === undefined) return;
      let nowMs = 0;
      let polls = 0;
      let waitPolls = 0;
      for (let sent = 0; sent < base.length; ) {
        const request = base[sent] as TwinRequest;
        // Requests r0 … r(sent-1) have gone out; a slot is free when fewer than the cap are unanswered.
        if (log.ended > sent - maxConcurrency) {
          nowMs = Math.max(nowMs, request.arrivalMs);
          log.scheduled(sent, request.arrivalMs);
          yield { ...request, arrivalMs: nowMs };
          sent++;
          waitPolls = 0;
        } else {
          if (polls >= pollsMax)
            throw new SwitchyardError(
              'SY_ERR_INVALID_ARGUMENT',
              `capped client: ${pollsMax} polls in all, the bound on one run's (${waitPolls} since the last send; ${(nowMs / 1000).toFixed(0)} s simulated): fewer requests, or an engine that answers`,
            );
          nowMs = Math.max(nowMs + pollMs, request.arrivalMs);
          waitPolls++;
          yield { ...first, id: `${POLL_PREFIX}${polls++}`, arrivalMs: nowMs };
        }
      }
    },
  };
}

/** About how many reports a case's run makes from its requests' ends (see reportingEnds). */
const END_REPORTS = 200;

/**
 * `policy` that also reports progress as requests end, every 1/END_REPORTS of the case's
 * requests. The simulator reports only at arrivals (and once at the end), so a saturated case's
 * bar stood still at its last arrival while the queue it had built drained, which can be most of
 * the run. Reporting changes no decision and no figure.
 */
function reportingEnds(policy: RoutingPolicy, log: RequestLog, onProgress: CaseProgress): RoutingPolicy {
  const every = Math.max(1, Math.ceil(log.size / END_REPORTS));
  let next = every;
  const report = (nowMs: number): void => {
    if (log.ended < next) return;
    next = log.ended + every;
    onProgress(log.ended, nowMs, log.size);
  };
  return {
    ...policy,
    decide: (view, request, rng) => {
      const decision = policy.decide(view, request, rng);
      // A refusal ends a request at its arrival.
      if (decision.kind === 'reject') report(request.arrivalMs);
      return decision;
    },
    onCompleted(request, instanceId, nowMs, generatedTokens) {
      policy.onCompleted?.(request, instanceId, nowMs, generatedTokens);
      report(nowMs);
    },
    onFailed(request, instanceId, nowMs) {
      policy.onFailed?.(request, instanceId, nowMs);
      report(nowMs);
    },
  };
}

/**
 * One twin run of the case's cluster on these requests (sorted by arrival, ids r0…), into `log`.
 * Progress counts requests ended, not arrivals: a capped client's polls arrive too.
 */
function simulateInto(
  c: FidelityCase,
  source: Iterable<TwinRequest>,
  log: RequestLog,
  onProgress?: CaseProgress,
): void {
  const watched = observed(createConfiguredPolicy('round-robin', {}), log);
  const policy = onProgress === undefined ? watched : reportingEnds(watched, log, onProgress);
  runSimulation(source, {
    seed: c.seed,
    cluster: { groups: [{ count: c.instances, gpu: c.gpu, model: c.model, tp: c.tp }] },
    engine: toEngineConfig(twinEngineOptions(c), c.gpu),
    policy,
    slo: { ttftMs: SIM_DEFAULTS.sloTtftMs, tpotMs: SIM_DEFAULTS.sloTpotMs },
    workload: `fidelity case ${c.name}`,
    cdfPointsMax: 16,
    seriesPointsMax: 16,
    ...(onProgress !== undefined
      ? {
          onProgress: (_arrived: number, simulatedMs: number) => onProgress(log.ended, simulatedMs, log.size),
        }
      : {}),
  });
}
