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

from pyg_edge.cpu.backend_choice import packs_weights
from pyg_edge.cpu.tuning import release_freed_memory
from pyg_edge.errors import ModelLoadError
from pyg_edge.generation.compute_types import resolve_compute_type
from pyg_edge.generation.model_folder import pick_device

logger = logging.getLogger("pyg_edge")

# The phases a load reports to its progress callback, in order.
CHECKING_CPU = "checking the CPU path"  # the GEMM backend and its self-test (first run)
READING_WEIGHTS = "reading weights"
READY = "ready"
# CTranslate2's "no seed" value: threads seed themselves from std::random_device.
_UNSEEDED = 2**32 - 1
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


class LoadedGenerator:
    """The CTranslate2 generator of one model folder: loaded, seeded, reloaded, freed.

    Args:
      ctranslate2: The ctranslate2 module (after pyg_edge.cpu.setup.prepare).
      path: The converted model folder.
      device, compute_type: Where and in what type it runs ("auto" chooses the type,
        pyg_edge.generation.compute_types).
      quantization: The folder's weight type, for compute_type "auto".
      cpu_threads: Threads for CPU inference; 0 lets CTranslate2 choose.
      allow_inexact: Run int8 on a CPU path that failed pyg-edge's check.

    Attributes:
      generator: The ctranslate2.Generator, None once closed.
      fresh_seed: The seed the generator was loaded with while no call has sampled yet.
    """

    def __init__(self, ctranslate2, path: str, device: str, compute_type: str,
                 quantization: str, cpu_threads: int = 0, allow_inexact: bool = False):
        self._ct2 = ctranslate2
        self.path = path
        self.device = device
        self.compute_type = resolve_compute_type(compute_type, quantization, device, path,
                                                 allow_inexact)
        self._cpu_threads = cpu_threads
        self.generator = None
        self.fresh_seed = None

    def load(self, seed: int | None) -> None:
        """(Re)creates the generator, its sampler seeded with seed if given.

        CTranslate2 seeds each worker thread's random generator once, when that thread
        first samples (OpenNMT/CTranslate2#1757), so a seed only takes effect on a new
        generator: with one worker thread, the same seed then gives the same outputs.
        """
        self.close()
        self._ct2.set_random_seed(_UNSEEDED if seed is None else seed)
        try:
            self.generator = self._ct2.Generator(
                self.path, device=self.device, compute_type=self.compute_type,
                intra_threads=self._cpu_threads, inter_threads=1)
        except (RuntimeError, ValueError) as error:
            raise ModelLoadError(f"cannot load {self.path} on {self.device}: {error}") from None
        self._release_after_load()
        self.fresh_seed = seed

    def reload(self) -> None:
        """Unloads and loads the model again, which empties CTranslate2's prompt cache."""
        self.generator.unload_model()
        self._release_after_load()  # before the load, whose peak may hold two copies
        self.generator.load_model()
        self._release_after_load()

    def close(self) -> None:
        if self.generator is not None:
            self.generator.unload_model()
            self.generator = None
            release_freed_memory()

    def _release_after_load(self) -> None:
        """Returns freed heap memory to the system around a load that packs its weights:
        other loads free little, and the next passes would fault in what they reuse."""
        if self.device != "cpu" or packs_weights():
            release_freed_memory()


def open_generator(ctranslate2, path: str, metadata: dict, device: str, compute_type: str,
                   cpu_threads: int, seed, end_token: str,
                   allow_inexact: bool = False) -> LoadedGenerator:
    """A LoadedGenerator on device ("auto": CUDA when one is visible and computes).

    Raises:
      ModelLoadError: the device cannot load or run the model (for "cuda": naming the
        missing library).
    """
    chosen = pick_device(ctranslate2, device)
    loaded = LoadedGenerator(ctranslate2, path, chosen, compute_type,
                             metadata["quantization"], cpu_threads, allow_inexact)
    loaded.load(seed)
    if chosen != "cuda":
        return loaded
    failure = probe_device(loaded.generator, end_token)
    if failure is None:
        return loaded
    loaded.close()
    if device != "auto":
        raise cuda_error(path, failure)
    logger.warning("CUDA cannot compute (%s): running %s on the CPU", failure, path)
    loaded = LoadedGenerator(ctranslate2, path, "cpu", compute_type, metadata["quantization"],
                             cpu_threads, allow_inexact)
    loaded.load(seed)
    return loaded
