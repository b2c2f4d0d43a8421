"""Extracts the slices of NVIDIA's AIConfigurator operator tables (vLLM 0.14.0 kernels) that the
perf model is fitted on, from ../shared/data/profiles/aiconfigurator/<gpu>/, into small CSVs under
data/samples/calibration/aiconfigurator/<gpu>/. Run once by hand; nothing at run or test time reads
../shared.

    python3 scripts/extract-aiconfigurator.py [profilesDir]

Kept: bf16/fp16 rows only (the catalogue's models are served unquantised), bf16 KV cache, and
- GEMM: every m, with n and k on a subset of the measured sizes (the table is 9-30k rows a GPU);
- attention: every row whose head counts the model can run (query heads a multiple of KV heads);
- custom all-reduce: every row (CUDA-graph and eager);
- MoE: balanced routing (A100: the mildest power law, its table has no balanced rows), no expert
  parallelism (the model splits experts by tensor parallelism).
Latencies stay in milliseconds, as in the source.
"""
import csv
import gzip
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, '..', 'shared', 'data', 'profiles', 'aiconfigurator')
OUT = os.path.join(ROOT, 'data', 'samples', 'calibration', 'aiconfigurator')
GPUS = {'h100_sxm': 'h100', 'a100_sxm': 'a100', 'h200_sxm': 'h200'}
# GEMM n and k kept: powers of two and the widths the catalogue's models use.
GEMM_NK = {128, 512, 1024, 2048, 3072, 4096, 5120, 6144, 8192, 10240, 12288, 16384, 65536}
# GEMM m kept: the H100 table's grid (the H200 table also has every m + 1, which adds nothing).
GEMM_M = {1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 2048, 4096, 8192, 16384}


def rows(gpu, name):
    with gzip.open(os.path.join(SRC, gpu, name), 'rt') as f:
        return list(csv.DictReader(f))


def write(gpu, name, header, data):
    os.makedirs(os.path.join(OUT, GPUS[gpu]), exist_ok=True)
    data = sorted(set(data))
    with open(os.path.join(OUT, GPUS[gpu], name), 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(header)
        for r in data:
            w.writerow([('%.6g' % x) if isinstance(x, float) else x for x in r])
    print(gpu, name, len(data))


for gpu in GPUS:
    g = rows(gpu, 'gemm_vllm_0.14.0_gemm_perf.csv.gz')
    write(gpu, 'gemm.csv', ['m', 'n', 'k', 'latency_ms'], [
        (int(r['m']), int(r['n']), int(r['k']), float(r['latency']))
        for r in g
        if r['gemm_dtype'] in ('bfloat16', 'float16') and int(r['m']) in GEMM_M and int(r['n']) in GEMM_NK and int(r['k']) in GEMM_NK
    ])
    for op, col in (('context', 'isl'), ('generation', 'step')):
        a = rows(gpu, f'attention_vllm_0.14.0_{op}_attention_perf.csv.gz')
        write(gpu, f'{op}-attention.csv', ['batch', 'tokens' if op == 'context' else 'context', 'heads', 'kv_heads', 'latency_ms'], [
            (int(r['batch_size']), int(r[col]), int(r['num_heads']), int(r['num_key_value_heads']), float(r['latency']))
            for r in a
            if r['kv_cache_dtype'] == 'bfloat16' and r['attn_dtype'] == 'bfloat16'
            and int(r['num_heads']) % int(r['num_key_value_heads']) == 0 and r['head_dim'] == '128'
        ])
    c = rows(gpu, 'comm_vllm_0.14.0_custom_allreduce_perf.csv.gz')
    write(gpu, 'all-reduce.csv', ['backend', 'tp', 'elements', 'latency_ms'], [
        (r['backend'].replace('vllm_', ''), int(r['num_gpus']), int(r['message_size']), float(r['latency']))
        for r in c if r['allreduce_dtype'] == 'bfloat16'
    ])
    m = rows(gpu, 'moe_vllm_0.14.0_moe_perf.csv.gz')
    # The A100 table has no balanced-routing rows; its mildest skew (Zipf exponent 1.01) stands in.
    moe_distribution = 'balanced' if any(r['distribution'] == 'balanced' for r in m) else 'power_law_1.01'
    write(gpu, 'moe.csv', ['tokens', 'hidden', 'inter', 'topk', 'experts', 'moe_tp', 'latency_ms'], [
        (int(r['num_tokens']), int(r['hidden_size']), int(r['inter_size']), int(r['topk']), int(r['num_experts']), int(r['moe_tp_size']), float(r['latency']))
        for r in m
        if r['moe_dtype'] == 'bfloat16' and r['distribution'] == moe_distribution and r['moe_ep_size'] == '1'
    ])
