"""Shared fixtures: the tiny reference checkpoints and their converted models.

The lanes: unit/ (no model, no CTranslate2: seconds), runtime/, server/, packaging/.
Tests run what users run: before the first module of a model lane is imported (some
import ctranslate2 themselves), pyg-edge makes its process-wide settings, choosing
CTranslate2's GEMM backend (pyg_edge.cpu.setup.prepare), with its self-test verdict and
other per-user files in a folder of this run's own.
"""

import os
import tempfile

import pytest

from support.paths import CHECKPOINTS, TESTS

os.environ.setdefault("PYG_EDGE_CACHE", tempfile.mkdtemp(prefix="pyg-edge-test-cache-"))
MODEL_LANES = ("runtime", "server", "packaging")


def pytest_collectstart(collector):
    path = getattr(collector, "path", None)
    if path is None or not isinstance(collector, pytest.Module):
        return
    if path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in MODEL_LANES:
        from pyg_edge.cpu.setup import prepare

        prepare()


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Returns converted(name, quantization, prefill_chunk): a model folder, converted once
    per session. prefill_chunk None is the converter's default (half the context), as users
    get it; such a model's forward_batch needs benchmarks/scoring.py past the chunk."""
    from pyg_edge_convert import convert_checkpoint

    cache = {}

    def convert(name: str, quantization: str = "float32", prefill_chunk=None):
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
    from pyg_edge_convert import convert_checkpoint

    folder = tmp_path_factory.mktemp("demo") / "model"
    convert_checkpoint(str(demo.DEMO_CHECKPOINT), str(folder), "int8")
    with PygModel(folder, device="cpu") as model:
        yield model
