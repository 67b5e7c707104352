"""The prefill chunk (CTranslate2's decoder-level sliding window) against transformers.

Windows and contexts are scaled so every path runs on the tiny fixtures: one pass, a pass
in two chunks, a static prefix then a dynamic part, and decoding past both. Each path's
logits are compared with transformers' (the reference), and the cuts the runtime avoids
are shown to be wrong, so these tests would notice the scheme breaking.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pyg_edge.cli import main
from pyg_edge.cpu.backend_choice import load_ctranslate2
from pyg_edge.errors import PromptTooLongError
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.prefill import exact_cut, prompt_passes
from pyg_edge_convert import ConversionError, convert_checkpoint
from scoring import clear_prefill_chunk, scoring_generator
from support.paths import CHECKPOINTS, reference

ctranslate2 = load_ctranslate2()
# (checkpoint, chunk): w16's 150-token prompt needs 3 * 50 + 1 = 151 >= 150 tokens, so
# every long cut is moved; w24's 160 tokens fit a first pass of 2 * 100.
CASES = [("neo_w16_safetensors_f32", 50), ("neo_w24_bin_sharded_f32_untied", 100)]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """chunked(name, chunk): a float32 conversion with that prefill chunk (0: none)."""
    cache = {}

    def make(name, chunk):
        if (name, chunk) not in cache:
            dest = tmp_path_factory.mktemp("chunked") / f"{name}-{chunk}"
            convert_checkpoint(str(CHECKPOINTS / name), str(dest), "float32",
                               prefill_chunk=chunk)
            cache[name, chunk] = dest
        return cache[name, chunk]

    return make


class Runner:
    """Runs a prompt's passes as PygModel gives them to CTranslate2, returning logits."""

    def __init__(self, folder):
        self.model = ctranslate2.Generator(str(folder), device="cpu", compute_type="float32")
        self.vocabulary = json.loads((folder / "vocabulary.json").read_text())

    def logits(self, ids, cut, steps=1):
        """Logits of each of `steps` greedy steps after ids, with a static prefix of cut."""
        tokens = [self.vocabulary[i] for i in ids]
        result = self.model.generate_batch(
            [tokens[cut:]], static_prompt=tokens[:cut] or None, max_length=steps,
            return_logits_vocab=True, include_prompt_in_result=False)
        return np.array(result[0].logits[0])

    def greedy(self, ids, cut, length):
        tokens = [self.vocabulary[i] for i in ids]
        result = self.model.generate_batch(
            [tokens[cut:]], static_prompt=tokens[:cut] or None, max_length=length,
            min_length=length, include_prompt_in_result=False)  # the reference bans the end
        return result[0].sequences_ids[0]


def paths(total, chunk):
    """(prompt length, wanted cut) pairs covering one pass, two chunks and prefix + rest."""
    return [(chunk, 0), (chunk + chunk // 2, 0), (total, 0), (total, chunk // 3),
            (total, total - chunk // 2), (total, total - 1)]


def test_exact_cut_keeps_both_passes_within_the_limits():
    for total in range(1, 40):
        for cut in range(total):
            try:
                new = exact_cut(total, cut, 8)
            except PromptTooLongError:
                assert total > 3 * 8 + 1
                continue
            first, rest = prompt_passes(total, new)
            assert (first <= 16 and rest <= 8) if new else rest <= 16
            if (cut == 0 and total - 1 <= 16) or (cut and total - cut - 1 <= 8 and cut <= 16):
                assert new == cut  # an exact cut is kept as it is
    assert exact_cut(100, 30, 0) == 30


def test_a_prompt_with_no_exact_cut_is_refused_clearly():
    with pytest.raises(PromptTooLongError, match="at most 25 exactly"):
        exact_cut(26, 0, 8)


@pytest.mark.parametrize("name, chunk", CASES)
def test_every_planned_path_matches_transformers(chunked, name, chunk):
    ref = reference(name)
    ids = ref["prompt"].tolist()
    runner = Runner(chunked(name, chunk))
    for total, wanted in paths(len(ids), chunk):
        cut = exact_cut(total, wanted, chunk)
        logits = runner.logits(ids[:total], cut)[0]
        error = np.abs(logits - ref["logits"][total - 1]).max()
        assert error < 1e-3, (total, wanted, cut, error)


@pytest.mark.parametrize("name, chunk", CASES)
def test_the_cuts_the_runtime_moves_are_wrong(chunked, name, chunk):
    """Negative control: past the limits CTranslate2's chunks miss earlier tokens."""
    ref = reference(name)
    ids = ref["prompt"].tolist()
    runner = Runner(chunked(name, chunk))
    total = len(ids)
    too_long_rest = total - chunk - 10  # the pass after the prefix is chunk + 9 tokens
    assert exact_cut(total, too_long_rest, chunk) != too_long_rest
    logits = runner.logits(ids, too_long_rest)[0]
    assert np.abs(logits - ref["logits"][-1]).max() > 1e-3
    three_chunks = 2 * chunk + 2  # a first pass of 2 * chunk + 1 tokens
    if three_chunks <= total:
        logits = runner.logits(ids[:three_chunks], 0)[0]
        assert np.abs(logits - ref["logits"][three_chunks - 1]).max() > 1e-3


@pytest.mark.parametrize("name, chunk", CASES)
def test_decoding_past_both_chunks_matches(chunked, name, chunk):
    ref = reference(name)
    ids = ref["prompt"].tolist()
    runner, plain = Runner(chunked(name, chunk)), Runner(chunked(name, 0))
    assert len(ids) + len(ref["greedy"]) > 2 * chunk
    for wanted in (0, len(ids) - 20):
        cut = exact_cut(len(ids), wanted, chunk)
        assert runner.greedy(ids, cut, len(ref["greedy"])) == ref["greedy"].tolist()
        steps = runner.logits(ids, cut, steps=len(ref["greedy"]))
        # The unchunked model matches transformers (test_exactness.py), step by step.
        assert np.abs(steps - plain.logits(ids, cut, steps=len(steps))).max() < 1e-3


def test_pyg_model_moves_the_cut_and_generates_as_the_unchunked_model(chunked):
    name, chunk = CASES[0]
    with PygModel(chunked(name, chunk), device="cpu") as model, \
            PygModel(chunked(name, 0), device="cpu") as plain:
        words = [f"line {i} of {name}" for i in range(60)]
        while len(model.tokenizer.encode(" ".join(words))) > 3 * chunk + 1:
            words.pop()
        text = " ".join(words)
        total = len(model.tokenizer.encode(text))
        assert total > 2 * chunk + 1  # one pass would need three chunks
        replies = []
        for m in (model, plain):
            replies.append(m.generate(text, temperature=0, max_new_tokens=60,
                                      static_tokens=10))
        assert model.last_generation.cached_tokens == exact_cut(total, 10, chunk)
        assert plain.last_generation.cached_tokens == 10
        # The moved prefix was only for this prompt: not cached, so it evicts nothing.
        assert model.cached_prefixes == frozenset() and plain.cached_prefixes
        assert replies[0] == replies[1] and replies[0]
        with pytest.raises(PromptTooLongError, match="prefill chunk 50"):
            model.generate(text + " and more words at the end", max_new_tokens=1)


@pytest.mark.parametrize("name, chunk", CASES[:1])
def test_scoring_generator_reads_past_the_chunk(chunked, name, chunk):
    ref = reference(name)
    folder = chunked(name, chunk)
    with pytest.raises(ValueError, match="buffer to copy"):
        Runner(folder).model.forward_batch([ref["prompt"].tolist()])
    scorer = scoring_generator(folder, device="cpu", compute_type="float32")
    logits = np.array(scorer.forward_batch([ref["prompt"].tolist()]))[0]
    assert np.abs(logits - ref["logits"]).max() < 1e-3
    assert (folder / "model.bin").read_bytes().count(b"decoder/sliding_window") == 1


def test_metadata_records_the_chunk_and_bad_chunks_are_refused(chunked, tmp_path):
    name, chunk = CASES[0]
    metadata = json.loads((chunked(name, chunk) / "pyg_edge.json").read_text())
    assert metadata["prefill_chunk"] == chunk
    assert json.loads((chunked(name, 0) / "pyg_edge.json").read_text())["prefill_chunk"] == 0
    with pytest.raises(ConversionError, match="expected an integer"):
        convert_checkpoint(str(CHECKPOINTS / name), str(tmp_path / "a"), prefill_chunk=-1)
    with pytest.raises(ConversionError, match="exact local attention"):
        convert_checkpoint(str(CHECKPOINTS / name), str(tmp_path / "b"),
                           exact_local_attention=False, prefill_chunk=64)
    with pytest.raises(ValueError, match="no decoder/sliding_window"):
        clear_prefill_chunk(bytearray((chunked(name, 0) / "model.bin").read_bytes()))


def test_the_default_chunk_is_half_the_context(converted, tmp_path):
    name = "neo_w32_bin_f16"
    context = json.loads((CHECKPOINTS / name / "config.json").read_text())[
        "max_position_embeddings"]
    metadata = json.loads((converted(name) / "pyg_edge.json").read_text())
    assert metadata["context_length"] == context and metadata["prefill_chunk"] == context // 2
    assert (converted(name) / "model.bin").read_bytes().count(b"decoder/sliding_window") == 1
    # Without exact local attention there is no chunk by default (it needs exactness).
    convert_checkpoint(str(CHECKPOINTS / name), str(tmp_path / "m"), "float32",
                       exact_local_attention=False)
    assert json.loads((tmp_path / "m" / "pyg_edge.json").read_text())["prefill_chunk"] == 0


def test_convert_cli_takes_a_prefill_chunk(tmp_path):
    name = CASES[0][0]
    for option, chunk in ((["--prefill-chunk", "64"], 64), (["--prefill-chunk", "0"], 0),
                          ([], 128)):  # the default: half of the 256-token context
        dest = tmp_path / f"m{chunk}"
        result = CliRunner().invoke(main, ["convert", str(CHECKPOINTS / name), str(dest),
                                           "-q", "float32", *option])
        assert result.exit_code == 0, result.output
        assert json.loads((dest / "pyg_edge.json").read_text())["prefill_chunk"] == chunk
    bad = CliRunner().invoke(main, ["convert", str(CHECKPOINTS / name), str(tmp_path / "n"),
                                    "--prefill-chunk", "-5"])
    assert bad.exit_code != 0 and "prefill-chunk" in bad.output
