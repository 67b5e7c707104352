"""Token log-probabilities: what PygModel reports matches the model, and the routes send
them in the shapes SillyTavern 1.12.6 reads with its Token Probabilities panel on."""

import math

import numpy as np
import pytest

from pyg_edge.chat.prompt import Prompt
from pyg_edge.generation.sampling import SamplingOptions
from scoring import scoring_generator
from support.client_payloads import (
    st_chat_custom,
    st_chat_messages,
    st_pygmalion_prompt,
    st_textgen,
)

PROMPT = st_pygmalion_prompt(3)
GREEDY = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(), max_new_tokens=24)


@pytest.fixture(scope="module")
def float32_demo(demo_pyg_model):
    """The demo computed in float32: int8 activations round differently in a prompt pass
    and in decode steps (0.025 apart here), float32 ones agree to a few thousandths."""
    from pyg_edge.generation.model import PygModel

    with PygModel(demo_pyg_model.path, device="cpu", compute_type="float32") as model:
        yield model


def test_greedy_logprobs_match_a_pass_over_prompt_and_reply(float32_demo):
    model = float32_demo
    plain = model.generate(PROMPT, GREEDY)
    pieces = list(model.stream(PROMPT, GREEDY.with_overrides(top_logprobs=3)))
    entries = model.last_generation.token_logprobs
    assert "".join(pieces) == plain  # asking for them changes nothing in the reply
    assert "".join(e.token for e in entries) == plain
    assert sum(len(p.logprobs) for p in pieces) == len(entries) == model.last_generation.new_tokens
    prompt_ids = model.tokenizer.encode(PROMPT)
    ids = prompt_ids + [e.token_id for e in entries]
    scorer = scoring_generator(model.path, device="cpu", compute_type="float32")
    logits = np.array(scorer.forward_batch([model.tokenizer.tokens(ids)]))[0]
    for position, entry in enumerate(entries, start=len(prompt_ids) - 1):
        row = logits[position].astype(np.float64)
        expected = row - row.max() - np.log(np.exp(row - row.max()).sum())
        # a decode step (GEMV, cached keys) and one pass (GEMM) sum in other orders
        assert entry.logprob == pytest.approx(expected[entry.token_id], abs=5e-3)
        assert [i for _, i, _ in entry.top] == list(np.argsort(-expected)[:3])
        assert entry.top[0][1] == entry.token_id  # greedy took the likeliest
        assert entry.top[0][2] == entry.logprob


def test_a_chat_reply_reports_only_the_tokens_it_shows(demo_pyg_model):
    """Leading whitespace is trimmed and the stop line dropped: so are their tokens."""
    prompt = Prompt(text=PROMPT, static_prefix="", token_count=0, stop_strings=("\n",))
    options = GREEDY.with_overrides(top_logprobs=0, max_new_tokens=60)
    text = "".join(demo_pyg_model.stream(prompt, options))
    entries = demo_pyg_model.last_generation.token_logprobs
    assert text and "\n" not in text
    assert "".join(e.token for e in entries).strip() == text
    assert all(e.top == () and e.logprob <= 0 for e in entries)


def test_sampled_tokens_report_their_own_logprob(demo_pyg_model):
    options = SamplingOptions(temperature=1.0, top_p=1.0, seed=7, max_new_tokens=30,
                              top_logprobs=5)
    demo_pyg_model.generate(PROMPT, options)
    for entry in demo_pyg_model.last_generation.token_logprobs:
        tops = [lp for _, _, lp in entry.top]
        assert tops == sorted(tops, reverse=True) and len(tops) == 5
        assert entry.logprob <= tops[0] + 1e-9
        assert sum(math.exp(lp) for lp in tops) <= 1 + 1e-6


def test_out_of_range_top_logprobs_is_refused():
    with pytest.raises(ValueError, match="top_logprobs"):
        SamplingOptions(top_logprobs=21)


# SillyTavern with "Request token probabilities" on (power_user.request_token_probabilities).

def test_chat_completion_custom_gets_openai_chat_logprobs(server):
    messages = st_chat_messages("Aqua is a goddess.", [], "Hi!", ["Hello Aqua!"])
    body = {**st_chat_custom(messages), "logprobs": True, "top_logprobs": 5}  # as its server
    status, reply = server.request("POST", "/v1/chat/completions", body)  # converts 5
    assert status == 200, reply
    choice = reply["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(e["token"] for e in content).strip() == choice["message"]["content"]
    for entry in content:
        assert len(entry["top_logprobs"]) == 5 and entry["logprob"] <= 0
        assert entry["bytes"] == list(entry["token"].encode())


def test_chat_completion_streams_each_chunks_logprobs(server):
    messages = st_chat_messages("Aqua is a goddess.", [], "Hi!", ["Hello Aqua!"])
    body = {**st_chat_custom(messages, stream=True), "logprobs": True, "top_logprobs": 5}
    events = server.events("/v1/chat/completions", body)[:-1]
    pieces = [e for e in events if e["choices"][0]["delta"].get("content")]
    assert pieces
    for event in pieces:  # what parseChatCompletionLogprobs reads from each chunk
        content = event["choices"][0]["logprobs"]["content"]
        assert content and all(len(c["top_logprobs"]) == 5 for c in content)
    text = "".join(e["choices"][0]["delta"]["content"] for e in pieces)
    tokens = "".join(c["token"] for e in events if e["choices"][0].get("logprobs")
                     for c in e["choices"][0]["logprobs"]["content"])
    assert tokens.strip() == text.strip()


def test_text_completion_ooba_streams_top_logprobs_per_chunk(server):
    body = {**st_textgen("ooba", PROMPT, stream=True), "logprobs": 10, "n_probs": 10}
    events = server.events("/v1/completions", body)[:-1]
    shown = [e for e in events if e["choices"][0]["text"]]
    assert shown
    for event in shown:  # parseTextgenLogprobs: logprobs.top_logprobs[0], 10 candidates
        logprobs = event["choices"][0]["logprobs"]
        assert len(logprobs["top_logprobs"][0]) >= 9  # two tokens may share a text
        assert len(logprobs["tokens"]) == len(logprobs["text_offset"])
    text = "".join(e["choices"][0]["text"] for e in events)
    tokens = "".join(t for e in events if e["choices"][0]["logprobs"]
                     for t in e["choices"][0]["logprobs"]["tokens"])
    assert tokens == text


def test_text_completion_without_the_setting_sends_no_logprobs(server):
    status, reply = server.request("POST", "/v1/completions", st_textgen("ooba", PROMPT))
    assert status == 200 and reply["choices"][0]["logprobs"] is None


def test_llamacpp_type_streams_completion_probabilities(server):
    body = {**st_textgen("llamacpp", PROMPT, stream=True), "logprobs": 10, "n_probs": 10}
    events = server.events("/completion", body)
    for event in events[:-1]:
        if event["content"]:
            probabilities = event["completion_probabilities"]
            probs = probabilities[0]["probs"]  # what SillyTavern's llama.cpp type reads
            assert len(probs) == 10 and all(0 < p["prob"] <= 1 for p in probs)
            assert sum(p["prob"] for p in probs) <= 1 + 1e-6
    assert "completion_probabilities" not in events[-1]


def test_llamacpp_non_streamed_reply_has_every_tokens_probabilities(server):
    body = {**st_textgen("llamacpp", PROMPT), "n_probs": 3}
    status, reply = server.request("POST", "/completion", body)
    assert status == 200, reply
    probabilities = reply["completion_probabilities"]
    assert "".join(p["content"] for p in probabilities) == reply["content"]
    assert all(len(p["probs"]) == 3 for p in probabilities)


def test_several_choices_send_no_logprobs_and_say_why(server):
    body = {**st_textgen("vllm", PROMPT), "logprobs": 5, "n": 2}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200, reply
    assert reply["choices"][0]["logprobs"] is None
    assert any("n = 1" in w for w in reply["warnings"])


def test_too_many_alternatives_are_capped_with_a_warning(server):
    body = {**st_textgen("ooba", PROMPT), "logprobs": 50}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200, reply
    assert all(len(t) <= 20 for t in reply["choices"][0]["logprobs"]["top_logprobs"])
    assert any("20 sent" in w for w in reply["warnings"])


def test_a_logprobs_field_of_the_wrong_type_is_a_400(server):
    body = {**st_textgen("ooba", PROMPT), "logprobs": "ten"}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 400 and "logprobs" in str(reply)
