import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView } from '../../../core/view.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createSession, SESSION_DEFAULTS, sessionKey } from './session.ts';

runRoutingConformance('session', () => createSession());

function forSession(sessionId: string | undefined, id = 'r', tenant = 'default'): Request {
  return makeRequest({ id, inputTokens: 64, maxTokens: 8, arrivalMs: 0, sessionId, tenant });
}

function route(policy: ReturnType<typeof createSession>, view: ClusterView, request: Request): string {
  const d = policy.decide(view, request, new Rng(1));
  assert.equal(d.kind, 'route');
  return d.kind === 'route' ? d.instanceId : '';
}

const idle = (n: number, extra: (i: number) => object = () => ({})) =>
  testCluster(n, (i) => ({ inFlight: 0, ...extra(i) }));

test('session: the same key goes to the same instance, and keys spread over the pool', () => {
  const policy = createSession();
  const view = idle(8);
  const counts = new Map<string, number>();
  for (let s = 0; s < 4000; s++) {
    const home = route(policy, view, forSession(`s${s}`, `a${s}`));
    assert.equal(route(policy, view, forSession(`s${s}`, `b${s}`)), home);
    counts.set(home, (counts.get(home) ?? 0) + 1);
  }
  assert.equal(counts.size, 8);
  for (const [id, c] of counts) assert.ok(c > 300 && c < 700, `${id} holds ${c} of 4000 keys`);
});

test('session: bounded load moves a key off its overloaded instance, to the same next instance', () => {
  const policy = createSession();
  const view = idle(6);
  const home = route(policy, view, forSession('alice'));
  const homeIndex = Number(home.slice(1));
  // 6 instances, 20 in flight on the home: bound = ceil(1.25 x 21 / 6) = 5, and 21 > 5.
  const hot = idle(6, (i) => ({ inFlight: i === homeIndex ? 20 : 0 }));
  const moved = route(policy, hot, forSession('alice', 'r2'));
  assert.notEqual(moved, home);
  assert.equal(route(createSession(), hot, forSession('alice', 'r3')), moved);
  // Room again on the home (all at 1 but the home at 0: bound = ceil(1.25 x 6 / 6) = 2): it comes back.
  const cooled = idle(6, (i) => ({ inFlight: i === homeIndex ? 0 : 1 }));
  assert.equal(route(policy, cooled, forSession('alice', 'r4')), home);
});

test('session: no instance is ever put over the bound', () => {
  const policy = createSession({ ...SESSION_DEFAULTS, epsilon: 0.1 });
  const inFlight = new Array<number>(5).fill(0);
  for (let r = 0; r < 2000; r++) {
    const view = testCluster(5, (i) => ({ inFlight: inFlight[i] ?? 0 }));
    // A few hot sessions: without the bound they would all land on at most 3 instances.
    const target = Number(route(policy, view, forSession(`hot${r % 3}`, `r${r}`)).slice(1));
    const total = inFlight.reduce((a, b) => a + b, 0);
    assert.ok((inFlight[target] as number) + 1 <= Math.ceil((1.1 * (total + 1)) / 5));
    inFlight[target] = (inFlight[target] as number) + 1;
    if (r % 2 === 1) {
      const busiest = inFlight.indexOf(Math.max(...inFlight));
      inFlight[busiest] = (inFlight[busiest] as number) - 1; // completions
    }
  }
});

test('session: an unhealthy instance moves only its own keys', () => {
  const policy = createSession();
  const view = idle(8);
  const homes = Array.from({ length: 500 }, (_, s) => route(policy, view, forSession(`s${s}`)));
  const sick = idle(8, (i) => ({ healthy: i !== 3 }));
  for (let s = 0; s < 500; s++) {
    const now = route(policy, sick, forSession(`s${s}`));
    if (homes[s] === 'i3') assert.notEqual(now, 'i3');
    else assert.equal(now, homes[s], `key s${s} moved though its instance is healthy`);
  }
});

test('session: adding an instance moves about 1/(n+1) of the keys, all to the new one', () => {
  const policy = createSession();
  const before = Array.from({ length: 2000 }, (_, s) => route(policy, idle(8), forSession(`s${s}`)));
  const grown = idle(9);
  let moved = 0;
  for (let s = 0; s < 2000; s++) {
    const now = route(policy, grown, forSession(`s${s}`));
    if (now !== before[s]) {
      moved++;
      assert.equal(now, 'i8');
    }
  }
  assert.ok(moved > 120 && moved < 330, `${moved} of 2000 keys moved`);
});

test('session: the key falls back to the tenant, then to the request id', () => {
  assert.equal(sessionKey(forSession('x', 'r1', 'acme')), 's:x');
  assert.equal(sessionKey(forSession(undefined, 'r1', 'acme')), 't:acme');
  assert.equal(sessionKey(forSession(undefined, 'r1')), 'r:r1');
  const policy = createSession();
  const view = idle(8);
  const tenantHome = route(policy, view, forSession(undefined, 'r1', 'acme'));
  for (let r = 2; r < 20; r++)
    assert.equal(route(policy, view, forSession(undefined, `r${r}`, 'acme')), tenantHome);
  const anonymous = new Set<string>();
  for (let r = 0; r < 200; r++) anonymous.add(route(policy, view, forSession(undefined, `r${r}`)));
  assert.ok(anonymous.size >= 6, 'anonymous requests spread by request id');
});
