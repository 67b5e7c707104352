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
itself again with GLIBC_TUNABLES set (pyg_edge.launcher). Applications that embed
pyg-edge can set the same variable before starting Python.
"""

import platform

from pyg_edge.cpu.tuning import tuning_turned_off

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


def threshold_in_effect() -> str:
    """How this process's memmove treats large copies, from the environment it started with."""
    try:
        with open("/proc/self/environ", "rb") as environ:
            items = environ.read().split(b"\0")
        start = dict(item.split(b"=", 1) for item in items if b"=" in item)
    except OSError:
        return "unknown"
    for setting in start.get(b"GLIBC_TUNABLES", b"").decode(errors="replace").split(":"):
        name, _, value = setting.partition("=")
        if name == TUNABLE:
            return f"non-temporal stores from {value} bytes ({TUNABLE})"
    return "glibc's default (non-temporal stores only past a size derived from the cache)"


def _x86(machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64", "i686", "i386")
