import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../core/request.ts';
import { OUTPUT_LENGTH_DEFAULTS, OutputLengthEstimator } from './output-length.ts';

const req = (id: string, fields: Partial<Request> = {}): Request =>
  makeRequest({ id, inputTokens: 100, arrivalMs: 0, ...fields });

test('before any completion the estimate is the prior, capped by the declared max_tokens', () => {
  const e = new OutputLengthEstimator();
  assert.equal(e.estimate(req('a')), OUTPUT_LENGTH_DEFAULTS.priorTokens);
  assert.equal(e.estimate(req('b', { maxTokens: 40 })), 40);
  assert.equal(e.estimate(req('c', { maxTokens: 4096 })), OUTPUT_LENGTH_DEFAULTS.priorTokens);
});

test('it learns the global mean from completions and never exceeds max_tokens', () => {
  const e = new OutputLengthEstimator({ priorWeight: 0 });
  for (let i = 0; i < 10; i++) e.observe(req(`r${i}`, { tenant: `t${i}` }), 1000);
  assert.equal(e.estimate(req('x', { tenant: 'new' })), 1000);
  assert.equal(e.estimate(req('y', { tenant: 'new', maxTokens: 300 })), 300);
});

test('a tenant, a prefix head and a session each refine the estimate, shrunk towards the coarser group', () => {
  const e = new OutputLengthEstimator({ priorWeight: 2 });
  const chat = { tenant: 'chat', prefix: { blockTokens: 16, hashes: [7, 8] } };
  for (let i = 0; i < 50; i++) e.observe(req(`a${i}`, { tenant: 'batch' }), 2000);
  for (let i = 0; i < 50; i++) e.observe(req(`b${i}`, chat), 20);
  const batch = e.estimate(req('q1', { tenant: 'batch' }));
  const chatEst = e.estimate(req('q2', chat));
  assert.ok(batch > 1500, `batch tenant estimate ${batch}`);
  assert.ok(chatEst < 100, `chat prefix estimate ${chatEst}`);
  // One completion in a new session moves its estimate part of the way only (2 pseudo-samples).
  e.observe(req('s1', { ...chat, sessionId: 's' }), 200);
  const session = e.estimate(req('s2', { ...chat, sessionId: 's' }));
  assert.ok(session > chatEst && session < 200, `session estimate ${session}`);
});

test('unknown counts are ignored and the group table stays within keysMax', () => {
  const e = new OutputLengthEstimator({ keysMax: 8 });
  e.observe(req('u'), undefined);
  e.observe(req('n'), Number.NaN);
  assert.equal(e.estimate(req('a')), OUTPUT_LENGTH_DEFAULTS.priorTokens);
  for (let i = 0; i < 100; i++) e.observe(req(`r${i}`, { sessionId: `s${i}` }), 10);
  assert.ok(e.size <= 8, `size ${e.size}`);
});

test('the same completions in the same order give the same estimates (deterministic)', () => {
  const run = () => {
    const e = new OutputLengthEstimator({ keysMax: 16 });
    for (let i = 0; i < 200; i++) e.observe(req(`r${i}`, { sessionId: `s${i % 37}` }), (i * 7919) % 900);
    return [0, 5, 36].map((s) => e.estimate(req('q', { sessionId: `s${s}` })));
  };
  assert.deepEqual(run(), run());
});

test('a request of several generations (n x prompts) is estimated as that many, each capped, and teaches per generation', () => {
  const e = new OutputLengthEstimator();
  const prior = OUTPUT_LENGTH_DEFAULTS.priorTokens;
  assert.equal(e.estimate(req('n4', { generations: 4 })), 4 * prior);
  // max_tokens bounds each choice, not the request.
  assert.equal(e.estimate(req('n4-cap', { generations: 4, maxTokens: 40 })), 160);
  // Usage counts every choice: 6 generations of 100 tokens teach a mean of 100, not 600.
  const learnt = new OutputLengthEstimator({ priorWeight: 0 });
  for (let i = 0; i < 5; i++) learnt.observe(req(`r${i}`, { generations: 6 }), 600);
  assert.equal(learnt.estimate(req('one')), 100);
  assert.equal(learnt.estimate(req('three', { generations: 3 })), 300);
});
