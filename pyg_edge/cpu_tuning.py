"""Process-wide CPU settings, chosen for the machine before the first model loads.

benchmarks/bench_cpu_knobs.py measures CTranslate2's CPU knobs. On the machines measured so
far only one setting paid off: keeping freed memory in the heap. The others
(CT2_FORCE_CPU_ISA=AVX512, CT2_USE_EXPERIMENTAL_PACKED_GEMM, int8_float32) were within
noise of CTranslate2's defaults, CT2_USE_MKL=1 was 30x slower on AMD (CTranslate2 already
leaves MKL off there), and fewer threads than cores were slower, so those stay as
CTranslate2 sets them. Environment variables the user sets (CT2_*) still apply, and
PYG_EDGE_CPU_TUNING=0 turns this module off.
"""

import ctypes
import ctypes.util
import logging
import os
import platform
from dataclasses import dataclass

logger = logging.getLogger("pyg_edge")

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_applied = None


@dataclass(frozen=True)
class CpuTuning:
    """Process-wide CPU settings.

    Attributes:
      keep_heap: Have glibc keep freed memory for reuse instead of returning every large
        block to the kernel. A long prompt makes CTranslate2 allocate and free hundreds
        of MB per layer; perf showed about a third of prefill CPU time in the kernel
        zeroing fresh pages at 1,000 tokens. End to end the gain is small and noisy
        (first token at 1,920 tokens 1.11x, at 1,500 0.89x-0.98x) and peak RSS rises
        about 0.6-0.9 GB (benchmarks/RESULTS.md): a candidate to turn off by default.
    """

    keep_heap: bool = False


def choose_cpu_tuning(system: str | None = None) -> CpuTuning:
    """The settings measured fastest, and exact, for this kind of machine."""
    linux = (system or platform.system()) == "Linux"
    return CpuTuning(keep_heap=linux and _glibc() is not None)


def apply_cpu_tuning(tuning: CpuTuning) -> CpuTuning:
    """Applies tuning once per process (later calls keep the first); returns what applies."""
    global _applied
    if _applied is None:
        if os.environ.get("PYG_EDGE_CPU_TUNING") == "0":
            tuning = CpuTuning()
        _applied = CpuTuning(keep_heap=tuning.keep_heap and keep_freed_memory())
        logger.info("CPU settings: %s", _applied)
    return _applied


def keep_freed_memory() -> bool:
    """Tells glibc not to mmap large blocks nor trim the heap; True if it agreed."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
