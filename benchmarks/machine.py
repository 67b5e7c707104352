"""One line describing the machine a benchmark ran on."""

import os
import platform


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = platform.python_version()
    return (f"{cpu} ({isa()}), {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
            f"Python {python}")


def isa() -> str:
    """The vector extensions that decide which int8 kernels run (pyg_edge.cpu.gemm_backend)."""
    from pyg_edge.cpu.gemm_backend import read_cpu

    flags = read_cpu().flags
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return " ".join(shown) or "no AVX2"
