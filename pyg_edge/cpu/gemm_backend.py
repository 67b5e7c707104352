"""Which int8 GEMM CTranslate2 runs on this CPU: chosen, proven exact, and set before it loads.

CTranslate2's CPU backend is fixed when its library loads (static initialisers read
CT2_USE_MKL), so the choice is made once per process, before the first `import ctranslate2`
anywhere in pyg-edge: every module gets CTranslate2 through load_ctranslate2().

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
A backend is used only after gemm_selftest has compared its products with exact integer
results in a separate process (a wrong kernel, or one the CPU cannot run, can then only
fail that process); the verdict is cached per CPU, library and extension.
PYG_EDGE_GEMM (or PygModel(gemm=...), `--gemm`) overrides the choice: auto, onednn,
mkl-vnni, exact-vnni, exact-avx2.
"""

import ctypes
import glob
import hashlib
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyg_edge.errors import PygEdgeError
from pyg_edge.user_cache import cache_dir

logger = logging.getLogger("pyg_edge")

ENV = "PYG_EDGE_GEMM"
CHOICES = ("auto", "onednn", "mkl-vnni", "exact-vnni", "exact-avx2")
SELFTEST_TIMEOUT_S = 300
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


@dataclass(frozen=True)
class GemmChoice:
    """The backend this process runs, and why.

    Attributes:
      backend: "onednn", "mkl" (CTranslate2's own choice on Intel), "mkl-vnni",
        "exact-vnni", "exact-avx2", or "ctranslate2 default" when pyg-edge left it alone.
      reason: One line on why.
      selftest: The self-test's verdict when one ran or was read from the cache.
    """

    backend: str
    reason: str
    selftest: dict | None = None


_choice: GemmChoice | None = None


def load_ctranslate2(requested: str | None = None):
    """Chooses the GEMM backend once per process, then imports and returns ctranslate2.

    Args:
      requested: One of CHOICES; None reads PYG_EDGE_GEMM (default "auto"). Only the
        first call in a process decides.

    Raises:
      PygEdgeError: requested is not one of CHOICES.
    """
    global _choice
    requested = requested or os.environ.get(ENV) or "auto"
    if _choice is None:
        _choice = _choose(requested, read_cpu())
        unmet = requested != "auto" and requested != _choice.backend
        (logger.warning if unmet else logger.info)(
            "GEMM backend: %s (%s)", _choice.backend, _choice.reason)
    elif requested not in ("auto", _choice.backend):
        logger.warning("GEMM backend %s asked for, but this process already runs %s",
                       requested, _choice.backend)
    import ctranslate2

    return ctranslate2


def current_choice() -> GemmChoice | None:
    """The choice load_ctranslate2 made, or None before the first model loads."""
    return _choice


def packs_weights() -> bool:
    """Whether CPU models load with a packed copy of their weights (oneMKL's layout).

    Such a load holds the weights twice for a while, so what it frees is worth returning
    to the system. An unpacked load frees nothing much: reloading it then reuses the heap
    the last model and its passes used, where fresh pages cost a fault each (measured on
    the 2.7B shape, Intel Xeon, exact-vnni: a reload 0.9 s against 1.9 s, the
    1,000-token pass after it 5.5 s against 9.8 s).
    """
    if _choice is None or os.environ.get("CT2_PACKED_GEMM", "").lower() in ("0", "false"):
        return _choice is None
    setting = SHIM_SETTINGS.get(_choice.backend)
    return _choice.backend != "onednn" and not (setting and setting.exact)


def _choose(requested: str, cpu: CpuInfo) -> GemmChoice:
    if requested not in CHOICES and not requested.startswith("mkl-raw:"):
        raise PygEdgeError(f"unknown GEMM backend {requested!r}; expected one of: "
                           + ", ".join(CHOICES))
    if "ctranslate2" in sys.modules:
        return GemmChoice("ctranslate2 default", "ctranslate2 was imported before pyg-edge "
                          "could choose its GEMM backend; to let it choose, load a PygModel "
                          "(or call pyg_edge.cpu.gemm_backend.load_ctranslate2()) first")
    backend, reason = plan(requested, cpu, shim_path() is not None)
    if backend == "onednn":
        os.environ["CT2_USE_MKL"] = "0"
    else:
        keep_mkl_memory_in_the_heap()
    if backend not in SHIM_SETTINGS and not backend.startswith("mkl-raw:"):
        return GemmChoice(backend, reason)
    verdict = selftest_verdict(backend, cpu)
    if not verdict.get("ok"):
        logger.warning("GEMM backend %s failed its self-test (%s): using oneDNN",
                       backend, verdict.get("detail"))
        os.environ["CT2_USE_MKL"] = "0"
        return GemmChoice("onednn", f"{backend} failed its self-test: {verdict.get('detail')}",
                          verdict)
    enable(backend)
    return GemmChoice(backend, reason, verdict)


def keep_mkl_memory_in_the_heap() -> None:
    """Sends oneMKL's allocations to the C heap, unless the user chose otherwise.

    With oneMKL linked, CTranslate2 allocates through mkl_malloc, whose own memory manager
    hands large blocks back to the kernel: perf showed over half of a long prompt pass in
    the kernel zeroing fresh pages, and pyg_edge.cpu.tuning's heap settings never reached
    those blocks. MKL_DISABLE_FAST_MM=1 (read when oneMKL loads) makes them ordinary
    heap blocks: peak RSS of a 1,200-token cached prefix on the 2.7B shape 7.68 -> 6.38 GB.
    """
    os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")


def plan(requested: str, cpu: CpuInfo, shim_built: bool) -> tuple:
    """The backend to try for requested on cpu, and why, before any self-test."""
    default = "mkl" if cpu.vendor == "GenuineIntel" else "onednn"
    if requested == "onednn":
        return "onednn", "asked for"
    if requested == "auto" and "CT2_USE_MKL" in os.environ:
        return "ctranslate2 default", "CT2_USE_MKL is set in the environment"
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return "ctranslate2 default", "pyg-edge's MKL override is for x86-64 Linux"
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


def selftest_verdict(backend: str, cpu: CpuInfo) -> dict:
    """The self-test's verdict for backend on this CPU, from the cache or a fresh run."""
    key = _cache_key(backend, cpu)
    cache_file = cache_dir() / "gemm-selftest.json"
    cached = _read_json(cache_file)
    if key in cached:
        return {**cached[key], "cached": True}
    verdict = run_selftest(backend)
    if verdict.get("ok") is not None:
        cached[key] = verdict
        _write_json_atomic(cache_file, cached)
    return verdict


def run_selftest(backend: str) -> dict:
    """Runs pyg_edge.cpu.gemm_selftest in a child process; a crash there is a failed verdict."""
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT2_")}
    try:
        done = subprocess.run([sys.executable, "-m", "pyg_edge.cpu.gemm_selftest", backend],
                              capture_output=True, text=True, env=env,
                              timeout=SELFTEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"no answer in {SELFTEST_TIMEOUT_S} s"}
    seconds = round(time.monotonic() - started, 2)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "seconds": seconds,
                "detail": f"the self-test process ended with code {done.returncode}: {tail}"}
    return {**json.loads(lines[-1]), "seconds": seconds}


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


def _cache_key(backend: str, cpu: CpuInfo) -> str:
    """Changes with the CPU, the ctranslate2 library and the extension's build."""
    try:
        library = ctranslate2_libraries()[0]
        library_id = f"{library.name}:{library.stat().st_size}"
    except PygEdgeError:
        library_id = "none"
    shim = shim_path()
    shim_id = hashlib.sha256(shim.read_bytes()).hexdigest()[:16] if shim else "none"
    flags = hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:16]
    return "|".join([backend, cpu.vendor, cpu.model, flags, library_id, shim_id])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:  # a read-only home only costs a self-test per process
        logger.info("cannot cache the GEMM self-test in %s: %s", path, error)
