/**
 * `switchyard engine sim` P/D flags as an operator first types them: `--pd-role` without
 * `--pd-protocol` says which flag is missing and its two values (it said "invalid pd-protocol
 * 'unset'", naming a value nobody typed). Real process; exits before listening.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runCli } from './support/cli.ts';

it('engine sim --pd-role without --pd-protocol names the missing flag and its values', async () => {
  const run = await runCli(['engine', 'sim', '--port', '0', '--pd-role', 'prefill'], 30_000);
  assert.equal(run.code, 2);
  assert.match(
    run.stderr,
    /--pd-role prefill needs --pd-protocol: vllm \(kv_transfer_params\) or sglang \(bootstrap rooms\).*\[SY_ERR_INVALID_ARGUMENT\]/,
  );
  assert.doesNotMatch(run.stderr, /'unset'/);
});
