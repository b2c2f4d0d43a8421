/**
 * End-to-end: `PUT /admin/policy` is strict about its body, as config parsing is: a key other than
 * `policy` (an extra field, or a typo of it) is refused 400 SY_ERR_INVALID_ARGUMENT naming the key,
 * and the active policy stays. It was ignored (R1): `{"policy": "x", "weights": ...}` switched the
 * policy and dropped the rest without a word.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { assertErrorBody, getJson, startTestGateway, Teardown, type TestGateway } from './support/cluster.ts';

const ADMIN_KEY = 'strict-policy-admin';
const ADMIN = { authorization: `Bearer ${ADMIN_KEY}` };
const teardown = new Teardown();
let gw: TestGateway;

before(async () => {
  gw = await startTestGateway({ backends: [], adminKey: ADMIN_KEY }, teardown);
});
after(() => teardown.run());

async function put(body: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${gw.url}/admin/policy`, {
    method: 'PUT',
    headers: { ...ADMIN, 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, text: await res.text() };
}

const active = async () => (await getJson<{ policy: string }>(`${gw.url}/admin/policy`, ADMIN)).policy;

it('refuses a key other than policy, naming it, and keeps the active policy', async () => {
  const before = await active();
  const other = before === 'round-robin' ? 'least-loaded' : 'round-robin';
  for (const [body, key] of [
    [JSON.stringify({ policy: other, weights: { load: 1 } }), 'weights'],
    [JSON.stringify({ polcy: other }), 'polcy'],
  ] as const) {
    const reply = await put(body);
    assert.equal(reply.status, 400, `${body}: ${reply.text}`);
    const e = assertErrorBody(reply.text, reply.status, body);
    assert.equal(e.error.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(e.error.param, key);
    assert.match(e.error.message, new RegExp(`unknown key "${key}"`));
    assert.equal(await active(), before, body);
  }
  // The body it knows still switches.
  const ok = await put(JSON.stringify({ policy: other }));
  assert.equal(ok.status, 200, ok.text);
  assert.equal(await active(), other);
});
