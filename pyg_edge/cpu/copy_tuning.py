"""glibc's copy strategy for CTranslate2's key/value cache, set when a process starts.

Each decode step CTranslate2 copies every layer's float32 cache into a new buffer
(docs/ctranslate2-bugs/kv_cache_copy.md): per attention head one memmove of
T x 128 floats, 256 KB at 500 tokens and 1 MB at 1,920. glibc's memmove switches to
non-temporal stores (no read of the destination lines first, a third less memory traffic)
only above x86_non_temporal_threshold, which it derives from the cache size: 190 MB on
the Intel Xeon measured, so never. From 128 KB up, decode on the 2.7B shape (Intel Xeon,
exact-vnni, 2 threads, benchmarks/decode_profile.py) went 6.01 -> 6.29 tokens/s at 500
tokens and 3.75 -> 4.24 at 1,900. The bytes copied are the same, so outputs are too.

glibc reads its tunables once, before any Python runs, so the `pyg-edge` command starts
itself again with GLIBC_TUNABLES set (pyg_edge.launcher). In any process, an app's too,
install_copy() (called by pyg_edge.cpu.setup.prepare) gives CTranslate2 alone a copy that
streams from the same threshold (pyg_edge/cpu/native/nt_copy.c): its memcpy/memmove
entries point at it, nothing process-wide changes, and a check proves the copy on this
machine first.
"""

import ctypes
import logging
import platform

from pyg_edge.cpu.tuning import tuning_turned_off
from pyg_edge.errors import PygEdgeError

logger = logging.getLogger("pyg_edge")
_installed = None  # what install_copy did, for `pyg-edge info`

TUNABLE = "glibc.cpu.x86_non_temporal_threshold"
THRESHOLD = 0x20000  # 128 KB: caches of 128 or more tokens per head


def tuned_environment(environ, machine: str | None = None,
                      system: str | None = None) -> dict | None:
    """The environment to start again under, or None when nothing would change: the
    threshold is already set (by us or the user), PYG_EDGE_CPU_TUNING=0, or not x86 Linux."""
    if tuning_turned_off(environ) or TUNABLE in environ.get("GLIBC_TUNABLES", ""):
        return None
    if (system or platform.system()) != "Linux" or not _x86(machine or platform.machine()):
        return None
    setting = f"{TUNABLE}={THRESHOLD:#x}"
    current = environ.get("GLIBC_TUNABLES")
    return {**environ, "GLIBC_TUNABLES": f"{current}:{setting}" if current else setting}


def install_copy(environ, threshold: int = THRESHOLD) -> str:
    """Points libctranslate2's memcpy and memmove at pyg-edge's streaming copy (x86-64 Linux,
    the extension built, its check passed; off with PYG_EDGE_CPU_TUNING=0); returns what
    was done, in a line. Once per process; ctranslate2 must be loaded."""
    global _installed
    if _installed is None:
        _installed = _install(environ, threshold)
        logger.info("CTranslate2's copies: %s", _installed)
    return _installed


def _install(environ, threshold: int) -> str:
    from pyg_edge.cpu.gemm_backend import ctranslate2_libraries, shim_path

    if tuning_turned_off(environ):
        return "left to glibc (PYG_EDGE_CPU_TUNING=0)"
    if _start_threshold() not in (None, "unknown"):  # the command: glibc's own streaming copy
        return "left to glibc (its non-temporal threshold was set when the process started)"
    if platform.system() != "Linux" or not _x86(platform.machine()) or shim_path() is None:
        return "left to glibc (pyg-edge's C extension is for x86-64 Linux, and built there)"
    shim = ctypes.CDLL(str(shim_path()))
    shim.pyg_nt_copy_check.argtypes = [ctypes.c_size_t]
    if shim.pyg_nt_copy_check(threshold) != 0:
        return "left to glibc (pyg-edge's streaming copy failed its check on this machine)"
    try:
        library = ctranslate2_libraries()[0]
    except PygEdgeError as error:
        return f"left to glibc ({error})"
    shim.pyg_nt_copy_install.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    slots = shim.pyg_nt_copy_install(str(library).encode(), threshold)
    if slots <= 0:
        return "left to glibc (CTranslate2's memcpy/memmove entries were not found)"
    shim.pyg_nt_copy_kind.restype = ctypes.c_char_p
    kind = shim.pyg_nt_copy_kind().decode()
    return (f"streamed from {threshold:#x} bytes by pyg-edge ({kind} stores; {slots} entries "
            "of CTranslate2)")


def installed_copy() -> str | None:
    """What install_copy did in this process, or None before it ran."""
    return _installed


def threshold_in_effect() -> str:
    """How this process's memmove treats large copies, from the environment it started with."""
    value = _start_threshold()
    if value == "unknown":
        return "unknown"
    if value is not None:
        return f"non-temporal stores from {value} bytes ({TUNABLE})"
    return "glibc's default (non-temporal stores only past a size derived from the cache)"


def _start_threshold() -> str | None:
    """The threshold GLIBC_TUNABLES set when this process started, None, or "unknown"."""
    try:
        with open("/proc/self/environ", "rb") as environ:
            items = environ.read().split(b"\0")
        start = dict(item.split(b"=", 1) for item in items if b"=" in item)
    except OSError:
        return "unknown"
    for setting in start.get(b"GLIBC_TUNABLES", b"").decode(errors="replace").split(":"):
        name, _, value = setting.partition("=")
        if name == TUNABLE:
            return value
    return None


def _x86(machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64", "i686", "i386")
