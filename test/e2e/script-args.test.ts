/**
 * The scripts the docs tell users to run by hand (`npm run fidelity:derived`, docs/fidelity.md;
 * scripts/kv-store-fetch.ts, docs/disaggregation.md; scripts/make-tiny-gguf.ts, README.md; scripts/saturation.ts and `npm run calibrate`, docs/engine-model.md; `npm run results:autoscaling`, `results:disaggregation`, `results:routing`), as real processes: `--help` prints their
 * usage and exits 0 before any work, and a mistyped or valueless flag prints one line naming it
 * with the usage and exits 2, rather than node's parseArgs stack trace (exit 1). The bench scripts
 * (bench/README.md) likewise, each checked with --help only: never a bench run in a test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');

/** `node --import tsx FILE ...args`: exit status, stdout, stderr. */
function script(
  file: string,
  ...args: string[]
): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', file, ...args],
      { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
      (error, out, err) => {
        // execFile's error carries the exit status as a number (a failure to spawn: a string code).
        const code = error === null ? 0 : (error as { code?: unknown }).code;
        resolve({ status: typeof code === 'number' ? code : null, out, err });
      },
    );
  });
}

// Each check starts short tsx processes (about 100 in all, each a second or more, as the bench
// scripts import their modules before reading argv): three at a time rather than one after another.
describe('script usages', { concurrency: 3 }, () => {
  for (const [file, flag] of [
    ['bench/fidelity-derived.ts', '--max-concurrency'],
    ['scripts/kv-store-fetch.ts', '--rate-scale'],
    ['scripts/make-tiny-gguf.ts', '--size-mb'],
    ['scripts/saturation.ts', '--rates'],
    // None of the three runs writes docs/calibration.md: a refusal comes before the report.
    ['scripts/calibrate.ts', '--holdout'],
    // Nor do the results pages' scripts rewrite their page: the refusal comes before any run.
    ['scripts/results-autoscaling.ts', '--hours'],
    ['scripts/results-disaggregation.ts', '--jobs'],
    ['scripts/results-routing.ts', '--settings'],
  ] as const) {
    test(`${file}: --help prints the usage; an unknown or valueless flag one line and the usage, exit 2`, async () => {
      const help = await script(file, '--help');
      assert.equal(help.status, 0, help.err);
      assert.match(help.out, /^Usage: /);
      assert.ok(help.out.includes(flag), help.out);
      assert.equal(help.err, '');

      const typo = await script(file, '--bogus-flag');
      assert.equal(typo.status, 2, typo.err);
      assert.equal(typo.out, '');
      assert.match(typo.err, /^[\w:-]+: Unknown option '--bogus-flag'.*\n.*Usage: /s);
      assert.doesNotMatch(typo.err, /\n\s+at /, 'no stack trace');

      const missing = await script(file, flag);
      assert.equal(missing.status, 2, missing.err);
      assert.match(missing.err, new RegExp(`^[\\w:-]+: .*'${flag}.*argument missing`));
    });
  }

  test('scripts/multi-model-day.ts (docs/workloads.md): --help prints the usage, a flag is refused, not read as the bundle path', async () => {
    const help = await script('scripts/multi-model-day.ts', '--help');
    assert.equal(help.status, 0, help.err);
    assert.match(help.out, /^Usage: .*SERVEGEN_BUNDLE/);
    const typo = await script('scripts/multi-model-day.ts', '--bundle', 'x.tar.gz');
    assert.equal(typo.status, 2, typo.err);
    assert.equal(typo.out, '');
    assert.match(typo.err, /^multi-model-day: Unknown option '--bundle'/);
  });

  for (const [file, page] of [
    ['scripts/results-batch.ts', 'docs/results/batch.md'],
    ['scripts/results-serverless.ts', 'docs/results/serverless.md'],
  ] as const) {
    test(`${file} takes no options: --help prints the usage and a flag is refused, ${page} untouched`, async () => {
      // Before, the script read no argument: either call ran the twin for minutes and rewrote the page.
      const before = statSync(join(ROOT, page)).mtimeMs;
      const help = await script(file, '--help');
      assert.equal(help.status, 0, help.err);
      assert.match(help.out, /^Usage: npm run results:/);
      const flag = await script(file, '--quick');
      assert.equal(flag.status, 2, flag.err);
      assert.match(flag.err, /^results:\w+: Unknown option '--quick'/);
      assert.equal(statSync(join(ROOT, page)).mtimeMs, before);
    });
  }

  /**
   * Every bench script run by hand or started by another bench, with every option it reads (its first
   * entry takes a value, for the valueless-flag case). A script with no options gets an empty list:
   * before, --help went unread there and ran the whole bench.
   */
  const BENCHES: readonly (readonly [file: string, options: readonly string[]])[] = [
    [
      'bench/twin-speed.ts',
      [
        '--prefix-cache',
        '--repeat',
        '--requests',
        '--rate',
        '--trace',
        '--warmup',
        '--only',
        '--cli',
        '--cli-baseline',
        '--json',
        '--profile-summary',
        '--shapes',
        '--shape-policy',
      ],
    ],
    ['bench/trace-shapes.ts', ['--shape', '--out', '--requests', '--seed']],
    ['bench/twin-ab.ts', ['--a', '--b', '--pairs', '--warmup', '--trace', '--prefix-cache']],
    [
      'bench/heavy-prefix-trace.ts',
      ['--out', '--requests', '--seed', '--sessions-per-s', '--mean-turns', '--max-turns'],
    ],
    ['bench/routing-decide.ts', ['--instances', '--decisions', '--only']],
    ['bench/tokenize.ts', ['--iterations']],
    ['bench/engine-core-micro.ts', []],
    ['bench/hot-paths.ts', []],
    [
      'bench/gateway-proxy.ts',
      [
        '--repeat',
        '--duration',
        '--connections',
        '--rate',
        '--events',
        '--sse-connections',
        '--policy',
        '--backends',
        '--only',
        '--phases',
        '--warmup',
        '--noise-max',
        '--no-pin',
        '--nice',
        '--node-flags',
        '--gateway-stats',
        '--json',
      ],
    ],
    // The gateway benchmark's children (gateway-proxy.ts starts them with these flags).
    ['bench/gateway/node-proxy.ts', ['--port', '--upstreams']],
    [
      'bench/gateway/open-loop.ts',
      ['--url', '--bodies', '--rate', '--duration', '--warmup', '--connections', '--path'],
    ],
    ['bench/gateway/sse-upstream.ts', ['--ports', '--events']],
    ['bench/gateway/switchyard-child.ts', ['--config', '--stats']],
    ['bench/gateway-large-body.ts', ['--rounds', '--bytes']],
    ['bench/gateway-large-body-live.ts', ['--rates', '--seconds', '--repeat', '--body-mb', '--profile']],
    ['bench/gateway-overload.ts', ['--rounds']],
    [
      'bench/soak.ts',
      [
        '--duration',
        '--idle',
        '--seed',
        '--engine',
        '--engines',
        '--clients',
        '--policy',
        '--sample',
        '--burst-every',
        '--bench-every',
        '--out',
      ],
    ],
    // kv-transfer's --serve and --bytes are its sender child's, not the user's: the usage leaves them out.
    [
      'bench/kv-transfer.ts',
      [
        '--mb',
        '--runs',
        '--requests',
        '--engine-state-mb',
        '--large-requests',
        '--no-large-engines',
        '--engine-kv-reserve-mib',
        '--decodes',
        '--long-prompts',
        '--path-only',
        '--json',
      ],
    ],
    ['bench/serve-cold-start.ts', ['--runs', '--size-mb', '--model', '--json']],
    ['bench/swap-in-place.ts', ['--runs', '--size-mb', '--json']],
    ['bench/cold-start.ts', ['--runs', '--size-mb', '--model', '--cases', '--json']],
  ];

  /** `--flag` as a whole word of `text` (so `--cli` is not found inside `--cli-baseline`). */
  function namesFlag(text: string, flag: string): boolean {
    return new RegExp(`(^|[^\\w-])${flag}(?![\\w-])`).test(text);
  }

  for (const [file, options] of BENCHES) {
    test(`${file}: --help names every option, exit 0; an unknown or valueless flag one line and the usage, exit 2`, async () => {
      const help = await script(file, '--help');
      assert.equal(help.status, 0, help.err);
      assert.equal(help.err, '');
      assert.match(help.out, /^Usage: /);
      for (const option of [...options, '--help'])
        assert.ok(namesFlag(help.out, option), `${option} in:\n${help.out}`);

      const typo = await script(file, '--bogus-flag');
      assert.equal(typo.status, 2, typo.err);
      assert.equal(typo.out, '');
      const [first, second] = typo.err.split('\n');
      assert.match(first ?? '', /^[\w:-]+: Unknown option '--bogus-flag'/);
      assert.match(second ?? '', /^Usage: /, 'the usage follows the one line');
      assert.doesNotMatch(typo.err, /\n\s+at /, 'no stack trace');

      const valued = options[0];
      if (valued === undefined) return;
      const missing = await script(file, valued);
      assert.equal(missing.status, 2, missing.err);
      assert.match(missing.err, new RegExp(`^[\\w:-]+: .*'${valued}.*argument missing`));
    });
  }

  for (const [file, name] of [
    ['bench/twin-ab.ts', 'twin-ab'],
    ['bench/heavy-prefix-trace.ts', 'heavy-prefix-trace'],
    ['bench/trace-shapes.ts', 'trace-shapes'],
    ['bench/gateway/node-proxy.ts', 'node-proxy'],
    ['bench/gateway/open-loop.ts', 'open-loop'],
    ['bench/gateway/sse-upstream.ts', 'sse-upstream'],
    ['bench/gateway/switchyard-child.ts', 'switchyard-child'],
  ] as const) {
    test(`${file} without its required flags: one line naming them and the usage, exit 2`, async () => {
      const r = await script(file);
      assert.equal(r.status, 2, r.err);
      assert.equal(r.out, '');
      const [first, second] = r.err.split('\n');
      assert.match(first ?? '', new RegExp(`^${name}: .*required`));
      assert.match(second ?? '', /^Usage: /);
      assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
    });
  }

  test('bench/cold-start.ts --cases that is no regex: one line and the usage, exit 2, before any work', async () => {
    // Before, the pattern was compiled after the model was written and the limits measured, and a
    // bad one ended in a SyntaxError's stack trace (exit 1).
    const r = await script('bench/cold-start.ts', '--cases', '(');
    assert.equal(r.status, 2, r.err);
    assert.equal(r.out, '');
    const [first, second] = r.err.split('\n');
    assert.match(first ?? '', /^bench:cold-start: --cases \(: Invalid regular expression/);
    assert.match(second ?? '', /^Usage: /);
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  });

  /** Bench files that are modules the scripts share, not scripts: nothing to run. */
  const BENCH_MODULES = new Set([
    'bench/private-build.ts',
    'bench/gateway/bodies.ts',
    'bench/gateway/nginx.ts',
    'bench/gateway/procs.ts',
    'bench/gateway/switchyard.ts',
    'bench/gateway/wrk.ts',
  ]);
  /**
   * Any other bench script (a new one, another task's) gets the same checks without the option
   * names; a new module goes in BENCH_MODULES, since run bare it prints no usage.
   */
  const listedBenches = new Set([...BENCHES.map(([file]) => file), 'bench/fidelity-derived.ts']);
  for (const file of ['bench', 'bench/gateway'].flatMap((dir) =>
    readdirSync(join(ROOT, dir))
      .filter((name) => name.endsWith('.ts'))
      .map((name) => `${dir}/${name}`),
  )) {
    if (listedBenches.has(file) || BENCH_MODULES.has(file)) continue;
    test(`${file} (not listed above): --help prints a usage, exit 0; an unknown flag one line and the usage, exit 2`, async () => {
      const help = await script(file, '--help');
      assert.equal(help.status, 0, help.err);
      assert.match(help.out, /^Usage: /);
      const typo = await script(file, '--bogus-flag');
      assert.equal(typo.status, 2, typo.err);
      const [first, second] = typo.err.split('\n');
      assert.match(first ?? '', /^[\w:-]+: Unknown option '--bogus-flag'/);
      assert.match(second ?? '', /^Usage: /);
    });
  }
});
