"""PygModel.stream with n: several replies from one prompt pass, each with its own stops."""

import threading
import time

import pytest

from pyg_edge.chat.prompt import Prompt
from pyg_edge.errors import ModelLoadError
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.replies import MAX_REPLIES, _Reply
from pyg_edge.generation.sampling import SamplingOptions

PROMPT = "You: Tell me about the sea, the ships and the harbour.\nAqua:"
SAMPLED = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                          banned=(), max_new_tokens=30)


def chat_prompt(model, text=PROMPT, stops=(), static=""):
    return Prompt(text, stop_strings=stops, static_prefix=static,
                  token_count=model.tokenizer.count(text))


def test_each_reply_ends_at_its_own_stop_string_trimmed(tiny_model):
    stops = ("e", "a ")  # frequent in the tiny model's text: every reply meets one
    replies = tiny_model.stream(chat_prompt(tiny_model, stops=stops), SAMPLED,
                                seed=4, n=3)
    streamed = "".join(replies)
    assert streamed == replies.texts[0]
    for text in replies.texts:
        assert text and text == text.strip()
        assert not any(stop in text for stop in stops)
        assert not text.endswith("a")  # "a" then " " would be a stop fragment held back
    assert replies.finish_reasons == ["stop"] * 3
    # One reply stopping does not stop the others: they end at different lengths.
    assert len(set(replies.new_tokens)) > 1
    assert tiny_model.last_generation.new_tokens == sum(replies.new_tokens)


def test_a_reply_cut_by_its_stop_string_is_its_text_up_to_the_stop(tiny_model):
    ids = tiny_model.tokenizer.encode(" Hello there, sailor.\nYou: Ahoy!")
    reply = _Reply(tiny_model.tokenizer.stream_decoder(), ("\nYou:",), trim=True)
    shown = [reply.step(i, False, eos=-1) for i in ids]
    assert "".join(shown) == "Hello there, sailor." and reply.reason == "stop"
    assert not any("\n" in piece for piece in shown)  # the stop's start was never shown


def test_the_same_seed_gives_the_same_replies(tiny_model):
    first = tiny_model.stream(PROMPT, SAMPLED, seed=21, n=3).wait()
    second = tiny_model.stream(PROMPT, SAMPLED, seed=21, n=3).wait()
    other = tiny_model.stream(PROMPT, SAMPLED, seed=22, n=3).wait()
    assert first == second and first != other
    assert len(set(first)) == 3  # sampled independently, not copies


@pytest.mark.parametrize("greedy", [{"temperature": 0}, {"top_k": 1}])
def test_greedy_options_give_copies_of_the_greedy_reply(tiny_model, greedy):
    # CTranslate2 refuses num_hypotheses > 1 without sampling; greedy replies are equal anyway.
    expected = tiny_model.generate(PROMPT, SAMPLED, temperature=0)
    replies = tiny_model.stream(PROMPT, SAMPLED, **greedy, n=3)
    assert "".join(replies) == expected and replies.texts == [expected] * 3
    assert tiny_model.last_generation.new_tokens == 3 * replies.new_tokens[0]


def test_a_cached_static_prefix_gives_the_same_replies(tiny_model):
    persona = "Aqua's Persona: A goddess of water who loves parties.\n<START>\n"
    cached = chat_prompt(tiny_model, persona + PROMPT, static=persona)
    uncached = chat_prompt(tiny_model, persona + PROMPT)
    expected = tiny_model.stream(uncached, SAMPLED, seed=3, n=3).wait()
    assert tiny_model.stream(cached, SAMPLED, seed=3, n=3).wait() == expected
    assert tiny_model.last_generation.cached_tokens > 0


def test_cancel_stops_every_reply(tiny_model):
    cancel = threading.Event()
    replies = tiny_model.stream(PROMPT, SAMPLED, cancel=cancel, max_new_tokens=100,
                                min_new_tokens=50, n=3)  # no reply ends by itself
    for count, _ in enumerate(replies, start=1):
        if count == 2:
            cancel.set()
    assert replies.finish_reasons == ["cancelled"] * 3
    assert max(replies.new_tokens) < 10


def test_after_cancel_no_piece_comes_even_if_the_model_ran_ahead(tiny_model):
    # The tiny model generates far faster than this reader: pieces queue up unread.
    cancel = threading.Event()
    replies = tiny_model.stream(PROMPT, SAMPLED, cancel=cancel, max_new_tokens=60,
                                min_new_tokens=60, n=3)
    next(iter(replies))
    time.sleep(0.5)  # meanwhile the model writes pieces nobody reads yet
    cancel.set()
    assert list(replies) == []


def test_stopping_iteration_stops_the_others_and_frees_the_model(tiny_model):
    replies = tiny_model.stream(PROMPT, SAMPLED, max_new_tokens=100,
                                min_new_tokens=50, n=2)
    next(iter(replies))
    replies.close()
    assert replies.finish_reasons == ["cancelled", "cancelled"]
    assert tiny_model.generate(PROMPT, SAMPLED, max_new_tokens=3) is not None  # not locked


def test_replies_that_reach_max_new_tokens_say_length(tiny_model):
    replies = tiny_model.stream(PROMPT, SAMPLED, max_new_tokens=4, min_new_tokens=4, n=2)
    replies.wait()
    assert replies.finish_reasons == ["length", "length"] and replies.new_tokens == [4, 4]


@pytest.mark.parametrize("n", [0, -1, MAX_REPLIES + 1, 10**6, 2.0, True, "3", None])
def test_a_bad_number_of_replies_is_refused_at_once(tiny_model, n):
    with pytest.raises(ValueError, match=f"expected a whole number from 1 to {MAX_REPLIES}"):
        tiny_model.stream(PROMPT, n=n)


def test_a_closed_model_says_so(converted):
    model = PygModel(converted("neo_w16_safetensors_f32"), device="cpu")
    model.close()
    with pytest.raises(ModelLoadError, match="was closed"):
        model.stream(PROMPT, n=2).wait()
