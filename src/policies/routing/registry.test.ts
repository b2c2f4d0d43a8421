import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { createConfiguredPolicy, createRoutingPolicy, routingPolicyNames } from './registry.ts';

test('an unknown policy name fails and lists the valid ones', () => {
  assert.throws(
    () => createRoutingPolicy('fastest'),
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME' && /least-request/.test(e.message),
  );
});

test('an unknown parameter fails, naming it and the valid keys', () => {
  assert.throws(
    () => createRoutingPolicy('prefix-affinity', { cacheThresold: 0.5 }),
    (e: unknown) =>
      e instanceof SwitchyardError &&
      e.code === 'SY_ERR_INVALID_CONFIG' &&
      /cacheThresold/.test(e.message) &&
      /cacheThreshold/.test(e.message),
  );
  assert.throws(() => createRoutingPolicy('prefix-affinity', { cacheThreshold: 'high' }), /cacheThreshold/);
});

test('named instances from a config carry their parameters and their name', () => {
  const policy = createConfiguredPolicy('sticky', {
    sticky: { type: 'prefix-affinity', params: { cacheThreshold: 0.9 } },
  });
  assert.equal(policy.name, 'sticky');
  assert.equal(typeof policy.onRouted, 'function', 'hooks survive the renaming');
  assert.throws(() => createConfiguredPolicy('nope', {}), /sticky|least-request/);
});

test('every catalogue entry builds with its defaults', () => {
  for (const name of routingPolicyNames()) assert.equal(createRoutingPolicy(name).name, name);
});
