import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.ts';
import { loadConfigFile } from '../../src/cli/sim-command.ts';
import { gatewayPerfModels, loadGatewayConfig } from '../../src/gateway/config.ts';
import { pdConfigProblems } from '../../src/gateway/pd/pd-config.ts';
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

test("examples/sim.yaml (README's 'everything from a file') validates and holds what the README says it does", () => {
  // The README runs it as written (`sim --config examples/sim.yaml`): mixed GPU groups, engine
  // options, SLOs and outputs; a renamed key fails the schema here before it fails a user.
  const config = loadConfigFile(join(ROOT, 'examples', 'sim.yaml'));
  const cluster = config.cluster;
  assert.ok(cluster !== undefined && 'groups' in cluster, 'a cluster of instance groups');
  assert.deepEqual(
    cluster.groups.map((g) => g.gpu),
    ['h100', 'a100-80gb'],
  );
  assert.equal(config.engine?.maxNumBatchedTokens, 8192);
  assert.deepEqual(config.slo, { ttftMs: 2000, tpotMs: 100 });
  assert.equal(config.output?.json, 'out/sim.json');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes('sim --config examples/sim.yaml'), 'README no longer runs examples/sim.yaml');
});

test("docs/disaggregation.md's P/D configs (pd-llama.yaml, pd-conditional.yaml) validate as gateway configs with a consistent pair", () => {
  // The guide tells a reader to save these blocks and run `serve --config` on them; a renamed key
  // or a pair the start-up check refuses fails here before it fails them.
  const doc = readFileSync(join(ROOT, 'docs', 'disaggregation.md'), 'utf8');
  const dir = mkdtempSync(join(tmpdir(), 'sy-docs-pd-'));
  try {
    for (const [name, type, conditional] of [
      ['pd-llama.yaml', 'llama', undefined],
      ['pd-conditional.yaml', 'sim', 'dynamo'],
    ] as const) {
      const at = doc.indexOf(`\`\`\`yaml\n# ${name}\n`);
      assert.ok(at >= 0, `docs/disaggregation.md no longer shows ${name}`);
      const start = at + '```yaml\n'.length;
      const file = join(dir, name);
      writeFileSync(file, doc.slice(start, doc.indexOf('```', start)));
      const config = loadGatewayConfig(file);
      assert.deepEqual(
        config.backends.map((b) => [b.type, b.role, b.pdProtocol]),
        [
          [type, 'prefill', 'vllm'],
          [type, 'decode', 'vllm'],
        ],
        name,
      );
      assert.deepEqual(pdConfigProblems(config.backends), [], name);
      assert.equal(config.pd?.conditional, conditional, name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every YAML config block of the operator guides loads as a gateway config or a sim config', () => {
  // A reader saves these blocks as files and passes them to `serve --config` or `sim --config`: a
  // renamed key fails here. Kubernetes manifests (prometheus-adapter, HPA, KEDA) are not ours to load.
  const dir = mkdtempSync(join(tmpdir(), 'sy-docs-yaml-'));
  try {
    let checked = 0;
    for (const guide of ['serverless', 'autoscaling', 'disaggregation', 'bench', 'workloads']) {
      const text = readFileSync(join(ROOT, 'docs', `${guide}.md`), 'utf8');
      for (const m of text.matchAll(/```yaml\n([\s\S]*?)```/g)) {
        const raw = m[1] as string;
        if (/^\s*(apiVersion|externalRules):/m.test(raw)) continue;
        // Blocks inside a list item are indented: strip the common indent.
        const lines = raw.split('\n');
        const indent = Math.min(
          ...lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)?.[0].length ?? 0),
        );
        const file = join(dir, `${guide}-${checked}.yaml`);
        writeFileSync(file, lines.map((l) => l.slice(indent)).join('\n'));
        const where = `docs/${guide}.md:${text.slice(0, m.index).split('\n').length}`;
        const problems: string[] = [];
        for (const load of [() => loadGatewayConfig(file), () => loadConfigFile(file)]) {
          try {
            load();
          } catch (error) {
            problems.push((error as Error).message);
          }
        }
        assert.ok(problems.length < 2, `${where}: neither config loads it:\n${problems.join('\n')}`);
        checked++;
      }
    }
    assert.ok(checked >= 9, `only ${checked} YAML blocks found`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The README.md files under `dir` (relative to the root), depth first. */
function readmesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f === 'README.md' || f.endsWith('/README.md'))
    .map((f) => `${dir}/${f}`)
    .sort();
}

/**
 * README.md, docs/*.md (not the generated results pages) and the READMEs under src/ and
 * data/samples/ (a policy's or engine's own commands), by name.
 */
function docs(): Map<string, string> {
  const files = [
    'README.md',
    ...readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
    ...readmesUnder('src'),
    ...readmesUnder('data/samples'),
  ];
  return new Map(files.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
}

/** Every command of the CLI by its path (`sim`, `engine sim`), commander's `help` left out. */
async function cliCommands(): Promise<Map<string, Command>> {
  const out = new Map<string, Command>();
  const walk = (cmd: Command, path: string): void => {
    for (const sub of cmd.commands) {
      if (sub.name() === 'help') continue;
      const p = path === '' ? sub.name() : `${path} ${sub.name()}`;
      out.set(p, sub);
      walk(sub, p);
    }
  };
  walk(await buildProgram(), '');
  return out;
}

/**
 * The `switchyard` command lines of a doc (`switchyard X`, `npx switchyard X`, `node bin/switchyard.mjs X`,
 * in code blocks or inline code), continuation lines joined: the command path and its long flags.
 */
function docCommandLines(
  text: string,
  known: Map<string, Command>,
): { line: string; path: string; flags: string[] }[] {
  const joined = text.replace(/\s*\\\n\s*/g, ' ');
  const out: { line: string; path: string; flags: string[] }[] = [];
  for (const m of joined.matchAll(
    /(?:node bin\/switchyard\.mjs|(?<![\w/.-])switchyard) ([a-z][\w-]*(?: [a-z][\w-]*)?)([^\n`|]*)/g,
  )) {
    const words = (m[1] as string).split(' ');
    const path = known.has(words.join(' ')) ? words.join(' ') : (words[0] as string);
    if (!known.has(path)) continue;
    const rest = words.length === 2 && path !== words.join(' ') ? `${words[1]}${m[2]}` : (m[2] as string);
    // A comment after '#' is prose, not flags.
    const flags = [...(rest.split(' #')[0] as string).matchAll(/(?:^|\s|\[)(--[a-z][\w-]*)/g)].map(
      (f) => f[1] as string,
    );
    out.push({ line: `switchyard ${path}${rest}`.trim(), path, flags });
  }
  return out;
}

test("every switchyard command line in README.md, docs/*.md and the READMEs under src/ and data/samples/ names a command and only that command's flags", async () => {
  const known = await cliCommands();
  let checked = 0;
  for (const [file, text] of docs()) {
    for (const { line, path, flags } of docCommandLines(text, known)) {
      const cmd = known.get(path) as Command;
      const taken = new Set(cmd.options.flatMap((o) => (o.long === undefined ? [] : [o.long])));
      for (const flag of flags) {
        if (flag === '--help') continue;
        assert.ok(taken.has(flag), `${file}: 'switchyard ${path}' takes no ${flag}: ${line.slice(0, 160)}`);
      }
      checked++;
    }
  }
  // README.md alone holds about 30 such lines: a pattern that matches none fails here.
  assert.ok(checked >= 100, `only ${checked} command lines found`);
});

test('every npm script, example file and source or test file the README and docs name exists', () => {
  const scripts = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  ).scripts;
  // Files with an extension: a bare folder path may be another project's (vLLM's examples/...).
  for (const [file, text] of docs()) {
    // npm's own options before the script's name (`npm run -s build`) are not a script.
    for (const m of text.matchAll(/npm run (?:(?:-s|--silent) )?([\w:][\w:-]*)/g)) {
      assert.ok(scripts[m[1] as string] !== undefined, `${file}: no npm script '${m[1]}'`);
    }
    for (const m of text.matchAll(
      /(?<![\w/.-])((?:examples|data\/fidelity|data\/samples|scripts|bench|src|test)\/[\w./-]*\.(?:ts|yaml|csv|json|jsonl|md))/g,
    )) {
      assert.ok(existsSync(join(ROOT, m[1] as string)), `${file}: ${m[1]} does not exist`);
    }
  }
});
