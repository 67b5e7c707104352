"""The compute type a model folder runs in: the fastest one that is exact on this path.

On the CPU, int8 weights compute in int8 where pyg_edge.cpu.backend_choice proved this
process's int8 path exact. Where it is not (CTranslate2's kernels saturate), they compute in
a fallback type that passed the same check: float32 when this machine has the memory for
it, else int16. A user who insists on the fast, inexact int8 passes allow_inexact.
"""

import logging
import os

from pyg_edge.cpu import backend_choice
from pyg_edge.errors import ModelLoadError

logger = logging.getLogger("pyg_edge")

INT8_TYPES = ("int8", "int8_float32")
# Peak RSS per byte of an int8 model.bin, on the 2.7B shape at 500 tokens (Intel Xeon,
# benchmarks/bench_compute_types.py): float32 11.26 GB, int16 6.06, int8 3.27 for 2.68 GB;
# with room for a long context's key/value cache.
MEMORY_PER_MODEL_BYTE = {"float32": 4.5, "int16": 2.5}
# What inexact int8 costs: a trained model's logits through oneDNN's saturating kernels on
# an AVX2 CPU, against float32 (benchmarks/int8_agreement.py, AMD EPYC).
INEXACT_COST = ("logits up to 2.63 off float32 on the trained demo model, the top token "
                "differing on 3.2% of positions")


def auto_compute_type(quantization: str, device: str) -> str:
    """The fastest compute type for weights of this quantization on this device, before
    any check of the CPU path."""
    if device == "cpu":
        # CTranslate2's CPU backend computes in int8, int16 or float32.
        return "int8" if quantization.startswith("int8") else "float32"
    if quantization.startswith("int8"):
        return "int8_bfloat16" if quantization == "int8_bfloat16" else "int8_float16"
    return {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}[quantization]


def resolve_compute_type(requested: str, quantization: str, device: str, path: str,
                         allow_inexact: bool = False) -> str:
    """The compute type to load path in.

    Args:
      requested: "auto" or a CTranslate2 compute type.
      quantization: The folder's weight type.
      device: "cpu" or "cuda".
      path: The model folder (its model.bin's size decides whether float32 fits).
      allow_inexact: Run int8 on a CPU path that failed the check.

    Raises:
      ModelLoadError: int8 asked for on a path that failed the check, without
        allow_inexact; or no exact fallback fits.
    """
    chosen = auto_compute_type(quantization, device) if requested == "auto" else requested
    choice = backend_choice.current_choice()
    if device != "cpu" or chosen not in INT8_TYPES or choice is None or choice.int8_exact:
        return chosen
    failed = "; ".join(choice.failures) or "the int8 path check failed"
    if allow_inexact:
        logger.warning("running %s in inexact int8 as asked (%s): expect %s", path, failed,
                       INEXACT_COST)
        return chosen
    if requested != "auto":
        raise ModelLoadError(
            f"int8 is not exact on this CPU ({failed}): use compute_type='auto' for an exact "
            f"type, or allow_inexact=True (--allow-inexact) to run int8 anyway, with "
            f"{INEXACT_COST}")
    fallback = fallback_type(choice.exact_types, model_bytes(path), available_memory())
    if fallback is None:
        raise ModelLoadError(
            f"int8 is not exact on this CPU ({failed}) and no exact compute type fits: "
            f"passed {', '.join(choice.exact_types) or 'none'}; allow_inexact=True "
            f"(--allow-inexact) runs int8 anyway, with {INEXACT_COST}")
    logger.warning("running %s in %s instead of int8, which is not exact on this CPU (%s)",
                   path, fallback, failed)
    return fallback


def fallback_type(exact_types: tuple, model_size: int, available: int | None) -> str | None:
    """The first of exact_types (besides int8) that fits in available memory; with the
    memory unknown, the one that needs least."""
    fallbacks = [t for t in exact_types if t in MEMORY_PER_MODEL_BYTE]
    if available is None:
        return min(fallbacks, key=MEMORY_PER_MODEL_BYTE.get, default=None)
    fitting = [t for t in fallbacks if MEMORY_PER_MODEL_BYTE[t] * model_size <= available]
    return fitting[0] if fitting else None


def model_bytes(path: str) -> int:
    try:
        return os.path.getsize(os.path.join(path, "model.bin"))
    except OSError:
        return 0


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable on Linux), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def int8_path_report(device: str, compute_type: str) -> dict:
    """Whether this process's CPU int8 path is exact (pyg_edge.cpu.backend_choice), and
    what a model runs in: backend, int8_exact, exact_types, detail, device, compute_type."""
    choice = backend_choice.current_choice()
    verdict = choice.verdict() if choice else {"detail": "not checked"}
    return {**verdict, "device": device, "compute_type": compute_type}
