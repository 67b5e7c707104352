"""PygModel on a tiny converted model: streaming, stops, bans, seeds, cancel, caching, errors."""

import threading

import pytest

from pyg_edge.chat.prompt import Prompt
from pyg_edge.errors import ModelLoadError, PromptTooLongError
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions
from support.paths import CHECKPOINTS

GREEDY = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(), max_new_tokens=40)
PROMPT = "You: Tell me about the sea, the ships and the harbour.\nAqua:"


def greedy_text(model, prompt=PROMPT, **overrides):
    return model.generate(prompt, GREEDY, **overrides)


def test_stream_pieces_join_to_the_generated_text(tiny_model):
    pieces = list(tiny_model.stream(PROMPT, GREEDY))
    assert len(pieces) > 3 and "".join(pieces) == greedy_text(tiny_model)


def test_a_stop_string_that_spans_tokens_ends_the_reply_before_it(tiny_model):
    ids = tiny_model.tokenizer.encode(greedy_text(tiny_model))
    pieces = [tiny_model.tokenizer.decode([i]) for i in ids]
    boundary = next(i for i in range(3, len(pieces)) if len(pieces[i - 1]) >= 2 and pieces[i])
    stop = pieces[boundary - 1][-2:] + pieces[boundary][:1]
    full = greedy_text(tiny_model)
    text = greedy_text(tiny_model, stop=(stop,))
    assert stop in full and stop not in text
    assert text == full[: full.index(stop)].rstrip()


def test_a_banned_string_is_never_written(tiny_model):
    full = greedy_text(tiny_model)
    banned = full.split()[1]
    assert banned not in greedy_text(tiny_model, banned=(banned,))


def test_a_stop_string_wins_over_a_banned_string_that_contains_it(tiny_model):
    # Like "<START>", banned and a stop by default in chat: the turn must end there, not
    # be pushed into writing something close to it.
    full = greedy_text(tiny_model)
    word = full.split()[2]
    stopped = greedy_text(tiny_model, stop=(word,))
    assert stopped == full[: full.index(word)]
    assert greedy_text(tiny_model, stop=(word,), banned=(word, f"{word} and")) == stopped


def test_the_same_seed_gives_the_same_sampled_text(tiny_model):
    sampled = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=30, seed=11)
    first, second = (tiny_model.generate(PROMPT, sampled) for _ in range(2))
    other = tiny_model.generate(PROMPT, sampled, seed=12)
    assert first == second and first != other


def test_a_seed_given_at_load_repeats_across_loads(converted):
    path = converted("neo_w16_safetensors_f32")
    sampled = SamplingOptions(temperature=1.0, top_k=0, max_new_tokens=30)
    runs = []
    for _ in range(2):
        with PygModel(path, device="cpu", seed=5) as model:
            runs.append([model.generate(PROMPT, sampled) for _ in range(2)])
    assert runs[0] == runs[1] and runs[0][0] != runs[0][1]


def test_cancel_stops_generation_mid_reply(tiny_model):
    cancel = threading.Event()
    pieces = []
    for piece in tiny_model.stream(PROMPT, GREEDY, cancel=cancel, max_new_tokens=100):
        pieces.append(piece)
        if len(pieces) == 2:
            cancel.set()
    assert len(pieces) == 2
    assert len(greedy_text(tiny_model, max_new_tokens=100)) > len("".join(pieces))


def test_a_cached_static_prefix_gives_the_same_tokens(tiny_model):
    persona = "Aqua's Persona: A goddess of water who loves parties and drinks.\n<START>\n"
    prompt_text = persona + "You: hello\nYou: Tell me about the sea.\nAqua:"
    cached = Prompt(prompt_text, static_prefix=persona,
                    token_count=tiny_model.tokenizer.count(prompt_text))
    uncached = Prompt(prompt_text, token_count=cached.token_count)
    expected = tiny_model.generate(uncached, GREEDY)
    assert tiny_model.generate(cached, GREEDY) == expected
    assert tiny_model.generate(cached, GREEDY) == expected  # now served from the cache


def test_an_over_long_prompt_says_what_to_lower(tiny_model):
    with pytest.raises(PromptTooLongError, match="context is 256: shorten the prompt or lower"):
        tiny_model.generate("word " * 250, GREEDY)


def test_unknown_sampling_option_lists_valid_ones(tiny_model):
    with pytest.raises(TypeError, match="unknown sampling option 'temp'; expected one of"):
        tiny_model.generate(PROMPT, temp=0.3)


@pytest.mark.parametrize("field, value", [("temperature", -1), ("top_p", 0), ("max_new_tokens", 0)])
def test_bad_sampling_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**{field: value})


def test_a_folder_that_is_no_converted_model_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="is not a folder"):
        PygModel(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="pyg-edge convert"):
        PygModel(CHECKPOINTS / "neo_w16_safetensors_f32")


def test_auto_picks_cpu_int8_for_an_int8_model(converted):
    with PygModel(converted("neo_w16_safetensors_f32", "int8")) as model:
        assert (model.device, model.compute_type) == ("cpu", "int8")
        assert model.generate(PROMPT, GREEDY, max_new_tokens=5)


def test_generation_stats_count_tokens_and_the_cached_prefix(tiny_model):
    persona = "Aqua's Persona: A goddess of water.\n<START>\n"
    text = persona + "You: hi\nAqua:"
    count = tiny_model.tokenizer.count(text)
    prompt = Prompt(text, static_prefix=persona, token_count=count)
    list(tiny_model.stream(prompt, GREEDY, max_new_tokens=7))
    stats = tiny_model.last_generation
    assert stats.prompt_tokens == count and 0 < stats.cached_tokens < count
    assert tiny_model.tokenizer.decode(tiny_model.tokenizer.encode(text)[:stats.cached_tokens]) \
        == persona
    assert stats.new_tokens <= 7 and 0 < stats.first_token_seconds <= stats.seconds


def test_a_closed_model_says_so(converted):
    model = PygModel(converted("neo_w16_safetensors_f32"), device="cpu")
    model.close()
    with pytest.raises(ModelLoadError, match="was closed"):
        model.generate(PROMPT, GREEDY)


def test_finish_reasons(tiny_model):
    list(tiny_model.stream(PROMPT, GREEDY, max_new_tokens=3))
    assert tiny_model.last_generation.finish_reason == "length"
    full = greedy_text(tiny_model)
    list(tiny_model.stream(PROMPT, GREEDY, stop=(full[5:8],)))
    assert tiny_model.last_generation.finish_reason == "stop"


def test_a_raw_completion_keeps_its_leading_space(tiny_model):
    text = greedy_text(tiny_model)
    assert text == "".join(tiny_model.stream(PROMPT, GREEDY))
    chat = Prompt(PROMPT, token_count=tiny_model.tokenizer.count(PROMPT))
    assert tiny_model.generate(chat, GREEDY) == text.strip()
