import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { buildListingProgram, buildProgram, COMMAND_NAMES } from './main.ts';

test("the listing's table of commands is the real commands': names, order, terms and summaries", async () => {
  const real = await buildProgram();
  const listing = buildListingProgram();
  assert.deepEqual(
    real.commands.map((c) => c.name()),
    COMMAND_NAMES,
  );
  const realHelp = real.createHelp();
  const listingHelp = listing.createHelp();
  for (const [i, cmd] of real.commands.entries()) {
    const stand = listing.commands[i];
    assert.ok(stand !== undefined, cmd.name());
    assert.equal(listingHelp.subcommandTerm(stand), realHelp.subcommandTerm(cmd), cmd.name());
    assert.equal(listingHelp.subcommandDescription(stand), realHelp.subcommandDescription(cmd), cmd.name());
  }
  assert.equal(listing.commands.length, real.commands.length);
});

for (const width of [40, 80, 120]) {
  test(`the listing's top-level help is the full program's, at ${width} columns`, async () => {
    const real = await buildProgram();
    const listing = buildListingProgram();
    for (const program of [real, listing])
      program.configureHelp({ ...program.configureHelp(), helpWidth: width });
    assert.equal(listing.helpInformation(), real.helpInformation());
  });
}

test('an unknown or mistyped command: the same one line, with the suggestion, as before', async () => {
  assert.deepEqual(await runCliInProcess(['simm']), {
    code: 2,
    stderr:
      "switchyard: unknown command 'simm' (Did you mean sim?) (run with --help for usage) [SY_ERR_UNKNOWN_NAME]\n",
  });
  assert.deepEqual(await runCliInProcess(['plan-gpu']), {
    code: 2,
    stderr:
      "switchyard: unknown command 'plan-gpu' (Did you mean plan-gpus?) (run with --help for usage) [SY_ERR_UNKNOWN_NAME]\n",
  });
});

test('a command the listing reaches (after --) runs as the real command', async () => {
  // The real sim refuses an operand; a stand-in would have run nothing and exited 0.
  const { code, stderr } = await runCliInProcess(['--', 'sim', 'x']);
  assert.equal(code, 2);
  assert.match(stderr, /too many arguments for 'sim'/);
});
