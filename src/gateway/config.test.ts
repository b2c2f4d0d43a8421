// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the config syntax under test is ${VAR}
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import {
  admissionInput,
  healthPathOf,
  loadGatewayConfig,
  metricsPathOf,
  parseGatewayConfig,
  substituteEnv,
} from './config.ts';

function configError(value: unknown, env: Record<string, string> = {}): string {
  try {
    parseGatewayConfig(value, env);
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    assert.equal(error.code, 'SY_ERR_INVALID_CONFIG');
    return error.message;
  }
  assert.fail('expected SY_ERR_INVALID_CONFIG');
}

const backend = { id: 'a', type: 'vllm', url: 'http://127.0.0.1:8000/', models: ['m'] };

describe('gateway config', () => {
  it('fills every default from {}', () => {
    const c = parseGatewayConfig({}, {});
    assert.equal(c.port, 8080);
    assert.equal(c.host, '127.0.0.1');
    assert.deepEqual(c.backends, []);
    assert.equal(c.limits.retries, 2);
    assert.equal(c.limits.bodyBytesMax, 8 * 1024 * 1024);
    assert.equal(c.healthCheck.failuresToEject, 3);
    assert.equal(c.scrapeIntervalMs, 75);
    assert.equal(c.routing, undefined);
  });

  it('fills backend defaults and drops a trailing slash', () => {
    const c = parseGatewayConfig({ backends: [backend] }, {});
    const b = c.backends[0];
    assert.ok(b !== undefined);
    assert.equal(b.url, 'http://127.0.0.1:8000');
    assert.equal(b.role, 'both');
    assert.equal(b.gpu, 'h100');
    assert.equal(b.tp, 1);
    assert.equal(metricsPathOf(b), '/metrics');
    assert.equal(healthPathOf(b), '/health');
    const o = parseGatewayConfig({ backends: [{ ...backend, type: 'openai' }] }, {}).backends[0];
    assert.ok(o !== undefined);
    assert.equal(metricsPathOf(o), null);
    assert.equal(healthPathOf(o), '/v1/models');
  });

  it("fills cors with vLLM's defaults, keeps what a block sets, and names its keys for a wrong one", () => {
    assert.deepEqual(parseGatewayConfig({}, {}).cors, {
      allowedOrigins: ['*'],
      allowedMethods: ['*'],
      allowedHeaders: ['*'],
      allowCredentials: false,
    });
    const c = parseGatewayConfig(
      { cors: { allowedOrigins: ['https://app.example'], allowCredentials: true } },
      {},
    );
    assert.deepEqual(c.cors.allowedOrigins, ['https://app.example']);
    assert.deepEqual(c.cors.allowedHeaders, ['*']);
    assert.equal(c.cors.allowCredentials, true);
    const m = configError({ cors: { allowOrigins: ['x'] } });
    assert.match(
      m,
      /cors: .*allowOrigins.*valid: allowCredentials, allowedHeaders, allowedMethods, allowedOrigins/,
    );
  });

  it('rejects an unknown top-level key and names the valid ones', () => {
    const m = configError({ bakends: [] });
    assert.match(m, /bakends/);
    assert.match(m, /valid: .*admission.*backends.*healthCheck.*limits/);
  });

  it('rejects an unknown backend key and names the backend keys', () => {
    const m = configError({ backends: [{ ...backend, weight: 2 }] });
    assert.match(m, /backends\.0/);
    assert.match(m, /weight/);
    assert.match(m, /valid: .*kvEvents.*metricsPath.*models.*role/);
  });

  it('rejects unknown keys in limits and tenants', () => {
    assert.match(configError({ limits: { retry: 1 } }), /valid: .*bodyBytesMax.*retries/);
    assert.match(
      configError({ tenants: [{ key: 'k', name: 'n', rpn: 5 }] }),
      /valid: .*key.*name.*priority.*rpm/,
    );
  });

  it('rejects a bad type, URL, duplicate ids and duplicate tenant keys', () => {
    assert.match(configError({ backends: [{ ...backend, type: 'tgi' }] }), /backends\.0\.type/);
    assert.match(configError({ backends: [{ ...backend, url: 'ftp://x' }] }), /backends\.0\.url/);
    assert.match(configError({ backends: [backend, backend] }), /duplicate backend id 'a'/);
    assert.match(
      configError({
        tenants: [
          { key: 'k', name: 'a' },
          { key: 'k', name: 'b' },
        ],
      }),
      /tenants\.1\.key: duplicate tenant key/,
    );
    assert.match(configError({ backends: [{ ...backend, kvEvents: 'ipc:///x' }] }), /tcp:\/\/host:port/);
  });

  it('substitutes ${VAR} and ${VAR:-default}, and names a missing variable', () => {
    const c = substituteEnv(
      { adminKey: '${ADMIN}', tenants: [{ key: '${KEY:-fallback-key}', name: 't' }] },
      { ADMIN: 'secret-admin' },
    ) as { adminKey: string; tenants: { key: string }[] };
    assert.equal(c.adminKey, 'secret-admin');
    assert.equal(c.tenants[0]?.key, 'fallback-key');
    assert.throws(
      () => substituteEnv({ adminKey: '${NOPE}' }, {}),
      /adminKey: environment variable NOPE is not set/,
    );
    assert.deepEqual(substituteEnv(['a${X}b', 3, null], { X: '-' }), ['a-b', 3, null]);
  });

  it('substitutes in a config file only: values given as objects (flags, a loaded config) stay as they are', () => {
    // An --admin-key with `${` in it, merged into the config after the file was read.
    for (const key of ['admin-key-${X}', 'admin-key-${X:-y}', 'admin-${X}-${Y}'])
      assert.equal(parseGatewayConfig({ adminKey: key }, {}).adminKey, key);
    // A variable whose value contains `${` is substituted once: validating the loaded config again
    // (startGateway does) keeps it.
    const dir = mkdtempSync(join(tmpdir(), 'sy-gw-config-'));
    try {
      const file = join(dir, 'gw.yaml');
      writeFileSync(file, 'adminKey: ${SY_TEST_ADMIN}\n');
      const loaded = loadGatewayConfig(file, { SY_TEST_ADMIN: 'admin-${SY_TEST_UNSET_VAR}-1' });
      assert.equal(loaded.adminKey, 'admin-${SY_TEST_UNSET_VAR}-1');
      assert.equal(parseGatewayConfig(loaded).adminKey, 'admin-${SY_TEST_UNSET_VAR}-1');
      assert.throws(
        () => loadGatewayConfig(file, {}),
        /adminKey: environment variable SY_TEST_ADMIN is not set/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('merges tenants into the admission config by name and refuses a tenant named twice', () => {
    const c = parseGatewayConfig({ tenants: [{ key: 'k1', name: 'gold', priority: 1, rpm: 60 }] }, {});
    const a = admissionInput(c) as { tenants: Record<string, unknown> };
    assert.deepEqual(a.tenants['gold'], { priority: 1, rpm: 60 });
    assert.match(
      configError({ tenants: [{ key: 'k', name: 'gold' }], admission: { tenants: { gold: {} } } }),
      /configure it in one place/,
    );
  });

  it('loads YAML from a file, and fails naming the file when it cannot', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-gw-config-'));
    try {
      const file = join(dir, 'gw.yaml');
      writeFileSync(
        file,
        [
          'port: 0',
          'adminKey: ${SY_TEST_ADMIN}',
          'routing:',
          '  policy: fast',
          '  policies:',
          '    fast: { type: least-request }',
          'backends:',
          '  - { id: e0, type: sim, url: "http://127.0.0.1:9000", models: [llama-3.1-8b], kvEvents: "tcp://127.0.0.1:5557" }',
          'limits: { retries: 1 }',
        ].join('\n'),
      );
      const c = loadGatewayConfig(file, { SY_TEST_ADMIN: 'admin-key-1' });
      assert.equal(c.port, 0);
      assert.equal(c.adminKey, 'admin-key-1');
      assert.equal(c.routing?.policy, 'fast');
      assert.equal(c.backends[0]?.kvEvents, 'tcp://127.0.0.1:5557');
      assert.equal(c.limits.retries, 1);
      writeFileSync(file, 'port: [\n');
      assert.throws(() => loadGatewayConfig(file, {}), /not valid YAML/);
      assert.throws(() => loadGatewayConfig(join(dir, 'missing.yaml'), {}), /cannot read gateway config/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
