/**
 * `switchyard serve --config` with P/D backends and an autoscaler: Switchyard starts no engine, so
 * the loop only exports its decision, for the first backend's model and role. With real sim P/D
 * engines (one prefill, two decode) the exported replicas are the prefill backends alone: they were
 * every instance of the model (3) labelled role="prefill". Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MODEL } from './support/cluster.ts';
import { simPdCluster } from './support/pd.ts';
import { until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 30_000;

const pd = simPdCluster({
  protocol: 'vllm',
  prefills: 1,
  decodes: 2,
  releaseMs: 60_000,
  extra: { autoscaler: { name: 'kpa', intervalMs: 100 } },
});

/** The value of `name{labels}` on serve's /metrics, or undefined. */
async function gauge(name: string, labels: string): Promise<number | undefined> {
  const text = await (await fetch(`${pd.serve.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('serve: an export-only autoscaler over P/D backends', () => {
  it("counts the first backend's role only, and says which role it sizes", async () => {
    const labels = `model="${MODEL}",role="prefill",phase="ready"`;
    // Every backend passes its health checks first: then all three would have been counted.
    await until('the backends healthy', async () => (await fetch(`${pd.serve.url}/ready`)).ok, HANG_GUARD_MS);
    await until(
      'a ready prefill replica exported',
      async () => ((await gauge('switchyard_replicas', labels)) ?? 0) > 0,
      HANG_GUARD_MS,
    );
    assert.equal(await gauge('switchyard_replicas', labels), 1);
    assert.ok(
      pd.serve.stderr.some((l) => l.includes(`for '${MODEL}' (its prefill backends) only`)),
      pd.serve.stderr.join('\n'),
    );
  });
});
