"""CTranslate2's large blocks kept for reuse, in an app's process, without touching its malloc.

A long prompt makes CTranslate2 allocate and free hundreds of MB per layer. glibc gives
large freed blocks back to the kernel, which zeroes their pages again when the next layer
touches them: perf showed about a third of a 1,000-token pass in the kernel's page zeroing.
glibc's process-wide cure (pyg_edge.cpu.tuning, keep_heap) also keeps the host app's own
freed memory: a host that frees 400 MB keeps 446 MB resident, against 11 MB without it.
So an app's process gets this instead (pyg_edge/cpu/native/block_cache.c): CTranslate2's
own malloc/free/posix_memalign entries point at a cache of large blocks (128 KB and more,
in size classes), which keeps freed blocks for CTranslate2's next requests up to CAP_BYTES
(a kept block serves its class or one up to 4x larger, or grows to the class asked for:
kept memory serves any size, as glibc's heap does);
every other library, and the host, keep glibc as it was. The `pyg-edge` command keeps
glibc's settings (keep_heap) instead, as before.

The cache empties when a model loads or closes (release), as keep_heap's heap is trimmed
then: the weights CTranslate2 read before packing them are not kept.
"""

import ctypes
import logging
import platform

from pyg_edge.cpu.tuning import tuning_turned_off
from pyg_edge.errors import PygEdgeError

logger = logging.getLogger("pyg_edge")

# The freed bytes kept at most; past it a freed block goes back to the kernel. What a pass
# keeps settles at its working set: 2.15 GB after a 1,556-token pass of the 2.7B shape
# (int8, 1,024-token prefill chunk), whose second pass then mapped 20 MB of fresh pages
# (5,209 page faults, against 7.1 million with glibc as the host has it, 10 with keep_heap;
# peak RSS 4.40 GB, 4.29 and 4.27). A 2 GB cap, just under that working set, let the
# second pass map 111 MB.
CAP_BYTES = 4 << 30
_installed = None  # what install_block_cache did, for `pyg-edge info`
_shim = None


def install_block_cache(environ, cap: int = CAP_BYTES) -> str:
    """Points CTranslate2's allocation entries at pyg-edge's block cache (Linux on x86-64,
    the extension built, its check passed; off with PYG_EDGE_CPU_TUNING=0); returns what
    was done, in a line. Once per process; ctranslate2 must be loaded."""
    global _installed
    if _installed is None:
        _installed = _install(environ, cap)
        logger.info("CTranslate2's large blocks: %s", _installed)
    return _installed


def _install(environ, cap: int) -> str:
    global _shim
    from pyg_edge.cpu.gemm_backend import ctranslate2_libraries, shim_path

    if tuning_turned_off(environ):
        return "left to glibc (PYG_EDGE_CPU_TUNING=0)"
    if platform.system() != "Linux" or shim_path() is None:
        return "left to glibc (pyg-edge's C extension is for x86-64 Linux, and built there)"
    shim = ctypes.CDLL(str(shim_path()))
    if shim.pyg_block_cache_check() != 0:
        return "left to glibc (pyg-edge's block cache failed its check on this machine)"
    try:
        library = ctranslate2_libraries()[0]
    except PygEdgeError as error:
        return f"left to glibc ({error})"
    shim.pyg_block_cache_install.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    entries = shim.pyg_block_cache_install(str(library).encode(), cap)
    if entries <= 0:
        return "left to glibc (CTranslate2's allocation entries were not found)"
    _shim = shim
    return (f"kept for reuse by pyg-edge, up to {cap / 2**30:.1f} GB ({entries} entries of "
            "CTranslate2; the host's malloc unchanged)")


def installed_block_cache() -> str | None:
    """What install_block_cache did in this process, or None before it ran."""
    return _installed


def release() -> None:
    """Gives the kept blocks back to the system (a no-op unless the cache is installed)."""
    if _shim is not None:
        _shim.pyg_block_cache_release()


def stats() -> dict | None:
    """The cache's figures: kept and used bytes, blocks reused and mapped, bytes mapped (fresh
    pages, which the kernel zeroes at their first touch); None when not installed."""
    if _shim is None:
        return None
    figures = (ctypes.c_longlong * 5)()
    _shim.pyg_block_cache_stats(figures)
    names = ("kept_bytes", "used_bytes", "reused", "mapped", "mapped_bytes")
    return dict(zip(names, figures, strict=True))
