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
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# M_TRIM_THRESHOLD -1: never trim (mallopt(3)). The largest positive value, 2 GB, still let
# glibc shrink the heap whenever more than that was free at its top: a model reload (2.7 GB
# freed) or a long pass's attention buffers gave pages back, and the next pass faulted
# them in again (perf: 14% of a 14 s pass in clear_page_erms under brk's unmapping).
_NEVER = -1
_applied = None


@dataclass(frozen=True)
class CpuTuning:
    """Process-wide CPU settings.

    Attributes:
      keep_heap: Have glibc keep freed memory for reuse instead of returning every large
        block to the kernel, in one heap for all threads. A long prompt makes
        CTranslate2 allocate and free hundreds of MB per layer; perf showed about a third
        of prefill CPU time in the kernel zeroing fresh pages at 1,000 tokens. Keeping the
        heap alone did not stop it: CTranslate2's worker threads allocate from glibc's
        per-thread arenas, which are separate mapped heaps that glibc shrinks on free
        (MADV_DONTNEED), so their pages were zeroed again on every pass. One arena for
        all threads ends that: a 1,700-token prompt pass on the 2.7B shape (Intel Xeon
        with AMX, 2 threads) 26.6 s -> 12.9 s, kernel time 22.9 s -> 3.2 s. The heap is
        never trimmed: with glibc's largest threshold (2 GB) a model reload or a long
        pass's attention buffers still went back, and a smart-context cut (a reload and
        a 1,240-token pass) took 14 s instead of 9.5. What the heap holds after a packing
        load, the weights CTranslate2 read before packing them, goes back to the system
        then (release_freed_memory): peak RSS 6.1 -> 5.3 GB.
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
        if tuning_turned_off(os.environ):
            tuning = CpuTuning()
        _applied = CpuTuning(keep_heap=tuning.keep_heap and keep_freed_memory())
        logger.info("CPU settings: %s", _applied)
    return _applied


def tuning_turned_off(environ) -> bool:
    """PYG_EDGE_CPU_TUNING=0: this module's settings and pyg_edge.cpu.copy_tuning's stay off."""
    return environ.get("PYG_EDGE_CPU_TUNING") == "0"


def keep_freed_memory() -> bool:
    """Tells glibc to use one heap for all threads, never to mmap large blocks nor to trim
    the heap; True if it agreed."""
    libc = _glibc()
    if libc is None:
        return False
    return (bool(libc.mallopt(_M_ARENA_MAX, 1)) and bool(libc.mallopt(_M_MMAP_MAX, 0))
            and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)))


def release_freed_memory() -> None:
    """Returns the free pages of the kept heap, or of CTranslate2's block cache, to the
    system (after a model load, which frees the weights as read once they are packed). A
    no-op unless keep_heap or the block cache applies."""
    from pyg_edge.cpu import block_cache  # it imports this module

    block_cache.release()
    libc = _glibc()
    if _applied is not None and _applied.keep_heap and libc is not None:
        libc.malloc_trim(0)


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
