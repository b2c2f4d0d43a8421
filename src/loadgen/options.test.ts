import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { type BenchFlags, parseTokenRange, resolveBenchOptions } from './options.ts';

const BASE: BenchFlags = { url: 'http://127.0.0.1:8000', stream: true, ignoreEos: true, progress: true };

function fails(flags: { [K in keyof BenchFlags]?: BenchFlags[K] | undefined }, pattern: RegExp): void {
  assert.throws(
    () => resolveBenchOptions({ ...BASE, ...flags } as BenchFlags),
    (e: unknown) => {
      assert.ok(e instanceof SwitchyardError, String(e));
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    },
  );
}

test('defaults: a Poisson workload of 1000 requests at 10 req/s', () => {
  const o = resolveBenchOptions(BASE);
  assert.equal(o.url.href, 'http://127.0.0.1:8000/');
  assert.equal(o.endpoint, 'completions');
  assert.equal(o.maxConcurrency, 256);
  assert.equal(o.overflow, 'wait');
  assert.equal(o.timeoutMs, 300_000);
  assert.deepEqual(o.source, {
    kind: 'synthetic',
    rateRps: 10,
    cv: 1,
    requests: 1000,
    durationS: undefined,
    inputTokens: { lo: 1024, hi: 1024 },
    outputTokens: { lo: 128, hi: 128 },
    prefixGroups: 0,
    prefixTokens: 0,
  });
});

test('a trailing /v1 and slashes are dropped from the URL; a path prefix stays', () => {
  assert.equal(resolveBenchOptions({ ...BASE, url: 'http://h:1/v1/' }).url.pathname, '/');
  assert.equal(resolveBenchOptions({ ...BASE, url: 'https://h/proxy/v1' }).url.pathname, '/proxy');
});

test('ranges, burstiness and inf', () => {
  assert.deepEqual(parseTokenRange('input-tokens', '128-512'), { lo: 128, hi: 512 });
  assert.deepEqual(parseTokenRange('input-tokens', '64'), { lo: 64, hi: 64 });
  const o = resolveBenchOptions({ ...BASE, rate: 'inf', requests: '20' });
  assert.ok(o.source.kind === 'synthetic' && o.source.rateRps === Number.POSITIVE_INFINITY);
  const g = resolveBenchOptions({ ...BASE, burstiness: '0.25' });
  assert.ok(g.source.kind === 'synthetic' && g.source.cv === 2);
});

test('bad values name the flag, the value and what is valid', () => {
  fails({ url: undefined }, /missing --url/);
  fails({ url: 'ftp://x' }, /--url 'ftp:\/\/x'.*not http or https/);
  fails({ url: 'nonsense' }, /--url 'nonsense'/);
  fails({ endpoint: 'embeddings' }, /--endpoint 'embeddings'; valid: chat, completions/);
  fails({ overflow: 'queue' }, /--overflow 'queue'; valid: drop, wait/);
  fails({ rate: 'fast' }, /--rate 'fast': expected a positive number or inf/);
  fails({ rate: '0' }, /--rate '0'/);
  fails({ requests: '1.5' }, /--requests '1.5': expected an integer/);
  fails({ inputTokens: '512-128' }, /--input-tokens '512-128': expected a token count N or a range LO-HI/);
  fails({ outputTokens: '0' }, /--output-tokens '0'/);
  fails({ maxConcurrency: '0' }, /--max-concurrency '0': expected an integer from 1/);
  fails({ sloTtftMs: '-5' }, /--slo-ttft-ms '-5'/);
  fails({ seed: 'x' }, /--seed 'x'/);
});

test('flags that do not go together are refused', () => {
  fails({ trace: 'sample:azure-conv', rate: '5' }, /--rate '5': not used with --trace.*--rate-scale/);
  fails({ trace: 'sample:azure-conv', inputTokens: '100' }, /--input-tokens '100': not used with --trace/);
  fails({ trace: 'sample:azure-conv', prefixGroups: '3' }, /--prefix-groups '3': not used with --trace/);
  fails({ rateScale: '2' }, /--rate-scale '2': only used with --trace/);
  fails({ burstiness: '2', cv: '2' }, /--cv '2': give --burstiness or --cv, not both/);
  fails({ prefixGroups: '4' }, /--prefix-groups '4': needs --prefix-tokens/);
  fails({ prefixTokens: '100' }, /--prefix-tokens '100': needs --prefix-groups/);
  fails({ rate: 'inf', duration: '10' }, /--rate 'inf': needs --requests/);
});

test('a trace source keeps its caps and scale', () => {
  const o = resolveBenchOptions({
    ...BASE,
    trace: 'sample:mooncake-conversation',
    rateScale: '3',
    requests: '50',
  });
  assert.deepEqual(o.source, {
    kind: 'trace',
    trace: 'sample:mooncake-conversation',
    rateScale: 3,
    requests: 50,
    durationS: undefined,
  });
});

test('a run holds at most 50 million requests (WORKLOAD_REQUESTS_MAX, as sim): --requests, or --rate x --duration without it', () => {
  fails({ requests: '1e12' }, /--requests '1e12': expected an integer from 1 to 50000000/);
  fails({ requests: '50000001' }, /--requests '50000001': expected an integer from 1 to 50000000/);
  assert.equal(resolveBenchOptions({ ...BASE, requests: '50000000' }).source.requests, 50_000_000);
  fails(
    { rate: '1000', duration: '1000000' },
    /invalid --rate 1000 x --duration 1000000: about 1,000,000,000 requests, more than 50,000,000.*--requests/,
  );
  fails({ stages: '1000000:100,5:10' }, /invalid --stages '1000000:100,5:10': about 100,000,050 requests/);
  // --requests cuts it, and --duration cuts the stages: both are taken.
  assert.equal(
    resolveBenchOptions({ ...BASE, rate: '1000', duration: '1000000', requests: '10' }).source.requests,
    10,
  );
  resolveBenchOptions({ ...BASE, stages: '1000000:100,5:10', duration: '40' });
});
