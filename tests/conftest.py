"""Shared fixtures: the tiny reference checkpoints and their converted models."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pyg_edge.cpu.gemm_backend import load_ctranslate2
from pyg_edge_convert import convert_checkpoint

# Tests run what users run: pyg-edge chooses CTranslate2's GEMM backend before any test
# module imports ctranslate2 (the choice is per process), with its self-test verdict and
# other per-user files in a folder of this run's own.
os.environ.setdefault("PYG_EDGE_CACHE", tempfile.mkdtemp(prefix="pyg-edge-test-cache-"))
load_ctranslate2()

FIXTURES = Path(__file__).parent / "fixtures"
CHECKPOINTS = FIXTURES / "checkpoints"
CHECKPOINT_NAMES = sorted(p.name for p in CHECKPOINTS.iterdir() if p.is_dir())
GPT2_TOKENIZER = Path(__file__).parent.parent / "models" / "gpt2-tokenizer"


def reference(name: str) -> dict:
    """transformers' outputs for a checkpoint (see fixtures/make_reference.py)."""
    with np.load(FIXTURES / f"reference_{name}.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Returns converted(name, quantization, prefill_chunk): a model folder, converted once
    per session. prefill_chunk None is the converter's default (half the context), as users
    get it; such a model's forward_batch needs pyg_edge.generation.scoring past the chunk."""
    cache = {}

    def convert(name: str, quantization: str = "float32", prefill_chunk=None) -> Path:
        key = name, quantization, prefill_chunk
        if key not in cache:
            chunk = "default" if prefill_chunk is None else prefill_chunk
            dest = tmp_path_factory.mktemp("models") / f"{name}-{quantization}-{chunk}"
            convert_checkpoint(str(CHECKPOINTS / name), str(dest), quantization,
                               prefill_chunk=prefill_chunk)
            cache[key] = dest
        return cache[key]

    return convert


@pytest.fixture(scope="session")
def tiny_model(converted):
    """A PygModel on the float32 conversion of the window-16 checkpoint (256-token context)."""
    from pyg_edge.generation.model import PygModel

    with PygModel(converted("neo_w16_safetensors_f32"), device="cpu") as model:
        yield model


@pytest.fixture(scope="session")
def one_pass_tiny_model(converted):
    """tiny_model's checkpoint converted with prefill_chunk=0: prompts read in one pass,
    so the runtime never moves a static/dynamic cut (pyg_edge.generation.prefill.exact_cut)."""
    from pyg_edge.generation.model import PygModel

    with PygModel(converted("neo_w16_safetensors_f32", prefill_chunk=0), device="cpu") as model:
        yield model


@pytest.fixture(scope="session")
def demo_pyg_model(tmp_path_factory):
    """A PygModel on the bundled demo model (trained on the chat format; 512-token context)."""
    from pyg_edge import demo
    from pyg_edge.generation.model import PygModel

    folder = tmp_path_factory.mktemp("demo") / "model"
    convert_checkpoint(str(demo.DEMO_CHECKPOINT), str(folder), "int8")
    with PygModel(folder, device="cpu") as model:
        yield model


@pytest.fixture(scope="module")
def recording(demo_pyg_model):
    """The demo model, recording what the client contract tests' requests made of it."""
    from server_harness import RecordingModel

    return RecordingModel(demo_pyg_model)


@pytest.fixture(scope="module")
def server(recording):
    """A running server on `recording` for one test module (test_server.py has its own)."""
    from pyg_edge.generation.sampling import SamplingOptions
    from server_harness import CLIENT_MAX_LENGTH, RunningServer

    running = RunningServer(recording, max_length=CLIENT_MAX_LENGTH,
                            defaults=SamplingOptions(max_new_tokens=40))
    yield running
    running.stop()
