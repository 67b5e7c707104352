"""The int8 GEMM pyg-edge's extension runs for CTranslate2, alone, against memory bandwidth.

    python benchmarks/bench_gemm.py [--backend exact-avx2] [--runs 5] [--rows 1,2,4,8]

Calls cblas_gemm_s8u8s32 as CTranslate2 does (row major, weights n x k transposed, one
offset per column) in the 2.7B's shapes: a few rows (one decoded token per sequence of a
batch: 1 for one reply, 2 or 4 for n replies; the weights are read once for all rows, so
weights read per second against this machine's read bandwidth tells how close a decode
step can come to its limit) and 512 rows (a prompt pass; int8 multiply-adds per second).
Eight different weight matrices per pass (about 210 MB) keep the caches from helping.
Each thread count runs in its own process (OMP_NUM_THREADS). oneDNN, CTranslate2's other
backend, is not exported by its library and cannot be called alone.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from bench_common import describe_machine, read_bandwidth, spread

DECODE_SHAPES = [(7680, 2560), (2560, 10240), (10240, 2560)]
PROMPT_SHAPE = (512, 10240, 2560)


def shapes(rows: list) -> list:
    return [(m, n, k) for m in rows for n, k in DECODE_SHAPES] + [PROMPT_SHAPE]


def child(backend: str, runs: int, rows: list) -> None:
    from pyg_edge.cpu import gemm_backend, gemm_selftest

    shim = gemm_backend.enable(backend)
    gemm = shim.cblas_gemm_s8u8s32
    gemm.argtypes, gemm.restype = gemm_selftest._GEMM_ARGS, None
    rng = np.random.default_rng(0)
    out = {}
    for m, n, k in shapes(rows):
        weights = [rng.integers(-127, 128, (n, k), dtype=np.int8) for _ in range(8)]
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        c, offsets = np.zeros((m, n), np.int32), np.zeros(n, np.int32)
        seconds = []
        for _ in range(runs + 1):  # the first pass warms up threads and buffers
            started = time.perf_counter()
            for b in weights:
                gemm(101, 111, 112, 171, m, n, k, 1.0, a.ctypes.data, k, 0, b.ctypes.data, k,
                     0, 0.0, c.ctypes.data, n, offsets.ctypes.data)
            seconds.append((time.perf_counter() - started) / len(weights))
        out[f"{m}x{n}x{k}"] = seconds[1:]
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="exact-avx2")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", default="1,2,4,8",
                        help="input rows of the decode shapes (sequences per step)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    if args.child:
        child(args.backend, args.runs, rows)
        return
    bandwidth = read_bandwidth()
    print(f"machine: {describe_machine()}")
    print(f"settings: backend {args.backend}, {args.runs} passes over 8 weight matrices per "
          f"shape, medians [min-max]; memory read bandwidth {bandwidth / 1e9:.1f} GB/s "
          "(memory_bandwidth.py)\n")
    print("| threads | shape (rows x outputs x depth) | ms per product | weights GB/s | "
          "share of read bandwidth | int8 GOP/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for threads in (1, os.cpu_count()):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, __file__, "--child", "--backend", args.backend,
                               "--runs", str(args.runs), "--rows", args.rows], env=env,
                              stdout=subprocess.PIPE, text=True, check=True)
        for shape, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            m, n, k = map(int, shape.split("x"))
            best = min(seconds)
            rate = [n * k / s / 1e9 for s in seconds]
            print(f"| {threads} | {shape} | {spread([s * 1e3 for s in seconds], 2)} | "
                  f"{spread(rate)} | {n * k / best / bandwidth:.0%} (best) | "
                  f"{spread([2 * m * n * k / s / 1e9 for s in seconds])} |")


if __name__ == "__main__":
    main()
