/**
 * The host's own accounting of one instance, kept the same way by both hosts: the gateway moves it
 * on attempt start, first byte and attempt end; the twin on send, first token and finish. It is
 * always fresh (never scraped), which is why it lives apart from the engine signals.
 */
export class HostAccounting {
  /** Requests sent here and not yet ended. */
  inFlight = 0;
  /** Prompt tokens of requests sent here that have not produced their first token. */
  pendingPrefillTokens = 0;

  /** The host sent a request of `inputTokens` prompt tokens here (one attempt). */
  sent(inputTokens: number): void {
    this.inFlight++;
    this.pendingPrefillTokens += inputTokens;
  }

  /** The first output token (live: the first byte) of a request sent here arrived. */
  firstToken(inputTokens: number): void {
    this.pendingPrefillTokens -= inputTokens;
  }

  /** An attempt sent here ended (finished or failed); `prefillPending` when no first token came. */
  ended(inputTokens: number, prefillPending: boolean): void {
    this.inFlight--;
    if (prefillPending) this.pendingPrefillTokens -= inputTokens;
  }
}
