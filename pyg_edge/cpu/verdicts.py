"""The CPU path's checks, each run in a process of its own, their verdicts cached.

A kernel that is wrong, or that this CPU cannot run (SIGILL), can then only fail that
process. A verdict is kept per check, CPU (its name, identification and features:
pyg_edge.cpu.identity, so a cache shared between boards, an SD card moved from a Raspberry Pi
4 to a 5 or an NFS home, never lends one board's verdict to another), ctranslate2 build,
extension build and the variables that change which kernels the libraries pick, in the
user's cache folder (cpu-checks.json), so each check runs once per machine and install.
"""

import hashlib
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyg_edge.cpu.identity import this_cpu
from pyg_edge.user_cache import cache_dir

logger = logging.getLogger("pyg_edge")

CHECK_TIMEOUT_S = 300
CACHE_FILE = "cpu-checks.json"
# Variables that change the kernels oneMKL, oneDNN, CTranslate2, Ruy (ARM's int8) or OpenBLAS
# (ARM Linux's float32) pick.
KERNEL_VARIABLES = ("CT2_USE_MKL", "CT2_PACKED_GEMM", "CT2_FORCE_CPU_ISA",
                    "CT2_USE_EXPERIMENTAL_PACKED_GEMM",
                    "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                    "DNNL_MAX_CPU_ISA", "RUY_PATHS", "OPENBLAS_CORETYPE")


def cached_verdict(module: str, args: tuple, cpu, build_id: str) -> dict:
    """The verdict of `python -m module *args`, from the cache or a fresh run.

    Args:
      module: The check's module (pyg_edge.cpu.gemm_selftest or pyg_edge.cpu.path_check).
      args: Its arguments: the backend, and for the path check the compute type.
      cpu: The CpuInfo the verdict holds for.
      build_id: Names the ctranslate2 and extension builds (gemm_backend.build_id).
    """
    key = cache_key(module, args, cpu, build_id)
    cache_file = cache_dir() / CACHE_FILE
    cached = _read_json(cache_file)
    if key in cached:
        return {**cached[key], "cached": True}
    verdict = run_check(module, args)
    if verdict.get("ok") is not None:
        cached[key] = verdict
        _write_json_atomic(cache_file, cached)
    return verdict


def run_check(module: str, args: tuple) -> dict:
    """Runs a check in a child process; a crash there is a failed verdict."""
    started = time.monotonic()
    try:  # the user's variables apply there as here; the backend sets its own
        done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a busy machine, maybe: failed now, not cached
        return {"ok": None, "detail": f"no answer in {CHECK_TIMEOUT_S} s"}
    seconds = round(time.monotonic() - started, 2)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "seconds": seconds, "detail": _ended(done.returncode, tail)}
    return {**json.loads(lines[-1]), "seconds": seconds}


def _ended(code: int, tail: str) -> str:
    """Why a check's process failed: a crash is told apart from an inexact result."""
    if code < 0:  # killed by a signal: the kernels could not run, whatever their numbers
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (an instruction this CPU lacks)" if name == "SIGILL" else ""
        return f"the check's process crashed with {name}{hint}: {tail}"
    return f"the check's process ended with code {code}: {tail}"


def cache_key(module: str, args: tuple, cpu, build_id: str) -> str:
    flags = hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:16]
    variables = ",".join(f"{k}={os.environ[k]}" for k in KERNEL_VARIABLES if k in os.environ)
    return "|".join([module.rsplit(".", 1)[-1], *args, cpu.vendor, cpu.model, flags,
                     this_cpu().key(), build_id, variables])


def ctranslate2_version() -> str:
    try:
        return importlib.metadata.version("ctranslate2")
    except importlib.metadata.PackageNotFoundError:
        return "none"


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
    except OSError as error:  # a read-only home only costs the checks once per process
        logger.info("cannot cache the CPU checks in %s: %s", path, error)
