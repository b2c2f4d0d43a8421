/**
 * The `llama` engine's sleep mode (`--enable-sleep-mode`; the HTTP side is ../sleep-mode.ts, vLLM's
 * API). On the CPU there is no GPU memory to give back, so sleeping frees what the engine holds
 * beyond its process: the context (its KV cache, every sequence's prefix) and the model (llama.cpp's
 * mapping of the GGUF and its buffers); the GGUF stays in the page cache, and node-llama-cpp's
 * binding stays loaded. A wake reloads the model from the page cache and creates the context again:
 * the start's `weights` and `context` stages without the process, Node, CLI and binding start-up.
 * Both levels do the same (the weights are never copied aside); `tags` are accepted, and a wake
 * always reloads both parts (the context needs the model). Calls run one at a time, in order.
 */
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

/** What the sleep mode needs of the llama backend. */
export interface LlamaSleepHost {
  /** Requests running or waiting. */
  unfinished(): number;
  /** Frees the context and the model. */
  unloadModel(): Promise<void>;
  /** Loads the model and creates the context again. */
  reloadModel(): Promise<void>;
}

/** One llama engine's sleep state. */
export class LlamaSleep implements EngineSleep {
  sleeps = 0;
  wakes = 0;
  /** The last wake's wall time (model reload and context), ms; 0 before any. */
  lastWakeMs = 0;
  private asleep = false;
  private waking = false;
  private closed = false;
  private readonly calls = new SleepCallQueue();

  constructor(private readonly host: LlamaSleepHost) {}

  get isSleeping(): boolean {
    return this.asleep || this.waking;
  }

  sleep(_level: SleepLevel): Promise<void> {
    return this.calls.run(async () => {
      this.checkOpen();
      const unfinished = this.host.unfinished();
      if (unfinished > 0) throw engineBusyToSleep(unfinished);
      if (this.asleep) return;
      this.asleep = true;
      await this.host.unloadModel();
      this.sleeps++;
    });
  }

  wakeUp(tags: readonly SleepTag[] | undefined): Promise<void> {
    return this.calls.run(async () => {
      this.checkOpen();
      if (!this.asleep || (tags ?? SLEEP_TAGS).length === 0) return;
      this.waking = true;
      const t0 = performance.now();
      try {
        await this.host.reloadModel();
      } finally {
        this.waking = false;
      }
      this.asleep = false;
      this.wakes++;
      this.lastWakeMs = performance.now() - t0;
    });
  }

  /**
   * Runs `step` (a weight swap, ../weight-update.ts) between sleep-mode calls, so it sees the engine
   * either asleep or awake, never half-way; `isSleeping` tells which.
   */
  exclusive<T>(step: () => Promise<T>): Promise<T> {
    return this.calls.run(async () => {
      this.checkOpen();
      return step();
    });
  }

  /** The engine shuts down. */
  close(): void {
    this.closed = true;
  }

  /**
   * `switchyard_engine_sleeping`, `switchyard_engine_sleeps_total`, `switchyard_engine_wakes_total`
   * and `switchyard_engine_last_wake_seconds` (measured) as Prometheus text.
   */
  metricsText(modelName: string): string {
    return sleepMetricsText(modelName, this, [
      'switchyard_engine_last_wake_seconds',
      "The last wake's wall time (model reload and context)",
      this.lastWakeMs / 1000,
    ]);
  }

  private checkOpen(): void {
    if (this.closed) throw engineShuttingDown();
  }
}
