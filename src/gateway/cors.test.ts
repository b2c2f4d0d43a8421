import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { Cors, corsConfigSchema, parseCorsListFlag } from './cors.ts';

/** The headers `decorate` sets for a request with `headers`, from origin `origin`. */
function decorated(cors: Cors, origin: string, headers: Record<string, string> = {}): Record<string, string> {
  const set: Record<string, string> = {};
  const res = {
    setHeader: (name: string, value: string) => (set[name] = value),
  } as unknown as ServerResponse;
  cors.decorate({ headers: { origin, ...headers } } as unknown as IncomingMessage, res, origin);
  return set;
}

describe('Cors (Starlette CORSMiddleware rules, as vLLM runs it)', () => {
  const open = new Cors(corsConfigSchema.parse({}));

  it("defaults to vLLM's: any origin as *, and the request's own origin when it sends a cookie", () => {
    assert.deepEqual(decorated(open, 'https://a.example'), { 'access-control-allow-origin': '*' });
    assert.deepEqual(decorated(open, 'https://a.example', { cookie: 'k=v' }), {
      'access-control-allow-origin': 'https://a.example',
      vary: 'Origin',
    });
    // Authorization alone does not make it explicit unless credentials are allowed.
    assert.deepEqual(decorated(open, 'https://a.example', { authorization: 'Bearer x' }), {
      'access-control-allow-origin': '*',
    });
  });

  it('names the origin with credentials, and says nothing of an unlisted one', () => {
    const listed = new Cors(
      corsConfigSchema.parse({ allowedOrigins: ['https://a.example'], allowCredentials: true }),
    );
    assert.deepEqual(decorated(listed, 'https://a.example'), {
      'access-control-allow-credentials': 'true',
      'access-control-allow-origin': 'https://a.example',
      vary: 'Origin',
    });
    assert.equal(decorated(listed, 'https://b.example')['access-control-allow-origin'], undefined);
    const anyWithCredentials = new Cors(corsConfigSchema.parse({ allowCredentials: true }));
    assert.equal(
      decorated(anyWithCredentials, 'https://b.example', { authorization: 'Bearer x' })[
        'access-control-allow-origin'
      ],
      'https://b.example',
    );
    const p = anyWithCredentials.preflight('https://b.example', 'POST', undefined);
    assert.deepEqual(p.refused, []);
    assert.equal(p.headers['access-control-allow-origin'], 'https://b.example', 'never * with credentials');
  });

  it('checks a preflight method exactly and headers case-insensitively, the safelisted ones always', () => {
    const strict = new Cors(
      corsConfigSchema.parse({ allowedMethods: ['POST'], allowedHeaders: ['Authorization'] }),
    );
    assert.deepEqual(
      strict.preflight('https://a.example', 'POST', 'Content-Type, AUTHORIZATION').refused,
      [],
    );
    assert.deepEqual(strict.preflight('https://a.example', 'post', undefined).refused, ['method']);
    assert.deepEqual(strict.preflight('https://a.example', 'GET', 'x-trace').refused, ['method', 'headers']);
    const none = new Cors(corsConfigSchema.parse({ allowedOrigins: [] }));
    assert.deepEqual(none.preflight('https://a.example', 'POST', undefined).refused, ['origin']);
  });
});

describe('parseCorsListFlag', () => {
  it("takes vLLM's JSON list or a comma-separated list", () => {
    assert.deepEqual(parseCorsListFlag('["https://a.example", "https://b.example"]', 'allowed-origins'), [
      'https://a.example',
      'https://b.example',
    ]);
    assert.deepEqual(parseCorsListFlag(' GET, POST ,', 'allowed-methods'), ['GET', 'POST']);
  });

  it('refuses a list that is not one, naming the flag', () => {
    for (const bad of ['[1, 2]', '["a",', '[""]']) {
      assert.throws(
        () => parseCorsListFlag(bad, 'allowed-origins'),
        (e: unknown) => e instanceof SwitchyardError && /--allowed-origins/.test(e.message),
      );
    }
  });
});
