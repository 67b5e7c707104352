"""The int8 GEMM backends CTranslate2 can run on this CPU: what each needs, how to set one up.

On non-Intel x86-64 CPUs CTranslate2 uses oneDNN, whose int8 path for one row (each decoded
token) runs far below the memory-bandwidth limit. The wheel's statically linked oneMKL is
faster once told what the CPU can do, which pyg-edge's C extension (pyg_edge/cpu/native/mkl_shim.c)
does:
- "exact-vnni": CPUs with AVX-512 VNNI (AMD Zen 4/5, Intel since Cascade Lake). The
  extension computes few-row products (decode) with vpdpbusd, exact, straight from
  CTranslate2's unpacked weights at 88-97% of the read bandwidth, and oneMKL's VNNI
  kernels the many-row ones (prompts). Unpacked, CTranslate2 keeps no second, packed copy
  of the weights: on an Intel Xeon, peak RSS at 1,556 tokens 4.5 GB against 5.3 with
  packed weights, decode and prompt speed the same, load 2x faster.
- "mkl-vnni": the same CPUs on oneMKL's packed VNNI kernels (the choice before exact-vnni;
  "mkl" is CTranslate2's own choice on Intel, the same kernels).
- "exact-avx2": AVX2 CPUs without VNNI, Intel ones too. Without VNNI, oneDNN's and
  oneMKL's int8 kernels add u8 x s8 pairs in 16 bits and saturate, so the extension
  computes few-row products itself (exact, 16-bit widening) and many-row ones with
  oneMKL's int16 GEMM.
Which backend runs, proven how, and what runs instead when none is exact is
pyg_edge.cpu.backend_choice's; this module knows the backends: what each needs, and how to
set one up. PYG_EDGE_GEMM (or PygModel(gemm=...), `--gemm`) overrides the choice: auto,
onednn, mkl-vnni, exact-vnni, exact-avx2 (the last three on x86-64 Linux; onednn on x86-64,
since CTranslate2 has no oneDNN on ARM).
"""

import ctypes
import glob
import hashlib
import importlib.util
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from pyg_edge.cpu.verdicts import ctranslate2_version
from pyg_edge.errors import PygEdgeError

logger = logging.getLogger("pyg_edge")

ENV = "PYG_EDGE_GEMM"
CHOICES = ("auto", "onednn", "mkl-vnni", "exact-vnni", "exact-avx2")
VNNI_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")
AVX2_FLAGS = ("avx2", "fma")


@dataclass(frozen=True)
class ShimSetting:
    """What the C extension tells oneMKL, its GEMM mode, and CTranslate2's variables."""

    cpu_type: int  # oneMKL's CPU code: 5 selects its AVX2 kernels, 7 its AVX-512 ones
    is_clx: int  # with 7: the AVX-512 VNNI ("Cascade Lake") int8 kernels
    mode: int  # mkl_shim.c: 0 passes products to oneMKL, 1 "exact", 2 "exact VNNI"
    env: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """The extension computes few-row products itself, on unpacked weights."""
        return self.mode != 0


SHIM_SETTINGS = {
    "mkl-vnni": ShimSetting(7, 1, 0, {"CT2_USE_MKL": "1"}),
    # CTranslate2 would pack weights into oneMKL's layout, whose kernels the extension
    # does not replace; unpacked, every int8 product goes through cblas_gemm_s8u8s32.
    "exact-avx2": ShimSetting(5, 0, 1, {"CT2_USE_MKL": "1", "CT2_PACKED_GEMM": "0"}),
    # Few rows by the extension's vpdpbusd loop, many rows by oneMKL's VNNI kernels, both
    # on unpacked weights: no packed copy (what an Intel VNNI CPU's oneMKL detects too).
    "exact-vnni": ShimSetting(7, 1, 2, {"CT2_USE_MKL": "1", "CT2_PACKED_GEMM": "0"}),
}


@dataclass(frozen=True)
class CpuInfo:
    vendor: str
    model: str
    flags: frozenset

    def has(self, names) -> bool:
        return all(name in self.flags for name in names)


def keep_mkl_memory_in_the_heap() -> None:
    """Sends oneMKL's allocations to the C heap, unless the user chose otherwise.

    With oneMKL linked, CTranslate2 allocates through mkl_malloc, whose own memory manager
    hands large blocks back to the kernel: perf showed over half of a long prompt pass in
    the kernel zeroing fresh pages, and pyg_edge.cpu.tuning's heap settings never reached
    those blocks. MKL_DISABLE_FAST_MM=1 (read when oneMKL loads) makes them ordinary
    heap blocks: peak RSS of a 1,200-token cached prefix on the 2.7B shape 7.68 -> 6.38 GB.
    Measured with glibc's heap settings (pyg_edge.cpu.tuning), so set on x86-64 Linux only:
    on other systems oneMKL keeps its own manager.
    """
    if on_x86_linux():
        os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")


def check_request(requested: str, machine: str | None = None) -> None:
    """Refuses a backend that does not exist, or that this machine's CTranslate2 lacks.

    Raises:
      PygEdgeError: naming the choices.
    """
    if requested not in CHOICES and not requested.startswith("mkl-raw:"):
        raise PygEdgeError(f"unknown GEMM backend {requested!r}; expected one of: "
                           + ", ".join(CHOICES))
    machine = machine or platform.machine()
    if requested != "auto" and not is_x86(machine):
        raise PygEdgeError(f"GEMM backend {requested} is for x86-64 CPUs; CTranslate2 on "
                           f"{machine} has neither oneDNN nor oneMKL (it runs int8 through "
                           "Ruy): use auto")


def is_x86(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def on_x86_linux() -> bool:
    return platform.system() == "Linux" and is_x86()


def default_backend(cpu: CpuInfo) -> str:
    """What CTranslate2 runs on this CPU when left alone."""
    if not is_x86():
        return "ctranslate2 default"
    return "mkl" if cpu.vendor == "GenuineIntel" else "onednn"


def apply_backend(backend: str) -> None:
    """Sets this process up to run backend: CTranslate2's variables, and the extension for
    pyg-edge's own backends. Before ctranslate2 is imported; "ctranslate2 default" leaves
    everything as the user set it."""
    if backend == "onednn":
        os.environ["CT2_USE_MKL"] = "0"
        return
    if backend == "ctranslate2 default":
        return
    keep_mkl_memory_in_the_heap()
    if backend == "mkl":
        os.environ["CT2_USE_MKL"] = "1"
    else:
        enable(backend)


def uses_extension(backend: str) -> bool:
    return backend in SHIM_SETTINGS or backend.startswith("mkl-raw:")


def build_id() -> str:
    """Names the ctranslate2 build and the extension's, for cached verdicts."""
    try:
        library = ctranslate2_libraries()[0]
        library_id = f"{ctranslate2_version()}:{library.name}:{library.stat().st_size}"
    except PygEdgeError:
        library_id = ctranslate2_version()
    shim = shim_path()
    shim_id = hashlib.sha256(shim.read_bytes()).hexdigest()[:16] if shim else "none"
    return f"{library_id}|{shim_id}"


def plan(requested: str, cpu: CpuInfo, shim_built: bool) -> tuple:
    """The backend to try for requested on cpu, and why, before any self-test."""
    default = "mkl" if cpu.vendor == "GenuineIntel" else "onednn"
    if requested == "onednn":
        return "onednn", "asked for"
    if requested == "auto" and "CT2_USE_MKL" in os.environ:
        return "ctranslate2 default", "CT2_USE_MKL is set in the environment"
    if not on_x86_linux():
        return "ctranslate2 default", "pyg-edge's extension is for x86-64 Linux"
    if not shim_built:
        return default, "pyg-edge's C extension is not built (no C compiler at install)"
    if requested.startswith("mkl-raw:"):  # tests only: oneMKL told a CPU type, unchecked
        return requested, "asked for (testing)"
    if cpu.vendor == "GenuineIntel" and requested == "auto" and (
            "avx_vnni" in cpu.flags and not cpu.has(VNNI_FLAGS)):
        return "mkl", "Intel CPU with AVX-VNNI: CTranslate2 runs oneMKL's VNNI kernels itself"
    wanted = requested
    if requested == "auto":
        wanted = ("exact-vnni" if cpu.has(VNNI_FLAGS)
                  else "exact-avx2" if cpu.has(AVX2_FLAGS) else default)
        if wanted == default:
            return default, "no AVX2 on this CPU"
    needs = VNNI_FLAGS if wanted in ("mkl-vnni", "exact-vnni") else AVX2_FLAGS
    if not cpu.has(needs):
        return default, f"{wanted} needs {', '.join(needs)}, which this CPU lacks"
    if requested != "auto":
        return wanted, "asked for"
    if wanted == "exact-vnni":
        return wanted, ("AVX-512 VNNI CPU: decode by pyg-edge's VNNI kernel and prompts by "
                        "oneMKL's, on unpacked weights (as fast as packed, 0.8 GB less)")
    return wanted, ("AVX2 CPU without VNNI, where oneDNN's and oneMKL's int8 kernels "
                    "saturate: exact products, computed by pyg-edge's extension")


def enable(backend: str) -> ctypes.CDLL:
    """Loads the C extension ahead of CTranslate2 and points oneMKL at the backend's kernels.

    Loads libctranslate2 itself (its backend is fixed at that moment, from the variables
    set here), so this must run before `import ctranslate2`, once per process.
    """
    setting = shim_setting(backend)
    shim = ctypes.CDLL(str(shim_path()), mode=ctypes.RTLD_GLOBAL)
    shim.pyg_mkl_shim_set_cpu(setting.cpu_type, setting.is_clx)
    if os.environ.get("CT2_PACKED_GEMM", "0") not in ("0", "") and setting.exact:
        logger.warning("CT2_PACKED_GEMM is set, but %s needs unpacked weights: unset", backend)
    os.environ.update(setting.env)
    library, gomp = ctranslate2_libraries()
    if shim.pyg_mkl_shim_configure(str(library).encode(), str(gomp or "").encode(),
                                   setting.mode) != 0:
        raise PygEdgeError(f"cannot find cblas_gemm_s8u8s32 in {library}")
    return shim


def shim_setting(backend: str) -> ShimSetting:
    if backend.startswith("mkl-raw:"):
        return ShimSetting(int(backend.split(":", 1)[1]), 0, 0, {"CT2_USE_MKL": "1"})
    return SHIM_SETTINGS[backend]


def read_cpu() -> CpuInfo:
    """Vendor, model name and ISA flags of this CPU (flags from /proc/cpuinfo on Linux)."""
    vendor, model, flags = "", platform.processor(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif name == "model name" and not flags:
                    model = value.strip()
                elif name == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return CpuInfo(vendor, model, frozenset(flags))


def shim_path() -> Path | None:
    """The built C extension, or None when the install could not compile it."""
    found = sorted(Path(__file__).parent.glob("_mkl_shim*.so"))
    return found[0] if found else None


def ctranslate2_libraries() -> tuple:
    """(libctranslate2, its libgomp or None) of the installed ctranslate2 wheel.

    Raises:
      PygEdgeError: ctranslate2 is not installed as a wheel with its libraries beside it.
    """
    spec = importlib.util.find_spec("ctranslate2")
    if spec is None or not spec.submodule_search_locations:
        raise PygEdgeError("ctranslate2 is not installed")
    libs = Path(list(spec.submodule_search_locations)[0]).parent / "ctranslate2.libs"
    found = sorted(glob.glob(str(libs / "libctranslate2*.so*")))
    if not found:
        raise PygEdgeError(f"no libctranslate2 in {libs}")
    gomp = sorted(glob.glob(str(libs / "libgomp*.so*")))
    return Path(found[0]), (Path(gomp[0]) if gomp else None)
