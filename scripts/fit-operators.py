"""Fits the perf model's per-operator efficiency curves to the committed AIConfigurator slices
(data/samples/calibration/aiconfigurator/<gpu>/*.csv, vLLM 0.14.0 kernels) and writes the
coefficients to src/model/operators/coefficients.ts. Offline only: the project reads the
committed coefficients, never this script's inputs at run or test time.

    python3 scripts/fit-operators.py            # fit, print held-out errors, write the .ts file
    python3 scripts/fit-operators.py --check    # fit and print only

Every table is sorted by its key columns and split by row parity: even rows fit, odd rows are
held out and scored (the report in docs/calibration.md scores the odd rows through the
TypeScript model). The formulas are the ones src/model/operators/operators.ts evaluates; see
docs/engine-model.md for what each coefficient means.
"""
import csv
import itertools
import os
import sys

import numpy as np
from scipy.optimize import least_squares

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'data', 'samples', 'calibration', 'aiconfigurator')
OUT = os.path.join(ROOT, 'src', 'model', 'operators', 'coefficients.ts')
HEAD_DIM = 128
BYTES = 2  # bf16
# Peak dense BF16 FLOP/s and HBM bytes/s, as in src/model/gpus.ts.
GPUS = {'h100': (989e12, 3350e9), 'h200': (989e12, 4800e9), 'a100': (312e12, 2039e9)}
# Decode attention adds a split-KV combine pass from this context length on (between the table's
# 127 and 255).
SPLIT_KV_TOKENS = 192


def load(gpu, name):
    with open(os.path.join(DATA, gpu, name)) as f:
        r = csv.reader(f)
        header = next(r)
        rows = [row for row in r]
    return header, rows


def numeric(rows, cols):
    return np.array([[float(row[c]) for c in cols] for row in rows])


def pnorm(a, b, p):
    return (a ** p + b ** p) ** (1 / p)


# ------------------------------------------------------------------ formulas (mirror operators.ts)

def gemm_ms(c, peak, bw, m, n, k):
    ce, me, lat_us, n_half, k_half, p = c
    flops = 2 * m * n * k
    bytes_ = BYTES * (m * k + n * k + m * n)
    eff = ce * (n / (n + n_half)) * (k / (k + k_half))
    return pnorm(flops / (peak * eff), bytes_ / (bw * me), p) * 1e3 + lat_us * 1e-3


def context_ms(c, peak, bw, b, s, h, kv):
    ce, work_half_m, me, lat_us, p = c
    flops = b * 4 * h * HEAD_DIM * s * (s + 1) / 2
    bytes_ = b * s * (2 * h + 2 * kv) * HEAD_DIM * BYTES
    work = b * h * s
    eff = ce * work / (work + work_half_m * 1e6)
    return pnorm(flops / (peak * eff), bytes_ / (bw * me), p) * 1e3 + lat_us * 1e-3


def generation_ms(c, peak, bw, b, s, h, kv):
    me, streams_half, lat_us, split_us, stream_ns, ce, p, gqa_us = c
    tokens = b * (s + 1)
    bytes_ = tokens * 2 * kv * HEAD_DIM * BYTES
    flops = tokens * 4 * h * HEAD_DIM
    x = b * kv
    eff = me * x / (x + streams_half)
    kv_ms = pnorm(flops / (peak * ce), bytes_ / (bw * eff), p) * 1e3
    # Per-stream set-up overlaps with the other streams' KV reads once the GPU is full of them.
    stream_ms = b * kv * stream_ns * 1e-6
    return (pnorm(kv_ms, stream_ms, p) + lat_us * 1e-3
            + split_us * 1e-3 * (s + 1 >= SPLIT_KV_TOKENS)
            + gqa_us * 1e-3 * ((b >= 2) & (kv >= 2) & (h > kv)))


def moe_ms(c, peak, bw, t, hidden, inter, k, e, tp, touched):
    ce, m_half, me, lat_us, p, expert_us, inter_half = c
    shard = inter / tp
    narrow = shard / (shard + inter_half)
    routed = t * k
    flops = routed * 2 * 3 * hidden * shard
    bytes_ = touched * 3 * hidden * shard * BYTES + routed * (2 * hidden + 3 * shard) * BYTES
    per_expert = routed / touched
    eff = ce * narrow * per_expert / (per_expert + m_half)
    return (pnorm(flops / (peak * eff), bytes_ / (bw * me * narrow), p) * 1e3
            + lat_us * 1e-3 + touched * expert_us * 1e-3)


# ------------------------------------------------------------------ fitting

def split(n):
    idx = np.arange(n)
    return idx % 2 == 0, idx % 2 == 1


def stats(pred, meas):
    e = np.abs(pred / meas - 1)
    return float(np.median(e)), float(e.max())


def fit_curve(f, x0, lo, hi, meas, train):
    def res(c):
        return np.log(f(c, train) / meas[train])
    r = least_squares(res, x0, bounds=(lo, hi), loss='soft_l1', f_scale=0.1, max_nfev=4000)
    return r.x


def fit_gemm(gpu):
    peak, bw = GPUS[gpu]
    _, rows = load(gpu, 'gemm.csv')
    a = numeric(rows, range(4))
    a = a[np.lexsort(a[:, :3].T[::-1])]
    m, n, k, t = a.T
    train, test = split(len(t))
    f = lambda c, s: gemm_ms(c, peak, bw, m[s], n[s], k[s])
    c = fit_curve(f, [0.8, 0.8, 5, 64, 128, 3], [0.1, 0.1, 0, 0, 0, 1], [1, 1, 50, 1e4, 1e4, 20], t, train)
    return c, stats(f(c, test), t[test]), int(test.sum())


def fit_context(gpu):
    peak, bw = GPUS[gpu]
    _, rows = load(gpu, 'context-attention.csv')
    a = numeric(rows, range(5))
    a = a[np.lexsort(a[:, :4].T[::-1])]
    b, s, h, kv, t = a.T
    train, test = split(len(t))
    f = lambda c, sl: context_ms(c, peak, bw, b[sl], s[sl], h[sl], kv[sl])
    c = fit_curve(f, [0.5, 20, 0.5, 10, 2], [0.05, 0, 0.02, 0, 1], [1, 1e4, 1, 200, 20], t, train)
    return c, stats(f(c, test), t[test]), int(test.sum())


def fit_generation(gpu):
    peak, bw = GPUS[gpu]
    _, rows = load(gpu, 'generation-attention.csv')
    a = numeric(rows, range(5))
    a = a[np.lexsort(a[:, :4].T[::-1])]
    b, s, h, kv, t = a.T
    train, test = split(len(t))
    f = lambda c, sl: generation_ms(c, peak, bw, b[sl], s[sl], h[sl], kv[sl])
    c = fit_curve(f, [0.9, 2, 10, 2, 20, 0.3, 2, 1], [0.05, 0, 0, 0, 0, 0.01, 1, 0], [1, 1e3, 200, 100, 1e4, 1, 20, 100], t, train)
    return c, stats(f(c, test), t[test]), int(test.sum())


def fit_moe(gpu):
    peak, bw = GPUS[gpu]
    _, rows = load(gpu, 'moe.csv')
    a = numeric(rows, range(7))
    a = a[np.lexsort(a[:, :6].T[::-1])]
    tok, hid, inter, k, e, tp, t = a.T
    # The table routes tokens evenly, so T tokens touch min(E, T k) experts.
    touched = np.minimum(e, tok * k)
    train, test = split(len(t))
    f = lambda c, sl: moe_ms(c, peak, bw, tok[sl], hid[sl], inter[sl], k[sl], e[sl], tp[sl], touched[sl])
    c = fit_curve(f, [0.3, 16, 0.7, 20, 2, 1, 64], [0.02, 0, 0.05, 0, 1, 0, 0], [1, 1e4, 1, 500, 20, 100, 1e4], t, train)
    pooled = stats(f(c, test), t[test])
    # vLLM ships tuned Triton configs for some expert shapes and not others (on the H100, Mixtral's
    # experts at TP2 run 5x faster than at TP1 for half the work), so each measured shape also gets
    # its own efficiencies and latency, the curves' other parameters kept from the pooled fit.
    shapes = {}
    pred = f(c, np.ones(len(t), dtype=bool))
    keys = np.stack([hid, inter, k, e, tp], 1)
    for key in sorted(set(map(tuple, keys))):
        mine = np.all(keys == key, axis=1)
        tr = mine & train
        if tr.sum() < 4:
            continue
        def g(cs, sl, c=c):
            full = np.array([cs[0], c[1], cs[1], cs[2], c[4], c[5], c[6]])
            return moe_ms(full, peak, bw, tok[sl], hid[sl], inter[sl], k[sl], e[sl], tp[sl], touched[sl])
        cs = fit_curve(g, [c[0], c[2], c[3]], [0.02, 0.05, 0], [1, 1, 500], t, tr)
        shapes[tuple(int(v) for v in key)] = cs
        te = mine & test
        pred[te] = g(cs, te)
    return c, (pooled, stats(pred[test], t[test])), int(test.sum()), shapes


def fit_regimes(x, t, max_regimes=3, min_points=3):
    """Piecewise alpha-beta: t = alpha + x / beta, fitted per regime (least relative squares),
    regime boundaries searched over the training sizes."""
    order = np.argsort(x)
    x, t = x[order], t[order]
    n = len(x)
    best = None
    for r in range(1, max_regimes + 1):
        for cuts in itertools.combinations(range(min_points, n - min_points + 1), r - 1):
            bounds = [0, *cuts, n]
            if any(bounds[i + 1] - bounds[i] < min_points for i in range(r)):
                continue
            regimes = []
            err = 0.0
            for i in range(r):
                xs, ts = x[bounds[i]:bounds[i + 1]], t[bounds[i]:bounds[i + 1]]
                w = 1 / ts
                A = np.stack([np.ones_like(xs), xs], 1) * w[:, None]
                sol, *_ = np.linalg.lstsq(A, ts * w, rcond=None)
                alpha, slope = max(sol[0], 0.0), max(sol[1], 1e-15)
                pred = alpha + slope * xs
                err += np.abs(np.log(pred / ts)).sum()
                # A regime starts halfway (geometrically) between the last size of the previous one
                # and its own first size.
                start = 0.0 if i == 0 else float(np.sqrt(x[bounds[i] - 1] * x[bounds[i]]))
                regimes.append((start, alpha, slope))
            err += 0.02 * r * n  # a regime must earn its keep
            if best is None or err < best[0]:
                best = (err, regimes)
    return best[1]


def allreduce_ms(regimes, bytes_):
    out = np.zeros_like(bytes_)
    for i, x in enumerate(bytes_):
        reg = [r for r in regimes if r[0] <= x][-1]
        out[i] = reg[1] + reg[2] * x
    return out


def fit_allreduce(gpu):
    _, rows = load(gpu, 'all-reduce.csv')
    out = {}
    errs = {}
    for backend in ('graph', 'eager'):
        out[backend] = {}
        preds, meas = [], []
        for tp in (2, 4, 8):
            sel = [r for r in rows if r[0] == backend and int(r[1]) == tp]
            if not sel:
                continue
            x = np.array([float(r[2]) * BYTES for r in sel])
            t = np.array([float(r[3]) for r in sel])
            o = np.argsort(x)
            x, t = x[o], t[o]
            train, test = split(len(t))
            regimes = fit_regimes(x[train], t[train])
            out[backend][tp] = regimes
            preds.append(allreduce_ms(regimes, x[test]))
            meas.append(t[test])
        if preds:
            p, mm = np.concatenate(preds), np.concatenate(meas)
            errs[backend] = (stats(p, mm), len(mm))
    return out, errs


# ------------------------------------------------------------------ output

def fmt(x):
    return float('%.4g' % x)


def main():
    fits = {}
    for gpu in GPUS:
        g, ge, gn = fit_gemm(gpu)
        cx, cxe, cxn = fit_context(gpu)
        gx, gxe, gxn = fit_generation(gpu)
        mo, (moe_pooled, moe_e), mon, moe_shapes = fit_moe(gpu)
        ar, are = fit_allreduce(gpu)
        fits[gpu] = (g, cx, gx, mo, ar, moe_shapes)
        print(f'{gpu}: held-out (odd rows) median / worst abs error')
        print(f'  gemm                 n={gn:5d}  {ge[0]:.3f} / {ge[1]:.3f}   {[fmt(v) for v in g]}')
        print(f'  context attention    n={cxn:5d}  {cxe[0]:.3f} / {cxe[1]:.3f}   {[fmt(v) for v in cx]}')
        print(f'  generation attention n={gxn:5d}  {gxe[0]:.3f} / {gxe[1]:.3f}   {[fmt(v) for v in gx]}')
        print(f'  moe (pooled curve)   n={mon:5d}  {moe_pooled[0]:.3f} / {moe_pooled[1]:.3f}   {[fmt(v) for v in mo]}')
        print(f'  moe (per shape)      n={mon:5d}  {moe_e[0]:.3f} / {moe_e[1]:.3f}   {len(moe_shapes)} shapes')
        for backend, ((med, worst), n) in are.items():
            print(f'  all-reduce {backend:9s} n={n:5d}  {med:.3f} / {worst:.3f}')
    if '--check' in sys.argv:
        return
    lines = [
        '// Generated by scripts/fit-operators.py from data/samples/calibration/aiconfigurator/ (vLLM 0.14.0',
        '// kernels measured by NVIDIA, Apache-2.0). Do not edit by hand: rerun the script.',
        "import type { OperatorCoefficients } from './operators.ts';",
        '',
        '/** Fitted operator coefficients per measured GPU table (see docs/engine-model.md). */',
        'export const OPERATOR_COEFFICIENTS: Readonly<Record<\'h100\' | \'h200\' | \'a100\', OperatorCoefficients>> = {',
    ]
    for gpu, (g, cx, gx, mo, ar, moe_shapes) in fits.items():
        lines.append(f'  {gpu}: {{')
        lines.append('    gemm: { computeEfficiency: %s, memoryEfficiency: %s, latencyUs: %s, nHalf: %s, kHalf: %s, sharpness: %s },' % tuple(fmt(v) for v in g))
        lines.append('    contextAttention: { computeEfficiency: %s, workHalfM: %s, memoryEfficiency: %s, latencyUs: %s, sharpness: %s },' % tuple(fmt(v) for v in cx))
        lines.append('    generationAttention: { memoryEfficiency: %s, streamsHalf: %s, latencyUs: %s, splitKvUs: %s, streamNs: %s, computeEfficiency: %s, sharpness: %s, gqaMultiSeqUs: %s },' % tuple(fmt(v) for v in gx))
        lines.append('    moe: { computeEfficiency: %s, tokensPerExpertHalf: %s, memoryEfficiency: %s, latencyUs: %s, sharpness: %s, expertUs: %s, interHalf: %s },' % tuple(fmt(v) for v in mo))
        lines.append('    moeShapes: {')
        for (h_, i_, k_, e_, tp_), (ce_, me_, lat_) in moe_shapes.items():
            lines.append(f"      '{h_}x{i_}x{k_}x{e_}/tp{tp_}': {{ computeEfficiency: {fmt(ce_)}, memoryEfficiency: {fmt(me_)}, latencyUs: {fmt(lat_)} }},")
        lines.append('    },')
        lines.append('    allReduce: {')
        for backend in ('graph', 'eager'):
            lines.append(f'      {backend}: {{')
            for tp, regimes in ar[backend].items():
                regs = ', '.join('[%s, %s, %s]' % (fmt(s), fmt(a * 1e3), fmt(1 / (b * 1e3) if b > 0 else 1e30)) for s, a, b in regimes)
                lines.append(f'        {tp}: [{regs}],')
            lines.append('      },')
        lines.append('    },')
        lines.append('  },')
    lines.append('};')
    with open(OUT, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('wrote', OUT)


main()
