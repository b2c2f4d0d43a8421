/**
 * Every command's --help ends with examples, and every `switchyard <command> ...` line in any help
 * text names a command that exists and only flags that command takes: an example a reader copies
 * must not fail on a renamed or removed flag.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from './main.ts';

/** Every command under `cmd` with its path (`engine sim`), the root as ''; not commander's `help`. */
function commands(cmd: Command, path = ''): { path: string; cmd: Command }[] {
  const subs = cmd.commands.filter((c) => c.name() !== 'help');
  return [{ path, cmd }, ...subs.flatMap((c) => commands(c, path === '' ? c.name() : `${path} ${c.name()}`))];
}

/** The help a user sees, with the text added before and after the options. */
function helpText(cmd: Command): string {
  let out = '';
  cmd.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  cmd.outputHelp();
  return out;
}

/** The long flags a command takes (`--no-x` as written). */
function flagsOf(cmd: Command): Set<string> {
  return new Set(cmd.options.flatMap((o) => (o.long === undefined ? [] : [o.long])));
}

/** `switchyard` command lines in a text, continuation lines (ending in `\`) joined. */
export function switchyardLines(text: string): string[] {
  const joined = text.replace(/\s*\\\n\s*/g, ' ');
  return [...joined.matchAll(/(?:^|[\s`(])switchyard ((?:[a-z][\w-]* ?)+)([^\n`]*)/g)].map(
    (m) => `${m[1]}${m[2]}`,
  );
}

/** The command path a command line names (the longest known prefix of its words) and its flags. */
function resolve(
  line: string,
  known: Map<string, Command>,
): { path: string; cmd: Command; flags: string[] } | undefined {
  const words = line.split(/\s+/);
  for (let n = Math.min(2, words.length); n >= 1; n--) {
    const path = words.slice(0, n).join(' ');
    const cmd = known.get(path);
    if (cmd !== undefined) {
      const rest = words.slice(n).join(' ');
      // A flag starts a word; `--x=value` and `--x value` alike. Text in parentheses is a comment.
      const flags = [...rest.replace(/\([^)]*\)/g, '').matchAll(/(?:^|\s)(--[a-z][\w-]*)/g)].map(
        (m) => m[1] as string,
      );
      return { path, cmd, flags };
    }
  }
  return undefined;
}

test('every command ends its --help with examples', async () => {
  for (const { path, cmd } of commands(await buildProgram())) {
    assert.match(helpText(cmd), /\nExamples?\b[^\n]*:\n/, `switchyard ${path} --help has no examples`);
  }
});

test("every `switchyard <command>` line in a --help is a known command with that command's flags", async () => {
  const all = commands(await buildProgram());
  const known = new Map(all.filter((c) => c.path !== '').map((c) => [c.path, c.cmd]));
  let checked = 0;
  for (const { path, cmd } of all) {
    for (const line of switchyardLines(helpText(cmd))) {
      if (/^(sim|demo|serve|engine|bench|fidelity|plan-gpus)\b/.test(line) === false) continue;
      const found = resolve(line, known);
      assert.ok(found !== undefined, `switchyard ${path} --help: no command in 'switchyard ${line}'`);
      const flags = flagsOf(found.cmd);
      for (const flag of found.flags) {
        if (flag === '--help') continue;
        assert.ok(
          flags.has(flag),
          `switchyard ${path} --help: 'switchyard ${found.path}' takes no ${flag} (in 'switchyard ${line}')`,
        );
      }
      checked++;
    }
  }
  // The examples of every command: far more than this, so a parse that finds none fails here.
  assert.ok(checked >= 30, `only ${checked} example lines found`);
});

test('switchyardLines joins continuation lines and resolve reads the flags', async () => {
  const lines = switchyardLines('  switchyard bench --url http://x \\\n    --rate 8 (a --comment)\nother');
  assert.deepEqual(lines, ['bench --url http://x --rate 8 (a --comment)']);
  const program = await buildProgram();
  const known = new Map(commands(program).map((c) => [c.path, c.cmd]));
  assert.deepEqual(resolve(lines[0] as string, known)?.flags, ['--url', '--rate']);
  assert.equal(resolve('engine sim --port 1', known)?.path, 'engine sim');
});

test('help examples write their reports under out/ (ignored by git and biome), never into the checkout', async () => {
  let checked = 0;
  for (const { path, cmd } of commands(await buildProgram())) {
    for (const m of helpText(cmd).matchAll(
      /--(?:json|html|decision-log)[ =]([^\s'"`)]+\.(?:json|html|jsonl))/g,
    )) {
      const file = m[1] as string;
      // A report written beside the sources made the next `npm test` fail its lint (biome check .).
      assert.ok(file.startsWith('out/') || file.startsWith('/'), `switchyard ${path} --help writes ${file}`);
      checked++;
    }
  }
  assert.ok(checked >= 5, `only ${checked} output files found`);
});
