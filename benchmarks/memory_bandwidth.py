"""This machine's memory read bandwidth: the ceiling on decode speed.

    python benchmarks/memory_bandwidth.py

Decoding one token reads every weight once, so tokens/s can be at most bandwidth / bytes
of weights. Measured by summing float32 arrays far larger than the caches, one per core,
in threads (numpy releases the GIL while it reduces); the best of several passes.
"""

import os

from bench_common import read_bandwidth

if __name__ == "__main__":
    for count in sorted({1, os.cpu_count() or 1}):
        print(f"{count} thread(s): {read_bandwidth(threads=count) / 1e9:.1f} GB/s")
