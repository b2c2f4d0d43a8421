import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gatewayPerfModels, loadGatewayConfig } from '../../src/gateway/config.ts';
import { createConfiguredPolicy } from '../../src/policies/routing/registry.ts';

const ROOT = join(import.meta.dirname, '..', '..');

test('examples/gateway.yaml is a valid gateway config and is the one docs/gateway.md shows', () => {
  const file = join(ROOT, 'examples', 'gateway.yaml');
  const config = loadGatewayConfig(file);
  assert.deepEqual(
    config.backends.map((b) => b.id),
    ['sim-0', 'sim-1'],
  );
  assert.equal(config.routing?.policy, 'cache-aware');
  const doc = readFileSync(join(ROOT, 'docs', 'gateway.md'), 'utf8');
  const start = doc.indexOf('```yaml\n', doc.indexOf('`gateway.yaml`:')) + '```yaml\n'.length;
  const shown = doc.slice(start, doc.indexOf('```', start));
  const example = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
  assert.equal(example, shown);
});

test('examples/profile.yaml builds every profile it names, resolves every performance model, and is the one docs/gateway.md shows', () => {
  const file = join(ROOT, 'examples', 'profile.yaml');
  const config = loadGatewayConfig(file);
  const named = config.routing?.policies ?? {};
  assert.deepEqual(Object.keys(named), ['balanced', 'kv-aware']);
  for (const name of Object.keys(named)) assert.equal(createConfiguredPolicy(name, named).name, name);
  gatewayPerfModels(config).require(['goodput', 'mooncake', 'preble']);
  const doc = readFileSync(join(ROOT, 'docs', 'gateway.md'), 'utf8');
  const start = doc.indexOf('```yaml\n', doc.indexOf('`profile.yaml` (')) + '```yaml\n'.length;
  const shown = doc.slice(start, doc.indexOf('```', start));
  const example = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
  assert.equal(example, shown);
});
