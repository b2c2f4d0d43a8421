/**
 * A burst of fresh streaming completions timed from a common start, and the unloaded time to first
 * token beside it: shared by the overload e2e test (what is shed, what completes) and
 * bench/gateway-overload.ts (how admission keeps the admitted requests' TTFT).
 */
import { Pool } from 'undici';
import { DAY_MS } from '../../../src/policies/admission/config.ts';
import { MODEL, type Reply } from './cluster.ts';

/** About 4,000 prompt tokens: prefill is most of the time to first token. */
export const PROMPT_CHARS = 16_000;
export const MAX_TOKENS = 8;

/** A small capacity gate and one-deep queues: a burst far above two engines is mostly shed. */
export const OVERLOAD_ADMISSION = {
  gate: { inFlightMax: 1, waitingMax: 1 },
  bands: [
    { name: 'interactive', minPriority: 1, deadlineMs: 10_000, queueDepthMax: 1 },
    { name: 'online', minPriority: 0, deadlineMs: 30_000, queueDepthMax: 1 },
    { name: 'batch', minPriority: -1, deadlineMs: DAY_MS, queueDepthMax: 1 },
  ],
};

let promptSerial = 0;
/** A prompt no earlier request shares from its first block on (no prefix-cache help). */
export function freshPrompt(): string {
  const n = promptSerial++;
  let text = `Request ${n} (${Math.random().toString(36).slice(2)}): `;
  while (text.length < PROMPT_CHARS)
    text += `car ${n}-${text.length} goes to track ${(n * 7 + text.length) % 13}. `;
  return text;
}

export function streamBody(): Record<string, unknown> {
  return { model: MODEL, prompt: freshPrompt(), max_tokens: MAX_TOKENS, stream: true };
}

/**
 * Sends `n` streaming requests at once over `n` keep-alive connections opened beforehand (so the
 * burst costs the gateway its requests, not connection setups), timing each from the common start.
 */
export async function burst(url: string, n: number): Promise<Reply[]> {
  const pool = new Pool(url, { connections: n, pipelining: 1 });
  try {
    await Promise.all(
      Array.from({ length: n }, () =>
        pool.request({ method: 'GET', path: '/health' }).then((r) => r.body.dump()),
      ),
    );
    const bodies = Array.from({ length: n }, () => Buffer.from(JSON.stringify(streamBody())));
    const start = performance.now();
    return await Promise.all(
      bodies.map(async (body): Promise<Reply> => {
        const res = await pool.request({
          method: 'POST',
          path: '/v1/completions',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(60_000),
        });
        let firstChunkMs = Number.NaN;
        let text = '';
        for await (const chunk of res.body) {
          if (Number.isNaN(firstChunkMs)) firstChunkMs = performance.now() - start;
          text += (chunk as Buffer).toString();
        }
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
        return { status: res.statusCode, headers, text, firstChunkMs, totalMs: performance.now() - start };
      }),
    );
  } finally {
    await pool.close();
  }
}

/**
 * Unloaded TTFT: one request at a time over a warm connection (the first, warm-up one not counted).
 * Returns every reply too, so a caller can check they completed.
 */
export async function unloadedTtft(
  url: string,
  samples: number,
): Promise<{ ttftMs: number[]; replies: Reply[] }> {
  const ttftMs: number[] = [];
  const replies: Reply[] = [];
  for (let i = 0; i <= samples; i++) {
    const [r] = await burst(url, 1);
    if (r === undefined) throw new Error('no reply');
    replies.push(r);
    if (i > 0) ttftMs.push(r.firstChunkMs);
  }
  return { ttftMs, replies };
}
