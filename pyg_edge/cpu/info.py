"""What `pyg-edge info` reports: the CPU, the GEMM backend in use and why, and CTranslate2."""

import os
import platform

from pyg_edge.cpu import backend_choice, gemm_backend
from pyg_edge.cpu.copy_tuning import threshold_in_effect
from pyg_edge.cpu.identity import CpuIdentity, this_cpu
from pyg_edge.cpu.setup import prepare
from pyg_edge_convert.version import __version__

# The ISA flags that decide which kernels can run (gemm_backend, CTranslate2's own dispatch).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")
# What CTranslate2's wheels run where pyg-edge leaves the choice to it (no oneMKL, no oneDNN
# on ARM): Ruy for int8 everywhere on ARM (RUY_PATHS restricts its kernels); OpenBLAS, linked
# into libctranslate2 (Linux aarch64 wheel 4.8.5: no DYNAMIC_ARCH, so OPENBLAS_CORETYPE only
# matters to a CTranslate2 built against a dynamic OpenBLAS), or Apple's Accelerate (macOS)
# for float32.
ARM_FLOAT_KERNELS = {"Linux": "OpenBLAS", "Darwin": "Apple Accelerate"}
SYSTEM_NAMES = {"Darwin": "macOS"}


def system_info(gemm: str | None = None) -> list:
    """(label, value) rows; makes pyg-edge's process-wide settings if not made yet.

    Args:
      gemm: As PygModel's gemm argument.
    """
    prepared = prepare(gemm)
    ctranslate2 = backend_choice.load_ctranslate2(gemm)
    choice = backend_choice.current_choice()
    cpu = this_cpu()
    system = platform.system()
    shim = gemm_backend.shim_path()
    rows = [
        ("pyg-edge", __version__),
        ("ctranslate2", ctranslate2.__version__),
        *cpu_rows(cpu),
        ("gemm backend", choice.backend),
        ("why", choice.reason),
        *kernel_rows(cpu, system, os.environ),
        ("self-test", _selftest_line(choice.selftest)),
        ("int8 path check", _path_check_line(choice)),
        ("c extension", str(shim) if shim else extension_absent(cpu.arch, system)),
        ("cpu threads", os.environ.get("OMP_NUM_THREADS") or f"{os.cpu_count()} (all cores)"),
        ("cache copies", prepared.copies),
        ("freed blocks", prepared.blocks),
        ("glibc copies", glibc_copies(cpu.arch, system)),
        ("cpu compute types", ", ".join(sorted(ctranslate2.get_supported_compute_types("cpu")))),
        ("cuda devices", str(ctranslate2.get_cuda_device_count())),
    ]
    return rows


def cpu_rows(cpu: CpuIdentity) -> list:
    """The CPU's name, cores, and the features that decide which int8 kernels run."""
    features = (cpu.int8_features() if cpu.is_arm
                else " ".join(f for f in ISA_FLAGS if f in cpu.features))
    return [("cpu", cpu.describe()), ("cores", str(os.cpu_count())),
            ("isa", features or "unknown")]


def kernel_rows(cpu: CpuIdentity, system: str, environ) -> list:
    """On ARM: the kernels CTranslate2 runs itself (Ruy for int8), and the variables that
    change them. Elsewhere none: the gemm backend row says it."""
    if not cpu.is_arm:
        return []
    if environ.get("RUY_PATHS"):
        int8 = f"Ruy, the paths RUY_PATHS={environ['RUY_PATHS']} allows"
    elif "asimddp" in cpu.features:
        int8 = "Ruy, NEON dot-product kernels (asimddp)"
    else:
        int8 = "Ruy, plain NEON kernels (this CPU has no asimddp)"
    floats = ARM_FLOAT_KERNELS.get(system, "CTranslate2's build's own")
    if floats == "OpenBLAS" and environ.get("OPENBLAS_CORETYPE"):
        floats += (f" (OPENBLAS_CORETYPE={environ['OPENBLAS_CORETYPE']}: read by a "
                   "DYNAMIC_ARCH OpenBLAS only)")
    return [("int8 kernels", int8), ("float kernels", floats)]


def extension_absent(arch: str, system: str) -> str:
    """Why pyg-edge's C extension is not there: it is built on x86-64 Linux only."""
    if system == "Linux" and gemm_backend.is_x86(arch):
        return "not built (no C compiler at install)"
    return f"none: it is for x86-64 Linux (this is {arch} {SYSTEM_NAMES.get(system, system)})"


def glibc_copies(arch: str, system: str) -> str:
    """glibc's copy threshold in effect; it exists on x86 Linux only."""
    if system == "Linux" and gemm_backend.is_x86(arch):
        return threshold_in_effect()
    return "not tuned (glibc's non-temporal copy threshold is x86's)"


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
