"""This machine's memory read bandwidth: the ceiling on decode speed.

    python benchmarks/memory_bandwidth.py

Decoding one token reads every weight once, so tokens/s can be at most bandwidth / bytes
of weights. Measured by summing float32 arrays far larger than the caches, one per core,
in threads (numpy releases the GIL while it reduces); the best of several passes.
"""

import os
import threading
import time

import numpy as np

ARRAY_BYTES = 512 << 20  # per thread; far beyond any L3


def read_bandwidth(passes: int = 10, threads: int | None = None) -> float:
    """Bytes per second read by `threads` threads summing their own arrays."""
    threads = threads or os.cpu_count() or 1
    arrays = [np.ones(ARRAY_BYTES // 4, np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(passes):
        workers = [threading.Thread(target=np.add.reduce, args=(a,)) for a in arrays]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = max(best, threads * ARRAY_BYTES / (time.perf_counter() - started))
    return best


if __name__ == "__main__":
    for count in sorted({1, os.cpu_count() or 1}):
        print(f"{count} thread(s): {read_bandwidth(threads=count) / 1e9:.1f} GB/s")
