import { type Command, Option } from 'commander';
import { invalidArgument } from '../core/errors.ts';
import { routingPolicyNames } from '../policies/routing/registry.ts';
import { SIM_DEFAULTS } from '../twin/config.ts';
import { GOODPUT_DEFAULTS } from '../twin/goodput.ts';
import { formatComparisonTable } from '../twin/report/table.ts';
import { runExperiment, writeOutputs } from '../twin/run.ts';
import { DEFAULT_DECLARED_MAX_TOKENS, parseDeclaredMaxTokens } from '../workload/declared.ts';
import { checkOutputFiles } from './output-file.ts';
import { INSTANCES_MAX, intInRange, positiveInt, positiveNumber } from './parse.ts';
import { withSteps } from './progress.ts';

interface DemoFlags {
  trace: string;
  policies: string;
  instances: number;
  rateScale: number;
  requests: number;
  json?: string;
  html?: string;
  progress: boolean;
  goodput: boolean;
  sloTtftMs: number;
  sloTpotMs: number;
  earlyReject: boolean;
  goodputTarget: number;
  declaredMaxTokens: string;
}

/** The bundled default: several routing policies on a trace slice, side by side. */
const DEMO = {
  trace: 'sample:mooncake-conversation',
  policies: 'round-robin,least-request,prefix-affinity,llm-d,kv-cost,mooncake,goodput',
  instances: 8,
  rateScale: 1,
  requests: 2000,
  /**
   * Mooncake prompts average 12k tokens with a long tail (p99 91k): a 5 s TTFT is what
   * docs/results/routing.md uses for this trace; a chat-style 2 s is out of reach for the tail alone.
   */
  sloTtftMs: 5000,
  sloTpotMs: 100,
} as const;

/** Registers `switchyard demo`, what `npm run demo` runs (`npm start` runs `switchyard serve`). */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'Twin demo: replay a bundled trace slice under several routing policies on the same cluster and seed,\n' +
        'then print a comparison table.',
    )
    .option('--trace <path>', 'trace file or sample name', DEMO.trace)
    .addOption(
      new Option(
        '--policies <list>',
        `comma-separated routing policies (valid: ${routingPolicyNames().join(', ')})`,
      ).default(DEMO.policies),
    )
    .option(
      '--instances <n>',
      `engine instances (Llama-3.1-8B on H100), 1 to ${INSTANCES_MAX}`,
      intInRange(1, INSTANCES_MAX),
      DEMO.instances,
    )
    .option('--rate-scale <k>', 'multiply the trace arrival rate by k', positiveNumber, DEMO.rateScale)
    .option('--requests <n>', 'requests to replay from the trace', positiveInt, DEMO.requests)
    .option('--json <file>', 'write { policies: { name: summary } } as JSON')
    .option('--html <file>', 'write an HTML report comparing the policies')
    .option('--slo-ttft-ms <x>', 'time-to-first-token target', positiveNumber, DEMO.sloTtftMs)
    .option('--slo-tpot-ms <y>', 'time-per-output-token target', positiveNumber, DEMO.sloTpotMs)
    .option('--no-goodput', 'skip the goodput sweep (faster: only the run at the trace rate)')
    .option(
      '--goodput-target <f>',
      "goodput's attainment target, a fraction in (0, 1]",
      goodputTargetArg,
      GOODPUT_DEFAULTS.targetAttainment,
    )
    .option(
      '--declared-max-tokens <d>',
      'what each request declares as max_tokens: exact, cap:N, factor:K or none',
      declaredArg,
      DEFAULT_DECLARED_MAX_TOKENS,
    )
    .option(
      '--no-early-reject',
      'run each policy alone, without the shared early-rejection step (goodput and mooncake then refuse on their own)',
    )
    .option('--no-progress', 'do not draw progress bars')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard demo   (npm run demo: the seven default policies, each with its goodput sweep)\n' +
        '  switchyard demo --policies least-request,goodput --no-goodput --html out/demo.html\n' +
        '  switchyard demo --trace sample:azure-conv --instances 4 --rate-scale 8',
    )
    .action(async (flags: DemoFlags) => {
      const names = flags.policies
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      if (names.length === 0)
        throw invalidArgument(
          'policies',
          flags.policies,
          `one or more of ${routingPolicyNames().join(', ')}, comma-separated`,
        );
      checkOutputFiles({ json: flags.json, html: flags.html });
      process.stdout.write(
        `Switchyard twin demo: ${flags.trace}, first ${flags.requests} requests at ${flags.rateScale}x rate, ` +
          `${flags.instances} x ${SIM_DEFAULTS.model} on ${SIM_DEFAULTS.gpu}\n`,
      );
      const settings = {
        seed: SIM_DEFAULTS.seed,
        policy: names[0] ?? SIM_DEFAULTS.policy,
        policies: {},
        cluster: {
          groups: [
            { count: flags.instances, gpu: SIM_DEFAULTS.gpu, model: SIM_DEFAULTS.model, tp: SIM_DEFAULTS.tp },
          ],
        },
        engine: {},
        workload: {
          kind: 'trace',
          trace: flags.trace,
          rateScale: flags.rateScale,
          maxRequests: flags.requests,
          declaredMaxTokens: flags.declaredMaxTokens,
        },
        slo: { ttftMs: flags.sloTtftMs, tpotMs: flags.sloTpotMs },
        output: {},
        expectedRequests: flags.requests,
        // Every policy behind the same early-rejection step: admission held equal, placement compared.
        earlyReject: flags.earlyReject ? {} : undefined,
        goodputTarget: flags.goodputTarget,
      };
      const runs = await withSteps(flags.progress, (step) =>
        runExperiment(settings, names, { goodput: flags.goodput, onRun: step }),
      );
      const rows = runs.map((r) => ({
        name: r.result.summary.policy,
        summary: r.result.summary,
        ...(r.goodput !== undefined ? { goodputRps: r.goodput.goodputRps } : {}),
      }));
      process.stdout.write(`${formatComparisonTable(rows, { color: process.stdout.isTTY === true })}\n`);
      process.stdout.write(
        `SLO: TTFT <= ${flags.sloTtftMs} ms and TPOT <= ${flags.sloTpotMs} ms. Goodput: the highest arrival rate at which ` +
          `>= ${Math.round(flags.goodputTarget * 100)}% of requests meet both (the other columns are at the trace rate; ` +
          'percentiles and hit rate count rejected requests, as ∞ and as misses).\n' +
          `Requests declare max_tokens ${flags.declaredMaxTokens}${flags.earlyReject ? '; every policy runs behind the same early-rejection step' : ''}.\n` +
          'Next: `switchyard sim --help`, or `switchyard demo --html out/report.html` for plots.\n',
      );
      writeOutputs(runs, {
        ...(flags.json !== undefined ? { json: flags.json } : {}),
        ...(flags.html !== undefined ? { html: flags.html } : {}),
      });
    });
}

function goodputTargetArg(value: string): number {
  const x = Number(value);
  if (!(x > 0 && x <= 1))
    throw invalidArgument('goodput-target', value, 'a fraction in (0, 1], e.g. 0.9 or 0.99');
  return x;
}

function declaredArg(value: string): string {
  parseDeclaredMaxTokens(value, 'declared-max-tokens');
  return value;
}
