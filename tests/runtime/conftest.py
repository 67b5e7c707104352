"""The runtime lane's fixtures (the models are tests/conftest.py's). Nothing here imports
ctranslate2 at import time: pyg-edge chooses its GEMM backend first (tests/conftest.py)."""

import time

import pytest


@pytest.fixture
def slow_engine(monkeypatch):
    """CTranslate2 with a prompt pass of pass_s and steps of step_s (set on the result)."""
    import ctranslate2

    original = ctranslate2.Generator.generate_tokens
    timing = {"pass_s": 0.0, "step_s": 0.0}

    def generate_tokens(self, *args, **kwargs):
        time.sleep(timing["pass_s"])
        for step in original(self, *args, **kwargs):
            time.sleep(timing["step_s"])
            yield step

    monkeypatch.setattr(ctranslate2.Generator, "generate_tokens", generate_tokens)
    return timing
