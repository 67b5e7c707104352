"""Contract: SillyTavern's Text Completion types (Default/ooba, KoboldCpp, vLLM, llama.cpp)
get replies from /v1/completions and /completion with their default settings, and the
tokenizer and status routes those types call answer as the client reads them."""

import pytest

from support.client_payloads import st_pygmalion_prompt, st_textgen
from support.server_harness import CLIENT_MAX_LENGTH

LIMIT, CONTEXT = CLIENT_MAX_LENGTH, 512  # the server's --max-length, the demo's context
LONG = st_pygmalion_prompt(120)
SHORT = st_pygmalion_prompt(3)


def prompt_tokens(recording):
    return len(recording.tokenizer.encode(recording.prompt))


@pytest.mark.parametrize("api_type", ["ooba", "koboldcpp", "vllm"])
def test_text_completion_defaults_get_a_reply_on_an_over_long_prompt(server, recording,
                                                                      api_type):
    body = st_textgen(api_type, LONG, max_context=8192, amount_gen=80)
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200, reply
    assert reply["choices"][0]["text"].strip()
    assert recording.options.seed is None and recording.options.top_k == 40
    assert recording.options.max_new_tokens == 80 and "\nUser:" in recording.options.stop
    assert prompt_tokens(recording) <= CONTEXT - 80
    assert recording.prompt.startswith("Aqua's Persona:") and recording.prompt.endswith("Aqua:")
    assert any("cut from the left" in w for w in reply["warnings"])


def test_text_completion_streams(server):
    events = server.events("/v1/completions", st_textgen("ooba", SHORT, stream=True))
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]).strip()


@pytest.mark.parametrize("stream", [False, True])
def test_llamacpp_type_gets_a_reply_from_completion(server, recording, stream):
    body = st_textgen("llamacpp", LONG, max_context=8192, stream=stream)
    if stream:
        events = server.events("/completion", body)
        assert events[-1]["stop"] is True and not any(e["stop"] for e in events[:-1])
        text = "".join(e["content"] for e in events)
    else:
        status, reply = server.request("POST", "/completion", body)
        assert status == 200 and reply["stop"] is True and reply["truncated"] is True
        assert reply["tokens_evaluated"] == prompt_tokens(recording) <= CONTEXT - 80
        assert reply["timings"]["predicted_n"] == reply["tokens_predicted"]
        text = reply["content"]
    assert text.strip()


@pytest.mark.parametrize("sliders, expected", [
    ({"temperature": 5}, {"temperature": 5.0}),
    ({"top_k": -1}, {"top_k": 0}),
    ({"top_k": 10**6}, {"top_k": 0}),  # more than the vocabulary: no limit
    ({"seed": -1, "sampler_seed": -1}, {"seed": None}),
    ({"max_new_tokens": 1000, "max_tokens": 1000}, {"max_new_tokens": LIMIT}),
    ({"top_p": 1.5}, {"top_p": 1.0}),
    ({"do_sample": False}, {"temperature": 0.0}),
])
def test_slider_values_are_clamped_not_refused(server, recording, sliders, expected):
    status, reply = server.request("POST", "/v1/completions",
                                   {**st_textgen("ooba", SHORT), **sliders})
    assert status == 200 and reply["choices"][0]["text"].strip(), reply
    assert {k: getattr(recording.options, k) for k in expected} == expected


def test_a_fixed_seed_repeats_the_completion(server):
    body = {**st_textgen("vllm", SHORT), "seed": 99, "max_tokens": 30}
    first = server.request("POST", "/v1/completions", body)[1]["choices"][0]["text"]
    assert server.request("POST", "/v1/completions", body)[1]["choices"][0]["text"] == first


def test_vllm_n_gets_that_many_choices_and_too_many_an_openai_error(server):
    status, reply = server.request("POST", "/v1/completions",
                                   {**st_textgen("vllm", SHORT), "n": 3, "max_tokens": 8})
    assert status == 200, reply
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] in ("stop", "length") for c in reply["choices"])
    status, reply = server.request("POST", "/v1/completions",
                                   {**st_textgen("vllm", SHORT), "n": 9})
    assert status == 400 and "field 'n' is 9, expected 1 to 8" in reply["error"]["message"]
    assert reply["error"]["type"] == "invalid_request_error"


def test_llamacpp_completion_still_gives_one_reply(server):
    status, reply = server.request("POST", "/completion",
                                   {**st_textgen("llamacpp", SHORT), "n": 2})
    assert status == 400 and "one reply per request" in reply["error"]["message"]


def test_props_and_model_info(server):
    status, props = server.request("GET", "/props")
    assert status == 200 and props["default_generation_settings"]["n_ctx"] == CONTEXT
    status, info = server.request("GET", "/v1/internal/model/info")
    assert status == 200 and info["model_name"].startswith("pyg-edge/")


def test_tokenize_and_detokenize_answer_llamacpp_vllm_and_ooba(server, recording):
    text = "Aqua: Hello there, traveller!"
    ids = recording.tokenizer.encode(text)
    assert server.request("POST", "/tokenize", {"content": text})[1]["tokens"] == ids
    vllm = server.request("POST", "/tokenize", {"model": "x", "prompt": text})[1]
    assert vllm["tokens"] == ids and vllm["count"] == len(ids)
    pieces = server.request("POST", "/tokenize", {"content": text, "with_pieces": True})[1]
    assert "".join(p["piece"] for p in pieces["tokens"]) == text
    assert server.request("POST", "/detokenize", {"tokens": ids})[1]["content"] == text
    assert server.request("POST", "/v1/internal/encode", {"text": text})[1] == {
        "tokens": ids, "length": len(ids)}
    assert server.request("POST", "/v1/internal/decode", {"tokens": ids})[1] == {"text": text}
    assert server.request("POST", "/v1/internal/token-count", {"text": text})[1] == {
        "length": len(ids)}
    status, reply = server.request("POST", "/detokenize", {"tokens": [1, -5]})
    assert status == 400 and "token ids" in reply["error"]["message"]
