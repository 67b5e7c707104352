"""The CUDA paths against the fixtures: run `pytest -m cuda` on a machine with a GPU.

Every test here skips when CTranslate2 sees no CUDA device; none of them has run on a GPU
yet (no machine with one was at hand when they were written).
"""

import json

import numpy as np
import pytest

from pyg_edge.chat.characters import load_character
from pyg_edge.chat.session import ChatSession
from pyg_edge.cpu.backend_choice import load_ctranslate2
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.prefill import exact_cut
from pyg_edge_convert import convert_checkpoint
from scoring import scoring_generator
from support.paths import CHECKPOINT_NAMES, CHECKPOINTS, reference

ctranslate2 = load_ctranslate2()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ctranslate2.get_cuda_device_count() == 0, reason="no CUDA GPU"),
]

# (quantization, compute type, largest |logit - reference| or None, least top-1 agreement)
COMPUTE_TYPES = [
    ("float32", "float32", 1e-3, 1.0),
    ("float16", "float16", 0.05, 0.95),
    ("bfloat16", "bfloat16", 0.3, 0.9),
    ("int8_float16", "int8_float16", None, 0.85),
    ("int8_bfloat16", "int8_bfloat16", None, 0.85),
    ("int8", "int8_float32", None, 0.85),
]


def to_numpy(storage):
    """A forward_batch result on the GPU, as float32 numpy."""
    storage = storage.to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
    return np.array(storage)


@pytest.mark.parametrize("quantization, compute_type, tolerance, agreement", COMPUTE_TYPES)
@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_cuda_logits_match_transformers(converted, name, quantization, compute_type,
                                        tolerance, agreement):
    ref = reference(name)
    model = scoring_generator(converted(name, quantization), ctranslate2, device="cuda",
                              compute_type=compute_type)
    logits = to_numpy(model.forward_batch([ref["prompt"].tolist()]))[0]
    assert (logits.argmax(-1) == ref["logits"].argmax(-1)).mean() >= agreement
    if tolerance:
        assert np.abs(logits - ref["logits"]).max() < tolerance


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_cuda_float32_greedy_tokens_match_transformers(converted, name):
    ref = reference(name)
    folder = converted(name)
    vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    model = ctranslate2.Generator(str(folder), device="cuda", compute_type="float32")
    length = len(ref["greedy"])
    result = model.generate_batch([[vocabulary[i] for i in ref["prompt"]]], max_length=length,
                                  min_length=length, include_prompt_in_result=False)
    assert result[0].sequences_ids[0] == ref["greedy"].tolist()


def test_cuda_chunked_prompt_passes_match_transformers(tmp_path):
    """The prefill chunk (pyg_edge.generation.prefill) on the GPU: two chunks, prefix + rest."""
    name, chunk = "neo_w16_safetensors_f32", 50
    convert_checkpoint(str(CHECKPOINTS / name), str(tmp_path / "m"), "float32",
                       prefill_chunk=chunk)
    ref = reference(name)
    ids = ref["prompt"].tolist()
    vocabulary = json.loads((tmp_path / "m" / "vocabulary.json").read_text())
    model = ctranslate2.Generator(str(tmp_path / "m"), device="cuda", compute_type="float32")
    for total, wanted in ((chunk + 20, 0), (len(ids), 0), (len(ids), 20)):
        cut = exact_cut(total, wanted, chunk)
        tokens = [vocabulary[i] for i in ids[:total]]
        result = model.generate_batch([tokens[cut:]], static_prompt=tokens[:cut] or None,
                                      max_length=1, return_logits_vocab=True,
                                      include_prompt_in_result=False)
        logits = to_numpy(result[0].logits[0][0])
        assert np.abs(logits - ref["logits"][total - 1]).max() < 1e-3


def test_pyg_model_on_cuda_generates_as_on_cpu(converted):
    folder = converted("neo_w16_safetensors_f32")
    prompt = "You: hello there\nAqua:"
    texts = []
    for device in ("cuda", "cpu"):
        with PygModel(folder, device=device, compute_type="float32") as model:
            texts.append(model.generate(prompt, temperature=0, max_new_tokens=40))
            assert model.device == device
    assert texts[0] == texts[1]


def test_auto_device_picks_cuda_and_a_chat_turn_runs(converted, tmp_path):
    card = tmp_path / "aqua.json"
    card.write_text(json.dumps({"char_name": "Aqua", "char_persona": "A goddess.",
                                "char_greeting": "Hi!", "world_scenario": "",
                                "example_dialogue": ""}))
    with PygModel(converted("neo_w16_safetensors_f32", "int8"), device="auto") as model:
        assert (model.device, model.compute_type) == ("cuda", "int8_float16")
        session = ChatSession(model, load_character(card))
        reply = "".join(session.send("Hello!"))
        assert model.last_generation.new_tokens > 0 and session.history[-1].text == reply.strip()
