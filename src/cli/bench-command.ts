import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { runBench } from '../loadgen/bench.ts';
import { BENCH_DEFAULTS, type BenchFlags, resolveBenchOptions } from '../loadgen/options.ts';
import { formatBenchReport, writeBenchJson } from '../loadgen/report.ts';
import type { RunProgress } from '../loadgen/runner.ts';
import { SAMPLE_PREFIX, SAMPLES } from '../workload/traces/samples.ts';
import { checkOutputFile } from './output-file.ts';

/**
 * Registers `switchyard bench`: an open-loop load generator against any OpenAI-compatible server.
 * Flags arrive as strings and are validated in src/loadgen/options.ts, so every bad value is one
 * SwitchyardError line (exit 2) naming the value and what is valid.
 */
export function registerBenchCommand(program: Command): void {
  const samples = Object.keys(SAMPLES)
    .map((n) => SAMPLE_PREFIX + n)
    .join(', ');
  const d = BENCH_DEFAULTS;
  program
    .command('bench')
    .description(
      'Load-test an OpenAI-compatible server, open loop: requests go out at their scheduled times ' +
        '(Poisson/Gamma arrivals, a replayed trace, or any twin workload from a file) whether or not earlier ' +
        'ones have answered, and the ' +
        'report gives TTFT, ITL, TPOT and E2E percentiles, throughput, failures by reason and goodput. ' +
        'See docs/bench.md.',
    )
    .option(
      '--url <url>',
      'base URL of the server (required), e.g. http://127.0.0.1:8000 (a trailing /v1 is fine)',
    )
    .option(
      '--endpoint <kind>',
      `chat (/v1/chat/completions) or completions (/v1/completions) (default ${d.endpoint})`,
    )
    .option('--model <name>', 'model to ask for (default: the first of GET /v1/models)')
    .option('--api-key <key>', 'sent as Authorization: Bearer <key>')
    .option('--rate <req/s>', `mean arrival rate, or inf to send everything at once (default ${d.rateRps})`)
    .option(
      '--workload <kind|file>',
      'arrivals: poisson (default), gamma (shaped by --cv or --burstiness; without either cv 1, which is Poisson, as in sim, and reported as poisson) or constant (evenly paced, every gap 1/rate); ' +
        "or a YAML/JSON file holding the twin's workload block (any kind sim takes: sinusoid, servegen, " +
        'multi-model, sessions, ...) or a sim config with one: the requests the twin would simulate for --seed, ' +
        'sent live (see docs/bench.md)',
    )
    .option(
      '--stages <list>',
      'rate stages in one run instead of --rate: comma-separated rate:seconds, e.g. 8:600,20:600 (rate 0: an idle stretch, not last); the run ends with the last stage',
    )
    .option(
      '--burstiness <k>',
      'Gamma arrivals of shape k (1 = Poisson, < 1 burstier), as in vLLM (default 1)',
    )
    .option(
      '--cv <x>',
      `Gamma arrivals with inter-arrival coefficient of variation x (> 1 burstier) (default ${d.cv}: Poisson)`,
    )
    .option('--requests <n>', `number of requests (default ${d.requests}, or the whole trace)`)
    .option(
      '--duration <s>',
      'stop scheduling after s seconds of the run (default: none, the run ends when its requests are sent)',
    )
    .option(
      '--input-tokens <n|lo-hi>',
      `prompt tokens, fixed or uniform in a range (default ${d.inputTokens})`,
    )
    .option(
      '--output-tokens <n|lo-hi>',
      `max_tokens, fixed or uniform in a range (default ${d.outputTokens})`,
    )
    .option(
      '--prefix-groups <G>',
      'G shared system prompts; each request starts with one of them (default: none, with --prefix-tokens)',
    )
    .option(
      '--prefix-tokens <P>',
      'tokens of each shared system prompt, added before --input-tokens (with --prefix-groups)',
    )
    .option('--trace <path>', `replay a trace file (Azure CSV, Mooncake JSONL(.gz)) or ${samples}`)
    .option(
      '--rate-scale <k>',
      'replay the trace or workload file k times faster (0.5: half as fast) (default 1)',
    )
    .option(
      '--tenant-key <name=key,...>',
      "with --workload FILE: the API key each of the workload's tenants is sent with (the gateway's tenant is the key's)",
    )
    .option(
      '--engine-priority <order>',
      "with --workload FILE: how the target orders the body's priority: gateway (as written: higher is more important), " +
        'lower-first (vLLM, the built-in engines: sent negated), higher-first, none (not sent) ' +
        "(default: told from GET /v1/models' owned_by)",
    )
    .option('--max-concurrency <n>', `bound on outstanding requests (default ${d.maxConcurrency})`)
    .option(
      '--overflow <mode>',
      `beyond the bound: wait for a slot, or drop the request (default ${d.overflow})`,
    )
    .option('--timeout-s <s>', `per-request timeout (default ${d.timeoutS})`)
    .option('--no-stream', 'ask for whole responses (TTFT is then the E2E; no ITL or TPOT)')
    .option('--no-ignore-eos', 'do not send ignore_eos: true (for servers that reject unknown fields)')
    .option(
      '--slo-ttft-ms <ms>',
      'TTFT target for goodput (default: none; with neither target no goodput line)',
    )
    .option('--slo-tpot-ms <ms>', 'TPOT target for goodput (default: none)')
    .option(
      '--seed <n>',
      `seed of arrivals, lengths and prompt text (default ${d.seed}, or a sim config's seed)`,
    )
    .option('--json <file>', 'write the summary as JSON (its folder is created if missing)')
    .option('--save-requests', 'add every request to the JSON (times, tokens, ITLs, failure)')
    .option('--no-progress', 'no progress bar (there is none when stderr is not a terminal either)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard bench --url http://127.0.0.1:8000 --rate 8 --requests 500 \\\n' +
        '    --input-tokens 1024 --output-tokens 128\n' +
        '  switchyard bench --url http://127.0.0.1:8000 --trace sample:mooncake-conversation \\\n' +
        '    --rate-scale 4 --requests 300 --slo-ttft-ms 2000 --slo-tpot-ms 100 --json out/bench.json\n' +
        '  switchyard bench --url http://127.0.0.1:8000 --endpoint chat --rate 20 --burstiness 0.5 \\\n' +
        '    --prefix-groups 8 --prefix-tokens 2048 --input-tokens 128-512 --output-tokens 64-256\n' +
        "  # the twin's workload, live: a file with the workload block (or a sim config), 20x faster\n" +
        '  # against a sim engine started with --time-scale 0.05\n' +
        '  switchyard bench --url http://127.0.0.1:8000 --workload sinusoid.yaml --rate-scale 20\n' +
        '    where sinusoid.yaml holds, e.g.:\n' +
        '      kind: sinusoid\n' +
        '      rateMinRps: 1\n' +
        '      rateMaxRps: 8\n' +
        '      periodS: 120\n' +
        '      durationS: 240\n' +
        '      input: { kind: lognormal, mean: 1000, cv: 0.5 }\n' +
        '      output: { kind: fixed, tokens: 64 }',
    )
    .action(async (flags: BenchFlags) => {
      const options = resolveBenchOptions(flags);
      // Its folder created and the file opened before the run, so a bad path fails at once.
      if (options.json !== undefined) checkOutputFile('--json', options.json);
      const interrupt = new AbortController();
      const onSigint = (): void => {
        process.stderr.write('\nswitchyard bench: interrupted; reporting what finished\n');
        interrupt.abort();
      };
      process.once('SIGINT', onSigint);
      const bar = new BenchBar(options.progress && process.stderr.isTTY === true);
      try {
        const summary = await runBench(options, {
          signal: interrupt.signal,
          onStart: (total) => bar.start(total),
          onProgress: (p) => bar.update(p),
        });
        bar.stop();
        process.stdout.write(`${formatBenchReport(summary, { color: process.stdout.isTTY === true })}\n`);
        if (options.json !== undefined) writeBenchJson(options.json, summary);
      } finally {
        bar.stop();
        process.removeListener('SIGINT', onSigint);
      }
    });
}

/** The progress bar on stderr: requests done of the total (or a count when the total is open). */
class BenchBar {
  private bar: cliProgress.SingleBar | undefined;

  constructor(private readonly enabled: boolean) {}

  start(total: number | undefined): void {
    if (!this.enabled) return;
    this.bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format:
          total !== undefined
            ? 'bench [{bar}] {percentage}% | {value}/{total} done | {outstanding} in flight | {failed} failed'
            : 'bench {value} done | {outstanding} in flight | {failed} failed',
        hideCursor: true,
        clearOnComplete: true,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total ?? 0, 0, { outstanding: 0, failed: 0 });
  }

  update(p: RunProgress): void {
    this.bar?.update(p.done, { outstanding: p.outstanding, failed: p.failed });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
