"""What `pyg-edge info` reports: the CPU, the GEMM backend in use and why, and CTranslate2."""

import os

from pyg_edge.cpu import backend_choice, gemm_backend
from pyg_edge.cpu.copy_tuning import threshold_in_effect
from pyg_edge.cpu.setup import prepare
from pyg_edge_convert.version import __version__

# The ISA flags that decide which kernels can run (gemm_backend, CTranslate2's own dispatch).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")


def system_info(gemm: str | None = None) -> list:
    """(label, value) rows; makes pyg-edge's process-wide settings if not made yet.

    Args:
      gemm: As PygModel's gemm argument.
    """
    prepared = prepare(gemm)
    ctranslate2 = backend_choice.load_ctranslate2(gemm)
    choice = backend_choice.current_choice()
    cpu = gemm_backend.read_cpu()
    shim = gemm_backend.shim_path()
    rows = [
        ("pyg-edge", __version__),
        ("ctranslate2", ctranslate2.__version__),
        ("cpu", f"{cpu.model or 'unknown'} ({cpu.vendor or 'unknown vendor'})"),
        ("cores", str(os.cpu_count())),
        ("isa", " ".join(f for f in ISA_FLAGS if f in cpu.flags) or "unknown"),
        ("gemm backend", choice.backend),
        ("why", choice.reason),
        ("self-test", _selftest_line(choice.selftest)),
        ("int8 path check", _path_check_line(choice)),
        ("c extension", str(shim) if shim else "not built (no C compiler at install)"),
        ("cpu threads", os.environ.get("OMP_NUM_THREADS") or f"{os.cpu_count()} (all cores)"),
        ("cache copies", prepared.copies),
        ("glibc copies", threshold_in_effect()),
        ("cpu compute types", ", ".join(sorted(ctranslate2.get_supported_compute_types("cpu")))),
        ("cuda devices", str(ctranslate2.get_cuda_device_count())),
    ]
    return rows


def _selftest_line(verdict: dict | None) -> str:
    if not verdict:
        return "not needed"
    state = "passed" if verdict.get("ok") else "FAILED"
    when = "cached verdict" if verdict.get("cached") else f"{verdict.get('seconds', '?')} s"
    return f"{state}, {verdict.get('cases', '?')} shapes ({when}): {verdict.get('detail', '')}"


def _path_check_line(choice) -> str:
    check = choice.path_check or {}
    when = "cached verdict" if check.get("cached") else f"{check.get('seconds', 'in process')} s"
    if choice.int8_exact:
        return f"passed ({when}): int8 is exact on this path"
    instead = " or ".join(choice.exact_types) or "nothing exact"
    return (f"FAILED: {'; '.join(choice.failures)}; int8 models run in {instead} "
            "(--allow-inexact runs int8 anyway)")
