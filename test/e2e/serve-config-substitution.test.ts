// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the values under test contain ${VAR}
/**
 * End-to-end: `${VAR}` substitution applies to the config file's values only, once. A flag value
 * that contains `${` (an `--admin-key`) is the key as typed, and a file variable whose value contains
 * `${` is not substituted again when serve merges its flags: both starts used to fail with
 * "environment variable X is not set". Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { startServe } from './support/serve.ts';
import { killAll } from './support/wait.ts';

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'sy-e2e-subst-'));
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

/** The status of GET /admin/stats with `key` as the bearer. */
async function adminStatus(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}/admin/stats`, { headers: { authorization: `Bearer ${key}` } });
  await res.arrayBuffer();
  return res.status;
}

/** The environment without `names` (so they are surely unset in serve). */
function envWithout(...names: string[]): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of names) delete env[name];
  return env;
}

it('an --admin-key containing ${X} is taken as typed', async () => {
  const key = 'admin-key-${SY_E2E_UNSET}-and-${SY_E2E_UNSET:-z}';
  const serve = await startServe(['--engines', '1', '--admin-key', key], children, {
    env: envWithout('SY_E2E_UNSET'),
  });
  assert.equal(await adminStatus(serve.url, key), 200);
  assert.equal(await adminStatus(serve.url, 'admin-key--and-z'), 401);
  assert.equal(await serve.stop(), 0);
});

it("a config file's variable whose value contains ${ is substituted once", async () => {
  const file = join(dir, 'gw.yaml');
  writeFileSync(file, 'adminKey: ${SY_E2E_ADMIN}\n');
  const key = 'admin-${SY_E2E_UNSET}-key';
  const serve = await startServe(['--engines', '1', '--config', file], children, {
    env: { ...envWithout('SY_E2E_UNSET'), SY_E2E_ADMIN: key },
  });
  assert.equal(await adminStatus(serve.url, key), 200);
  assert.equal(await serve.stop(), 0);
});
