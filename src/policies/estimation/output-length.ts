/**
 * Output-length estimation from history, the same code in both hosts. A router cannot know how many
 * tokens a request will generate: the client declares at most a limit (`max_tokens`, often a
 * generous round number, often absent). What it can know is what earlier requests generated, which
 * each host reports through the `onCompleted` hook (usage or counted chunks live, the engine's count
 * in the twin). The estimate is the mean generated length of the most specific group the request
 * belongs to, shrunk towards the next coarser group while that group has few samples:
 *
 *   session (conversation)  →  prefix head (first block: a shared system prompt)  →  tenant  →  all
 *
 *   est(g) = (n_g · mean_g + priorWeight · est(parent)) / (n_g + priorWeight)
 *
 * and finally clamped to [1, maxTokens]: no generation runs past its declared limit. A request of
 * several generations (`n` > 1, a prompt list: `Request.generations`) is estimated as that many times
 * one generation's estimate, and its generated total (usage counts every choice) is learnt per
 * generation. Each group's
 * mean is a running mean whose sample count stops growing at `windowSamples`, so it follows drift.
 * The groups live in one table bounded by `keysMax` entries, least recently used dropped first
 * (Map insertion order: deterministic). Pure: no clock, no randomness, no I/O.
 */
import type { Request } from '../../core/request.ts';

/** Parameters of an OutputLengthEstimator. */
export interface OutputLengthEstimatorConfig {
  /** The estimate before any completion has been seen. */
  readonly priorTokens: number;
  /** Pseudo-samples of the parent group a group's mean is shrunk towards. */
  readonly priorWeight: number;
  /** Sample count at which a group's running mean turns into an exponential average. */
  readonly windowSamples: number;
  /** Groups (sessions, prefix heads, tenants) remembered at once; past it the least recently used goes. */
  readonly keysMax: number;
}

/** Defaults: a 256-token prior (OpenAI-compatible servers' usual default limit), 2 pseudo-samples. */
export const OUTPUT_LENGTH_DEFAULTS: OutputLengthEstimatorConfig = {
  priorTokens: 256,
  priorWeight: 2,
  windowSamples: 256,
  keysMax: 16_384,
};

/** A group's running mean. */
interface Group {
  n: number;
  meanTokens: number;
}

/** Learns output lengths from completions; estimates a request's from its groups. */
export class OutputLengthEstimator {
  private readonly config: OutputLengthEstimatorConfig;
  private readonly groups = new Map<string, Group>();
  private readonly all: Group = { n: 0, meanTokens: 0 };

  constructor(config: Partial<OutputLengthEstimatorConfig> = {}) {
    this.config = { ...OUTPUT_LENGTH_DEFAULTS, ...config };
    if (!(this.config.keysMax >= 0 && this.config.windowSamples >= 1 && this.config.priorTokens >= 1)) {
      throw new RangeError(`invalid output-length estimator config ${JSON.stringify(this.config)}`);
    }
  }

  /** Groups remembered now (at most keysMax). */
  get size(): number {
    return this.groups.size;
  }

  /**
   * The expected output tokens of `request`, all its generations together: each in [1,
   * request.maxTokens]. Read-only.
   */
  estimate(request: Request): number {
    const w = this.config.priorWeight;
    let est = this.all.n === 0 ? this.config.priorTokens : shrink(this.all, this.config.priorTokens, w);
    for (const key of keysOf(request)) {
      const g = this.groups.get(key);
      if (g !== undefined) est = shrink(g, est, w);
    }
    const capped = request.maxTokens === undefined ? est : Math.min(est, request.maxTokens);
    return Math.max(1, capped) * generationsOf(request);
  }

  /**
   * A request finished having generated `generatedTokens`, all its generations together (undefined:
   * unknown, ignored); each group learns the mean of one generation.
   */
  observe(request: Request, generatedTokens: number | undefined): void {
    if (generatedTokens === undefined || !(generatedTokens >= 0) || !Number.isFinite(generatedTokens)) return;
    const generations = generationsOf(request);
    if (generations !== 1) generatedTokens /= generations;
    this.update(this.all, generatedTokens);
    if (this.config.keysMax === 0) return;
    for (const key of keysOf(request)) {
      let g = this.groups.get(key);
      if (g === undefined) {
        g = { n: 0, meanTokens: 0 };
      } else {
        this.groups.delete(key); // re-inserted below: most recently used last
      }
      this.update(g, generatedTokens);
      this.groups.set(key, g);
      if (this.groups.size > this.config.keysMax)
        this.groups.delete(this.groups.keys().next().value as string);
    }
  }

  private update(g: Group, tokens: number): void {
    g.n = Math.min(g.n + 1, this.config.windowSamples);
    g.meanTokens += (tokens - g.meanTokens) / g.n;
  }
}

/** Generations `request` asks for (n x prompts), 1 when it does not say. */
function generationsOf(request: Request): number {
  const g = request.generations;
  return g !== undefined && Number.isInteger(g) && g > 1 ? g : 1;
}

/** A group's mean shrunk towards its parent's estimate. */
function shrink(g: Group, parentTokens: number, priorWeight: number): number {
  return (g.n * g.meanTokens + priorWeight * parentTokens) / (g.n + priorWeight);
}

/** The request's groups, coarsest first (tenant, prefix head, session); each key names its kind. */
function keysOf(request: Request): string[] {
  const keys = [`t:${request.tenant}`];
  const head = request.prefix.hashes[0];
  if (head !== undefined) keys.push(`p:${request.tenant}:${head}`);
  if (request.sessionId !== undefined) keys.push(`s:${request.tenant}:${request.sessionId}`);
  return keys;
}
