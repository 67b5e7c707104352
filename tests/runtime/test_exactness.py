"""Converted models against transformers' GPTNeoForCausalLM, through ctranslate2 alone.

Both prompt paths are checked: the converter's default (a prefill chunk of half the
context, so the reference prompts are read in two chunks; forward_batch goes through
benchmarks/scoring.py) and a one-pass conversion (prefill_chunk=0).
"""

import json

import numpy as np
import pytest

from pyg_edge_convert import convert_checkpoint
from support.exactness import generator, greedy, one_pass_logits, scorer
from support.paths import CHECKPOINT_NAMES, CHECKPOINTS, reference

# None: the converter's default chunk (half the context); 0: one pass.
CHUNKS = [None, 0]


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_float32_logits_match_transformers_on_a_prompt_past_the_window(converted, name, chunk):
    ref = reference(name)
    metadata = json.loads((converted(name, prefill_chunk=chunk) / "pyg_edge.json").read_text())
    assert len(ref["prompt"]) >= 4 * metadata["window_size"]
    logits = one_pass_logits(scorer(converted(name, prefill_chunk=chunk)), ref["prompt"])
    assert logits.shape == ref["logits"].shape
    assert np.abs(logits - ref["logits"]).max() < 1e-3


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_float32_greedy_tokens_match_transformers_past_the_window(converted, name, chunk):
    ref = reference(name)
    folder = converted(name, prefill_chunk=chunk)
    if chunk is None:  # the default's prompt pass really is read in two chunks
        metadata = json.loads((folder / "pyg_edge.json").read_text())
        assert 0 < metadata["prefill_chunk"] < len(ref["prompt"]) - 1
    tokens = greedy(generator(folder), folder, ref["prompt"].tolist(), len(ref["greedy"]))
    assert tokens == ref["greedy"].tolist()


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_int8_agrees_with_float32_on_the_top_token(converted, name):
    ref = reference(name)
    logits = one_pass_logits(scorer(converted(name, "int8"), "int8"), ref["prompt"])
    agreement = (logits.argmax(-1) == ref["logits"].argmax(-1)).mean()
    assert agreement >= 0.85


@pytest.mark.parametrize(
    "quantization, compute_type, tolerance",
    [("float16", "float32", 0.05), ("bfloat16", "float32", 0.3),
     ("int8_float16", "int8", None), ("int8_bfloat16", "int8", None)],
)
def test_other_quantizations_load_and_stay_close(converted, quantization, compute_type, tolerance):
    name = "neo_w16_safetensors_f32"
    ref = reference(name)
    logits = one_pass_logits(scorer(converted(name, quantization), compute_type), ref["prompt"])
    assert (logits.argmax(-1) == ref["logits"].argmax(-1)).mean() >= 0.85
    if tolerance:
        assert np.abs(logits - ref["logits"]).max() < tolerance


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_ctranslate2s_own_sliding_window_misses_the_reference(name, tmp_path):
    """The inexact mode must miss the reference past the window, or these tests test nothing."""
    convert_checkpoint(str(CHECKPOINTS / name), str(tmp_path / "plain"), "float32",
                       exact_local_attention=False)
    ref = reference(name)
    logits = one_pass_logits(generator(tmp_path / "plain"), ref["prompt"])
    window = json.loads((CHECKPOINTS / name / "config.json").read_text())["window_size"]
    assert np.abs(logits[:window] - ref["logits"][:window]).max() < 1e-3
    assert (logits.argmax(-1) != ref["logits"].argmax(-1)).mean() > 0.05
    metadata = json.loads((tmp_path / "plain" / "pyg_edge.json").read_text())
    assert metadata["local_attention"].startswith("inexact")
