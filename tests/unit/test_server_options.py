"""The pure parts of request handling: clamping client numbers, fitting raw prompts."""

import pytest

from pyg_edge.chat.fitting import fit_prompt
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server.parsing import BadRequest, Limits, Notes, field, fit_context, sampling_options

LIMITS = Limits(context_length=512, max_new_tokens=100, vocab_size=50257)


def options(notes=None, context=512, **raw):
    return sampling_options(SamplingOptions(), LIMITS, context,
                            Notes() if notes is None else notes, **raw)


def test_in_range_values_pass_unchanged_and_unnoted():
    notes = Notes()
    got = options(notes, max_new_tokens=80, temperature=0.7, top_k=40, top_p=0.5,
                  repetition_penalty=1.2, seed=5, stop=["\nUser:"])
    assert (got.max_new_tokens, got.temperature, got.top_k, got.top_p) == (80, 0.7, 40, 0.5)
    assert (got.repetition_penalty, got.seed, got.stop) == (1.2, 5, ("\nUser:", "\nYou:"))
    assert notes == []


def test_a_pygmalion_user_line_ends_every_reply_whatever_the_client_calls_the_user():
    """The model learned "You:" for the user; SillyTavern's prompt says "User:"."""
    assert options(Notes(), stop=[]).stop == ("\nYou:",)
    assert options(Notes(), stop=["\nYou:", "\nAnon:"]).stop == ("\nYou:", "\nAnon:")


@pytest.mark.parametrize("raw, name, value, noted", [
    ({"seed": -1}, "seed", None, False),
    ({"seed": 2**32 + 5}, "seed", 6, False),  # CTranslate2 seeds are 32-bit
    ({"top_k": -1}, "top_k", 0, False),
    ({"top_k": 60000}, "top_k", 0, False),
    ({"top_p": 0.0}, "top_p", 1.0, False),
    ({"top_p": 2.0}, "top_p", 1.0, True),
    ({"temperature": -0.5}, "temperature", 0.0, True),
    ({"repetition_penalty": 0.0}, "repetition_penalty", 1.0, True),
    ({"max_new_tokens": 1000}, "max_new_tokens", 100, True),
    ({"max_new_tokens": 0}, "max_new_tokens", 1, True),
    ({"no_repeat_ngram_size": -3}, "no_repeat_ngram_size", 0, False),
])
def test_out_of_range_values_are_clamped(raw, name, value, noted):
    notes = Notes()
    assert getattr(options(notes, **raw), name) == value
    assert bool(notes) == noted


def test_a_reply_always_leaves_room_for_a_prompt():
    notes = Notes()
    assert options(notes, context=64, max_new_tokens=60).max_new_tokens == 48
    assert "context of 64" in notes[0]
    assert options(context=64).max_new_tokens == 48  # the default, lowered without a note


def test_a_context_larger_than_the_model_is_lowered_and_a_tiny_one_refused():
    notes = Notes()
    assert fit_context(8192, LIMITS, notes, "truncation_length") == 512
    assert "truncation_length 8192" in notes[0]
    assert fit_context(None, LIMITS, notes, "x") == 512 and fit_context(300, LIMITS, notes,
                                                                        "x") == 300
    with pytest.raises(BadRequest, match="at least 32"):
        fit_context(10, LIMITS, Notes(), "max_context_length")


def test_field_clamps_only_when_asked():
    with pytest.raises(BadRequest, match="expected 0 to 5"):
        field({"x": 9}, "x", int, low=0, high=5)
    notes = Notes()
    assert field({"x": 9}, "x", int, low=0, high=5, clamp=notes) == 5 and notes


@pytest.fixture(scope="module")
def tokenizer(gpt2_tokenizer):
    return gpt2_tokenizer


def test_a_prompt_that_fits_is_left_alone(tokenizer):
    notes = Notes()
    assert fit_prompt(tokenizer, "You: hi\nAqua:", 50, notes, memory="[Aqua]\n") == (
        "[Aqua]\nYou: hi\nAqua:")
    assert notes == []


def test_memory_stays_in_front_and_the_prompt_is_cut_from_the_left(tokenizer):
    prompt = "".join(f"You: line {i}\nAqua: reply {i}\n" for i in range(100)) + "Aqua:"
    fitted = fit_prompt(tokenizer, prompt, 120, Notes(), memory="[Memory: Aqua]\n")
    assert fitted.startswith("[Memory: Aqua]\n") and fitted.endswith("reply 99\nAqua:")
    assert tokenizer.count(fitted) <= 120


def test_memory_longer_than_the_room_is_cut_too(tokenizer):
    fitted = fit_prompt(tokenizer, "You: hi\nAqua:", 20, Notes(), memory="word " * 100)
    assert tokenizer.count(fitted) <= 20


def test_a_pygmalion_persona_is_kept_unless_it_takes_over_half_the_room(tokenizer):
    history = "".join(f"You: line {i}\nAqua: reply {i}\n" for i in range(100)) + "Aqua:"
    head = "Aqua's Persona: a goddess of water.\n<START>\n"
    fitted = fit_prompt(tokenizer, head + history, 100, Notes())
    assert fitted.startswith(head) and fitted.endswith("reply 99\nAqua:")
    long_head = "Aqua's Persona: " + "water " * 80 + "\n<START>\n"
    fitted = fit_prompt(tokenizer, long_head + history, 100, Notes())
    assert not fitted.startswith("Aqua's Persona:") and tokenizer.count(fitted) <= 100
