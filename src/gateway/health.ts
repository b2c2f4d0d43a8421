/**
 * Health of each backend: `GET <healthPath>` every `intervalMs`; an instance is ejected after
 * `failuresToEject` consecutive failures (failed checks and connection errors while proxying both
 * count) and re-admitted after `successesToReadmit` consecutive successful checks, or at its first
 * successful check if it never passed one before (an engine still starting when the gateway did).
 */
import { type Dispatcher, request } from 'undici';
import type { HealthState } from '../policies/reliability.ts';
import type { HealthCheckConfig } from './config.ts';

/** The ejection state machine lives with the twin's, in one pure module. */
export { HealthState } from '../policies/reliability.ts';

/** One backend the checker watches. */
export interface HealthTarget {
  readonly id: string;
  /** Full URL of the health endpoint. */
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly state: HealthState;
}

/** Periodic health checks of every target; `onChange` hears ejections and re-admissions. */
export class HealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;

  constructor(
    private readonly targets: readonly HealthTarget[],
    private readonly config: HealthCheckConfig,
    private readonly dispatcher: Dispatcher,
    private readonly onChange: (id: string, healthy: boolean, reason: string) => void,
  ) {}

  /** Starts the periodic checks (the first round runs at once). */
  start(): void {
    this.schedule(0);
  }

  /** One round over every target, in parallel; resolves when all answered or timed out. */
  async checkAll(): Promise<void> {
    await Promise.all(this.targets.map((t) => this.checkOne(t)));
  }

  /** A connection error while proxying counts as a failed check. */
  reportConnectFailure(target: HealthTarget, reason: string): void {
    if (target.state.fail()) this.onChange(target.id, false, reason);
  }

  stop(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      if (this.running) return;
      this.running = true;
      void this.checkAll().finally(() => {
        this.running = false;
        this.schedule(this.config.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async checkOne(target: HealthTarget): Promise<void> {
    let ok = false;
    let reason = '';
    try {
      const res = await request(target.url, {
        dispatcher: this.dispatcher,
        method: 'GET',
        headers: target.headers,
        headersTimeout: this.config.timeoutMs,
        bodyTimeout: this.config.timeoutMs,
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      await res.body.dump();
      ok = res.statusCode >= 200 && res.statusCode < 300;
      if (!ok) reason = `health check answered ${res.statusCode}`;
    } catch (error) {
      reason = `health check failed: ${(error as Error).message}`;
    }
    if (this.closed) return;
    if (ok) {
      if (target.state.succeed()) this.onChange(target.id, true, 'health checks pass');
    } else if (target.state.fail()) {
      this.onChange(target.id, false, reason);
    }
  }
}
