/**
 * Admission under a burst, side by side in one run: the time to first token of the requests a
 * gateway with admission lets through, against the unloaded TTFT and against the same burst through
 * a gateway that admits everything. Two built-in sim engines at model speed (Llama-3.1-8B on H100),
 * a burst of 48 streaming completions of about 4,000 prompt tokens, the admission config of the
 * overload e2e test (a small gate and one-deep queues). Prints each round's figures and the ratios.
 *
 *   npm run bench:overload                 # 3 rounds
 *   npm run bench:overload -- --rounds 5
 *
 * The target (docs/benchmarks.md): admitted TTFT p50 within 2.5x the unloaded p50, where the
 * unguarded burst is far above it.
 */
import { parseArgs } from 'node:util';
import { scriptArgs } from '../scripts/script-args.ts';
import { burst, OVERLOAD_ADMISSION, unloadedTtft } from '../test/e2e/support/burst.ts';
import {
  percentile,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
} from '../test/e2e/support/cluster.ts';

const BURST = 48;
const UNLOADED_SAMPLES = 5;
const TTFT_RATIO_TARGET = 2.5;

const USAGE = `Usage: npm run bench:overload -- [options]   (node --import tsx bench/gateway-overload.ts)

Admission under a burst: ${BURST} streaming completions of about 4,000 prompt tokens on two sim engines
at model speed, through a gateway with the overload test's admission config and through one that
admits everything; per round the admitted TTFT p50 against the unloaded one (target at most
${TTFT_RATIO_TARGET}x) and the unguarded burst's.

Options:
  --rounds N        rounds, each with its own unloaded samples and both gateways (default 3)
  -h, --help        this text

Example:
  npm run bench:overload -- --rounds 5`;

const { values } = scriptArgs('bench:overload', USAGE, () =>
  parseArgs({ options: { rounds: { type: 'string', default: '3' } } }),
);
const rounds = Number(values.rounds);

async function main(): Promise<void> {
  const teardown = new Teardown();
  try {
    const sims = await startSims(2, ['--time-scale', '1', '--kv-events', 'none'], teardown);
    const backends = sims.engines.map((e, i) => simBackend(`e${i}`, e));
    const guarded = await startTestGateway(
      { backends, routing: { policy: 'least-request' }, admission: OVERLOAD_ADMISSION },
      teardown,
    );
    const open = await startTestGateway({ backends, routing: { policy: 'least-request' } }, teardown);
    for (let round = 1; round <= rounds; round++) {
      const base = percentile((await unloadedTtft(guarded.url, UNLOADED_SAMPLES)).ttftMs, 50);
      const replies = await burst(guarded.url, BURST);
      const admitted = replies.filter((r) => r.status === 200);
      const admittedP50 = percentile(
        admitted.map((r) => r.firstChunkMs),
        50,
      );
      const flood = await burst(open.url, BURST);
      const floodP50 = percentile(
        flood.map((r) => r.firstChunkMs),
        50,
      );
      const ratio = admittedP50 / base;
      process.stdout.write(
        `round ${round}: unloaded TTFT p50 ${base.toFixed(0)} ms; with admission ${admitted.length} of ${BURST} ` +
          `admitted, TTFT p50 ${admittedP50.toFixed(0)} ms (${ratio.toFixed(2)}x unloaded, target <= ${TTFT_RATIO_TARGET}x); ` +
          `without admission TTFT p50 ${floodP50.toFixed(0)} ms (${(floodP50 / base).toFixed(2)}x)\n`,
      );
    }
  } finally {
    await teardown.run();
  }
}

await main();
