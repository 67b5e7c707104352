"""Where the test data is, and transformers' reference outputs for the fixture checkpoints."""

import os
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
CHECKPOINTS = FIXTURES / "checkpoints"
CHECKPOINT_NAMES = sorted(p.name for p in CHECKPOINTS.iterdir() if p.is_dir())
GPT2_TOKENIZER = REPO / "models" / "gpt2-tokenizer"
# scoring.py and sillytavern.py, test helpers that are not shipped (pytest's path has them).
BENCHMARKS = REPO / "benchmarks"


def with_benchmarks(env: dict) -> dict:
    """env with benchmarks/ on PYTHONPATH, for a child process that imports its helpers."""
    return {**env, "PYTHONPATH": os.pathsep.join(
        p for p in (str(BENCHMARKS), env.get("PYTHONPATH", "")) if p)}


def venv_python(venv: Path) -> Path:
    """The interpreter of a venv, where each OS puts it."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def home_env(home: Path) -> dict:
    """Variables that make home the user's home folder: HOME, and USERPROFILE, which
    Python reads instead on Windows."""
    return {"HOME": str(home), "USERPROFILE": str(home)}


def reference(name: str) -> dict:
    """transformers' outputs for a checkpoint (see fixtures/make_reference.py)."""
    with np.load(FIXTURES / f"reference_{name}.npz") as data:
        return {key: data[key] for key in data.files}
