"""Loading a model: progress phases, the device, and a probe that the device computes.

On CUDA, CTranslate2 loads a model without touching cuBLAS or cuDNN, so a machine with a
driver but without the CUDA 12 libraries fails only at the first computation (a known
complaint of CTranslate2 and faster-whisper users). A one-token generation right after the
load finds that out: "auto" then falls back to the CPU with a logged reason, "cuda"
raises an error that names the missing library.
"""

import logging
import re
from collections.abc import Callable

from pyg_edge.errors import ModelLoadError

logger = logging.getLogger("pyg_edge")

# The phases a load reports to its progress callback, in order.
CHECKING_CPU = "checking the CPU path"  # the GEMM backend and its self-test (first run)
READING_WEIGHTS = "reading weights"
READY = "ready"
_LIBRARY = re.compile(r"(lib\w+\.so[\d.]*|\w+64_\d+\.dll|cublas\w*|cudnn\w*)", re.IGNORECASE)


def progress_reporter(progress: Callable | None) -> Callable:
    """progress(phase, fraction) that never lets the app's callback break the load."""
    def report(phase: str, fraction: float | None = None) -> None:
        if progress is None:
            return
        try:
            progress(phase, fraction)
        except Exception:  # noqa: BLE001  an app's UI callback must not fail the load
            logger.exception("the load progress callback failed")
    return report


def probe_device(generator, end_token: str) -> str | None:
    """None if a one-token generation runs on generator's device, else the error text."""
    try:
        generator.generate_batch([[end_token]], max_length=1, beam_size=1)
    except (RuntimeError, ValueError, OSError) as error:
        return str(error) or type(error).__name__
    return None


def cuda_error(path: str, failure: str) -> ModelLoadError:
    """The error for a CUDA load whose first computation failed."""
    library = _LIBRARY.search(failure)
    missing = (f"the CUDA library {library.group(1)} is missing or does not load"
               if library else "CUDA cannot compute")
    return ModelLoadError(
        f"cannot run {path} on cuda: {missing} ({failure.splitlines()[0]}); install the "
        "CUDA 12 runtime with cuBLAS (and cuDNN) or pass device='cpu'")
