import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadGatewayConfig } from '../../src/gateway/config.ts';

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
