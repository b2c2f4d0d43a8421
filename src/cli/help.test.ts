import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Command } from 'commander';
import {
  firstSentence,
  HELP_WIDTH_MAX,
  helpConfiguration,
  helpWidth,
  reflowProse,
  wrapLines,
} from './help.ts';
import { buildProgram } from './main.ts';

test('reflowProse joins the lines of a paragraph and keeps blank and indented lines', () => {
  const text = 'One sentence broken\nin two. Another.\n\nNext paragraph:\n  {"json": 1}\nAfter it.';
  assert.equal(
    reflowProse(text),
    'One sentence broken in two. Another.\n\nNext paragraph:\n  {"json": 1}\nAfter it.',
  );
});

test('firstSentence stops at the first full stop followed by a new sentence', () => {
  assert.equal(firstSentence('Run it: a thing, e.g. x.\nThen more. And more.'), 'Run it: a thing, e.g. x.');
  assert.equal(firstSentence('No full stop here'), 'No full stop here');
});

test('helpWidth: terminal columns, else $COLUMNS, else 80, capped', () => {
  assert.equal(helpWidth({ isTTY: true, columns: 100 }, { COLUMNS: '60' }), 100);
  assert.equal(helpWidth({ isTTY: false }, { COLUMNS: '60' }), 60);
  assert.equal(helpWidth({ isTTY: false }, { COLUMNS: 'wide' }), 80);
  assert.equal(helpWidth({ isTTY: false }, {}), 80);
  assert.equal(helpWidth({ isTTY: true, columns: 300 }, {}), HELP_WIDTH_MAX);
});

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

/** The description block of a help text: the lines between the usage line and the first section. */
function descriptionLines(help: string): string[] {
  const lines = help.split('\n');
  const end = lines.findIndex((l) => /^(Options|Commands|Arguments):$/.test(l));
  return lines.slice(2, end - 1);
}

for (const width of [80, 120]) {
  test(`every command's description fills its lines at ${width} columns (no break mid-sentence)`, async () => {
    for (const cmd of allCommands(await buildProgram())) {
      cmd.configureHelp(helpConfiguration(width));
      const lines = descriptionLines(cmd.helpInformation());
      assert.ok(lines.length > 0, `${cmd.name()} has a description`);
      for (let i = 0; i + 1 < lines.length; i++) {
        const line = lines[i] as string;
        const next = lines[i + 1] as string;
        if (line === '' || next === '' || /^\s/.test(line) || /^\s/.test(next)) continue;
        const nextWord = next.split(' ')[0] as string;
        assert.ok(
          line.length + 1 + nextWord.length > width,
          `'${cmd.name()}' breaks early at ${width} columns: '${line}' / '${next}'`,
        );
        assert.ok(line.length <= width, `'${cmd.name()}' line over ${width} columns: '${line}'`);
      }
    }
  });
}

test('wrapLines wraps every line, hanging the continuation of an indented one under it', () => {
  const text = 'prose that is too long to fit\n  item: a list item that is too long\nshort';
  assert.equal(
    wrapLines(text, 16),
    'prose that is\ntoo long to fit\n  item: a list\n    item that is\n    too long\nshort',
  );
  assert.equal(wrapLines('averyveryverylongword and', 8), 'averyveryverylongword\nand');
});

test('sim --help: no line of an option with a list of choices runs past the width', async () => {
  const program = await buildProgram();
  const sim = program.commands.find((c) => c.name() === 'sim') as Command;
  sim.configureHelp(helpConfiguration(100));
  const long = sim
    .helpInformation()
    .split('\n')
    .filter((l) => l.length > 100);
  assert.deepEqual(long, []);
});

test("--version prints package.json's version, the one GET /version answers", async () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  const program = await buildProgram();
  assert.equal(program.version(), pkg.version);
  assert.notEqual(program.version(), 'unknown');
});
