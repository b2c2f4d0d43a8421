/** The open-loop runner with an in-process sender whose answers take a set time. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Attempt, CompletionCall } from './client.ts';
import type { RunDescription } from './metrics.ts';
import { PromptSynth } from './prompts.ts';
import { type RunSettings, runPlan, type Sender } from './runner.ts';
import type { BenchPlan, PlannedRequest } from './types.ts';

const RUN: RunDescription = {
  url: 'http://x',
  endpoint: 'completions',
  model: 'm',
  stream: true,
  seed: 1,
  workload: {},
};
const SETTINGS: RunSettings = {
  endpoint: 'completions',
  model: 'm',
  stream: true,
  ignoreEos: true,
  maxConcurrency: 100,
  overflow: 'wait',
  slo: { ttftMs: undefined, tpotMs: undefined },
  saveRequests: true,
};

function plan(atMs: number[]): BenchPlan {
  const requests: PlannedRequest[] = atMs.map((t, index) => ({
    index,
    atMs: t,
    inputTokens: 8,
    outputTokens: 4,
    hashIds: [],
    group: undefined,
    prefixTokens: 0,
  }));
  return { total: requests.length, requests, workload: {} };
}

/** Answers every call after `serviceMs`, recording when each call was made. */
class SlowSender implements Sender {
  readonly sentAt: number[] = [];
  readonly calls: CompletionCall[] = [];
  constructor(
    private readonly serviceMs: number,
    private readonly t0 = performance.now(),
  ) {}
  async send(call: CompletionCall, cancel?: AbortSignal): Promise<Attempt> {
    this.sentAt.push(performance.now() - this.t0);
    this.calls.push(call);
    const start = performance.now();
    const cancelled = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.serviceMs);
      cancel?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    const e2eMs = performance.now() - start;
    return cancelled
      ? {
          ok: false,
          reason: 'cancelled',
          status: undefined,
          error: 'cancelled',
          ttftMs: undefined,
          e2eMs,
          itlMs: [],
          promptTokens: undefined,
          outputTokens: 0,
          outputTokensFrom: 'chunks',
        }
      : {
          ok: true,
          reason: undefined,
          status: 200,
          error: undefined,
          ttftMs: e2eMs / 2,
          e2eMs,
          itlMs: [1, 1, 1],
          promptTokens: 8,
          outputTokens: call.maxTokens,
          outputTokensFrom: 'usage',
        };
  }
}

test('open loop: requests go out on schedule while earlier ones are still outstanding', async () => {
  const sender = new SlowSender(400);
  const s = await runPlan(plan([0, 50, 100, 150, 200]), new PromptSynth(1), sender, SETTINGS, RUN);
  assert.equal(s.requests.completed, 5);
  assert.equal(s.concurrency.peak, 5, 'all five outstanding at once');
  for (const [i, t] of sender.sentAt.entries()) {
    // Open loop: never before its scheduled time (how late it may be depends on the machine's load,
    // so no upper bound here; bench/ measures the lateness).
    assert.ok(t >= i * 50 - 2, `request ${i} sent at ${t}`);
  }
  assert.ok(s.durationS >= 0.58, `duration ${s.durationS}`);
  assert.equal(s.concurrency.overLimit, 0);
  assert.equal(sender.calls[0]?.prompt.length, 32);
  assert.equal(sender.calls[0]?.maxTokens, 4);
});

test('over the bound with wait: the schedule waits for a slot and the lag shows', async () => {
  const sender = new SlowSender(200);
  const s = await runPlan(
    plan([0, 0, 0, 0]),
    new PromptSynth(1),
    sender,
    { ...SETTINGS, maxConcurrency: 2 },
    RUN,
  );
  assert.equal(s.requests.completed, 4);
  assert.equal(s.concurrency.peak, 2);
  assert.equal(s.concurrency.overLimit, 2);
  assert.ok((sender.sentAt[2] ?? 0) >= 190, `third sent at ${sender.sentAt[2]}`);
  assert.ok(s.concurrency.sendLagMs.p99 >= 180, `lag ${s.concurrency.sendLagMs.p99}`);
});

test('over the bound with drop: the request fails as dropped and the schedule goes on', async () => {
  const sender = new SlowSender(200);
  const s = await runPlan(
    plan([0, 0, 0, 0, 300]),
    new PromptSynth(1),
    sender,
    { ...SETTINGS, maxConcurrency: 2, overflow: 'drop' },
    RUN,
  );
  assert.equal(s.requests.scheduled, 5);
  assert.equal(s.requests.sent, 3);
  assert.equal(s.requests.completed, 3);
  assert.deepEqual(s.failures, { dropped: 2 });
  assert.equal(s.concurrency.overLimit, 2);
  assert.deepEqual(
    s.records?.filter((r) => !r.ok).map((r) => r.index),
    [2, 3],
  );
});

test('an abort stops the schedule and cancels what is outstanding', async () => {
  const sender = new SlowSender(5000);
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 150);
  const s = await runPlan(plan([0, 100, 1000, 2000]), new PromptSynth(1), sender, SETTINGS, RUN, {
    signal: stop.signal,
  });
  assert.equal(s.requests.scheduled, 2);
  assert.deepEqual(s.failures, { cancelled: 2 });
});
