"""The int8 path this process runs: chosen, proven exact, and replaced when it is not.

CTranslate2's CPU backend is fixed when its library loads (static initialisers read
CT2_USE_MKL), so the choice is made once per process, before the first `import ctranslate2`
anywhere in pyg-edge: every module gets CTranslate2 through load_ctranslate2().

A backend is used for int8 only after two checks, each in a process of its own and cached
(pyg_edge.cpu.verdicts): the extension's self-test of its products (gemm_selftest, for
pyg-edge's own backends) and the path check of what CTranslate2 computes with it
(path_check, for every backend). When the planned backend fails, the next that can run on
this CPU is tried; when none is exact, int8 models run in a compute type that is (float32
where memory allows, int16 where this CTranslate2 has it: pyg_edge.generation.compute_types
picks), with a warning that names the CPU, what failed and what runs instead. When
ctranslate2 was imported before pyg-edge could choose, the path check runs in this process,
on whatever the host set up.
"""

import logging
import os
import sys
from dataclasses import dataclass

from pyg_edge.cpu import gemm_backend, path_check, verdicts
from pyg_edge.cpu.gemm_backend import AVX2_FLAGS, SHIM_SETTINGS, CpuInfo

logger = logging.getLogger("pyg_edge")

# Compute types that replace int8 where no int8 path is exact, in the order tried. float32
# first: on the 2.7B shape (Intel Xeon, benchmarks/bench_compute_types.py) it decodes
# faster than int16 (2.05 against 1.60 tokens/s; int8 5.82), and it is the int8 weights'
# own numbers, where int16 requantizes them and clamps activations at +-32.767.
FALLBACK_TYPES = ("float32", "int16")
SELFTEST = "pyg_edge.cpu.gemm_selftest"
PATH_CHECK = "pyg_edge.cpu.path_check"


@dataclass(frozen=True)
class GemmChoice:
    """The backend this process runs, and what is proven on it.

    Attributes:
      backend: "onednn", "mkl" (CTranslate2's own choice on Intel), "mkl-vnni",
        "exact-vnni", "exact-avx2", or "ctranslate2 default" when pyg-edge left it alone.
      reason: One line on why.
      selftest: The extension's self-test verdict, where one ran or was read from the cache.
      path_check: The int8 path check's verdict (None: not checked).
      exact_types: For int8 weights on the CPU, the compute types proven exact here, best
        first: ("int8",), or the fallbacks that passed when int8 did not.
      failures: What failed before this choice, one line each.
    """

    backend: str
    reason: str
    selftest: dict | None = None
    path_check: dict | None = None
    exact_types: tuple = ()
    failures: tuple = ()

    @property
    def int8_exact(self) -> bool:
        return "int8" in self.exact_types

    def verdict(self) -> dict:
        """What `pyg-edge info` and the server's /api/extra/perf show."""
        check = self.path_check or {}
        return {"backend": self.backend, "int8_exact": self.int8_exact,
                "exact_types": list(self.exact_types),
                "detail": "; ".join(self.failures) or check.get("detail", "not checked")}


_choice: GemmChoice | None = None


def load_ctranslate2(requested: str | None = None):
    """Chooses the GEMM backend once per process, then imports and returns ctranslate2.

    Args:
      requested: One of gemm_backend.CHOICES; None reads PYG_EDGE_GEMM (default "auto").
        Only the first call in a process decides.

    Raises:
      PygEdgeError: requested is not a backend this machine has.
    """
    global _choice
    requested = requested or os.environ.get(gemm_backend.ENV) or "auto"
    if _choice is None:
        gemm_backend.check_request(requested)
        cpu = gemm_backend.read_cpu()
        _choice = choose(requested, cpu)
        unmet = requested != "auto" and requested != _choice.backend
        (logger.warning if unmet else logger.info)(
            "GEMM backend: %s (%s)", _choice.backend, _choice.reason)
        if not _choice.int8_exact:
            logger.warning("%s", inexact_warning(_choice, cpu))
    elif requested not in ("auto", _choice.backend):
        logger.warning("GEMM backend %s asked for, but this process already runs %s",
                       requested, _choice.backend)
    import ctranslate2

    return ctranslate2


def current_choice() -> GemmChoice | None:
    """The choice load_ctranslate2 made, or None before the first model loads."""
    return _choice


def choose(requested: str, cpu: CpuInfo) -> GemmChoice:
    """Plans, proves and sets up the backend (ctranslate2 not imported yet, or too late)."""
    if "ctranslate2" in sys.modules:
        return checked_in_process()
    planned, reason = gemm_backend.plan(requested, cpu, gemm_backend.shim_path() is not None)
    build = gemm_backend.build_id()  # hashes the extension: once per choice
    failures = []
    for backend in candidates(planned, requested, cpu):
        selftest, check, failure = prove(backend, cpu, build)
        if failure is None:
            gemm_backend.apply_backend(backend)
            if failures:
                reason = f"{'; '.join(failures)}: running {backend}"
            return GemmChoice(backend, reason, selftest, check, ("int8",), tuple(failures))
        failures.append(failure)
    keep_planned = (requested != "auto" and not gemm_backend.uses_extension(planned)
                    or "CT2_USE_MKL" in os.environ)
    fallback = planned if keep_planned else gemm_backend.default_backend(cpu)
    exact = tuple(compute_type for compute_type in FALLBACK_TYPES
                  if verdicts.cached_verdict(PATH_CHECK, (fallback, compute_type), cpu,
                                             build).get("ok"))
    gemm_backend.apply_backend(fallback)
    return GemmChoice(fallback, f"no exact int8 path: {'; '.join(failures)}", None,
                      None, exact, tuple(failures))


def candidates(planned: str, requested: str, cpu: CpuInfo) -> list:
    """The backends to try for int8, in order: the planned one, then (when auto chose, or the
    planned one needs the extension) the extension's AVX2 kernel and CTranslate2's default;
    only the planned one when the user set CT2_USE_MKL (their choice is not overridden)."""
    found = [planned]
    if "CT2_USE_MKL" in os.environ:
        return found
    if requested == "auto" and gemm_backend.on_x86_linux() and gemm_backend.shim_path() \
            and cpu.has(AVX2_FLAGS):
        found.append("exact-avx2")
    if requested == "auto" or gemm_backend.uses_extension(planned):
        found.append(gemm_backend.default_backend(cpu))
    return list(dict.fromkeys(found))


def prove(backend: str, cpu: CpuInfo, build: str) -> tuple:
    """(self-test verdict, path check verdict, None or why backend is not exact here)."""
    selftest = None
    if gemm_backend.uses_extension(backend):
        selftest = verdicts.cached_verdict(SELFTEST, (backend,), cpu, build)
        if not selftest.get("ok"):
            return selftest, None, f"{backend} failed its self-test ({selftest.get('detail')})"
    check = verdicts.cached_verdict(PATH_CHECK, (backend, "int8"), cpu, build)
    if not check.get("ok"):
        return selftest, check, f"{backend} failed the int8 path check ({check.get('detail')})"
    return selftest, check, None


def checked_in_process() -> GemmChoice:
    """ctranslate2 came first: its backend is the host's; check int8, then the fallbacks,
    here (a tiny model, about 0.1 s each), since a child process would not run what the
    host set up."""
    import ctranslate2

    reason = ("ctranslate2 was imported before pyg-edge could choose its GEMM backend; to "
              "let it choose, call pyg_edge.cpu.prepare() before importing ctranslate2")
    check = path_check.check(ctranslate2, "int8")
    if check["ok"]:
        return GemmChoice("ctranslate2 default", reason, None, check, ("int8",))
    exact = tuple(t for t in FALLBACK_TYPES if path_check.check(ctranslate2, t)["ok"])
    failure = f"ctranslate2 default failed the int8 path check ({check['detail']})"
    return GemmChoice("ctranslate2 default", reason, None, check, exact, (failure,))


def inexact_warning(choice: GemmChoice, cpu: CpuInfo) -> str:
    """One line: the CPU, what failed, and what int8 models run in instead."""
    instead = (f"int8 models run in {' or '.join(choice.exact_types)} (slower, more memory: "
               "docs/runtime.md)" if choice.exact_types else "no exact compute type passed")
    return (f"int8 is not exact on this CPU ({cpu.model or cpu.vendor or 'unknown'}): "
            f"{'; '.join(choice.failures)}. {instead}; allow_inexact=True (--allow-inexact) "
            "runs int8 anyway")


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
