/**
 * The `sim` engine's sleep mode (vLLM's `--enable-sleep-mode`; the HTTP side is ../sleep-mode.ts).
 * Asleep, the engine serves nothing (generations get 503 SY_ERR_ENGINE_ASLEEP) and its KV cache and
 * prefix cache are gone (the backend swaps in an empty engine core and publishes AllBlocksCleared,
 * as vLLM's reset_prefix_cache does). A wake lasts what the twin charges for one, in modelled time
 * (scaled by the engine's --time-scale): the weights' shard over the host link
 * (HOST_TO_GPU_BYTES_PER_S, PCIe 4.0's effective 25 GB/s) plus the fixed wake overhead and the KV
 * re-allocation, i.e. `wakeTimeMs` of src/control/serverless/sleep.ts, so both hosts use one number.
 * After a level-2 sleep the weights were discarded and reload from the local checkpoint tier
 * (`weightLoadTimeMs` from NVMe) instead of host memory. Going to sleep is not charged (the twin
 * charges nothing either); it waits only for a step in progress to end.
 *
 * Calls run one at a time, in order: a wake asked while another runs finds the engine awake and
 * returns at once; a sleep asked during a wake waits for it.
 */

import { resolveSleep, type SleepConfig, wakeTimeMs } from '../../control/serverless/sleep.ts';
import { weightBytesPerGpu } from '../../model/kv.ts';
import { HOST_TO_GPU_BYTES_PER_S, weightLoadTimeMs } from '../../model/loading.ts';
import type { PerfModel } from '../../model/types.ts';
import {
  type EngineSleep,
  engineBusyToSleep,
  engineShuttingDown,
  SLEEP_TAGS,
  SleepCallQueue,
  type SleepLevel,
  type SleepTag,
  sleepMetricsText,
} from '../sleep-mode.ts';

/** What the sleep mode needs of its backend. */
export interface SimSleepHost {
  /** Requests the engine holds (running or waiting). */
  unfinished(): number;
  /** Waits for a step in progress to end, then drops the KV cache and the prefix cache. */
  dropCaches(): Promise<void>;
  /** Wall time per modelled time. */
  readonly timeScale: number;
}

/** Modelled wake times of one engine, ms. */
export interface SimWakeTimes {
  /** Copying the weights back from host memory (level 1). */
  readonly weightsFromHostMs: number;
  /** Reloading discarded weights from the checkpoint tier (level 2). */
  readonly weightsReloadMs: number;
  readonly kvReallocMs: number;
  readonly overheadMs: number;
}

/**
 * The wake times of `perf`'s model on its GPUs with the twin's sleep parameters: a full level-1
 * wake (`weightsFromHostMs + kvReallocMs + overheadMs`) equals the twin's `wakeTimeMs` for the shard.
 */
export function simWakeTimes(perf: PerfModel, config: SleepConfig = resolveSleep()): SimWakeTimes {
  const shardBytes = weightBytesPerGpu(perf.model, perf.tp);
  const fixedMs = config.wakeOverheadMs + config.kvReallocMs;
  return {
    weightsFromHostMs: wakeTimeMs(shardBytes, HOST_TO_GPU_BYTES_PER_S, config) - fixedMs,
    weightsReloadMs: weightLoadTimeMs(perf.gpu, perf.model, perf.tp, 'nvme'),
    kvReallocMs: config.kvReallocMs,
    overheadMs: config.wakeOverheadMs,
  };
}

/** One sim engine's sleep state (see the file comment). */
export class SimSleep implements EngineSleep {
  /** Wakes completed. */
  wakes = 0;
  /** Sleeps completed. */
  sleeps = 0;
  /** The last wake's modelled duration, ms (0 before any). */
  lastWakeModelMs = 0;
  private readonly asleep = new Set<SleepTag>();
  private level: SleepLevel = 1;
  private waking = false;
  private closed = false;
  private readonly calls = new SleepCallQueue();
  private timer: { handle: NodeJS.Timeout; done: () => void } | undefined;

  constructor(
    private readonly host: SimSleepHost,
    readonly times: SimWakeTimes,
  ) {}

  get isSleeping(): boolean {
    return this.asleep.size > 0 || this.waking;
  }

  /** The level of the current (or last) sleep. */
  get sleepLevel(): SleepLevel {
    return this.level;
  }

  sleep(level: SleepLevel): Promise<void> {
    return this.calls.run(() => this.enterSleep(level));
  }

  wakeUp(tags: readonly SleepTag[] | undefined): Promise<void> {
    return this.calls.run(() => this.wake(tags ?? SLEEP_TAGS));
  }

  /** Modelled time to wake `tags` now (0 when all of them are awake). */
  wakeModelMs(tags: readonly SleepTag[] = SLEEP_TAGS): number {
    const wanted = tags.filter((t) => this.asleep.has(t));
    if (wanted.length === 0) return 0;
    const t = this.times;
    const weightsMs = this.level === 2 ? t.weightsReloadMs : t.weightsFromHostMs;
    return (
      t.overheadMs +
      (wanted.includes('weights') ? weightsMs : 0) +
      (wanted.includes('kv_cache') ? t.kvReallocMs : 0)
    );
  }

  /**
   * Prometheus text: `switchyard_engine_sleeping` (1 while any part sleeps or wakes),
   * `switchyard_engine_sleeps_total`, `switchyard_engine_wakes_total`, and
   * `switchyard_engine_last_wake_model_seconds` (the last wake's modelled time, before --time-scale).
   */
  metricsText(modelName: string): string {
    return sleepMetricsText(modelName, this, [
      'switchyard_engine_last_wake_model_seconds',
      "The last wake's modelled duration, before --time-scale",
      this.lastWakeModelMs / 1000,
    ]);
  }

  /** Whether the weights are asleep (the engine holds none on its GPUs). */
  get weightsAsleep(): boolean {
    return this.asleep.has('weights');
  }

  /**
   * Runs `step` (a weight swap, ../weight-update.ts) between sleep-mode calls, so it sees the engine
   * asleep or awake, never waking.
   */
  exclusive<T>(step: () => Promise<T>): Promise<T> {
    return this.calls.run(async () => {
      this.checkOpen();
      return step();
    });
  }

  /**
   * Another checkpoint replaced the weights while they sleep: the copy a level-1 sleep kept in host
   * memory is the old model's, so the wake loads the new one from the checkpoint tier, as after a
   * level-2 sleep.
   */
  weightsReplaced(): void {
    if (this.asleep.has('weights')) this.level = 2;
  }

  /** The engine shuts down: a wake in progress ends at once (its caller hears the shutdown). */
  close(): void {
    this.closed = true;
    if (this.timer === undefined) return;
    clearTimeout(this.timer.handle);
    this.timer.done();
  }

  private async enterSleep(level: SleepLevel): Promise<void> {
    this.checkOpen();
    const unfinished = this.host.unfinished();
    if (unfinished > 0) throw engineBusyToSleep(unfinished);
    // Already asleep (any part still asleep): nothing to do and no sleep counted, as vLLM's executor
    // ("already sleeping") and the llama engine do; the level stays the first sleep's.
    if (this.asleep.size > 0) return;
    // Refuse generations from here on, before the caches go.
    for (const t of SLEEP_TAGS) this.asleep.add(t);
    this.level = level;
    await this.host.dropCaches();
    this.sleeps++;
  }

  private async wake(tags: readonly SleepTag[]): Promise<void> {
    this.checkOpen();
    const modelMs = this.wakeModelMs(tags);
    if (modelMs === 0) return;
    this.waking = true;
    try {
      await new Promise<void>((resolve) => {
        this.timer = { handle: setTimeout(resolve, Math.ceil(modelMs * this.host.timeScale)), done: resolve };
      });
    } finally {
      this.timer = undefined;
      this.waking = false;
    }
    this.checkOpen();
    for (const t of tags) this.asleep.delete(t);
    if (this.asleep.size === 0) this.level = 1;
    this.wakes++;
    this.lastWakeModelMs = modelMs;
  }

  private checkOpen(): void {
    if (this.closed) throw engineShuttingDown();
  }
}
