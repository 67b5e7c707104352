"""Contract: SillyTavern's everyday actions and settings, in the shapes its code sends them.

Continue and Impersonate on Chat Completion (Custom), the Legacy API box, a Custom URL
without /v1, errors before a stream starts, the API key on KoboldAI Classic, ban EOS and
minimum length, token bans, and samplers pyg-edge lacks (named in the reply, not dropped).
"""

import pytest

from pyg_edge.generation.sampling import SamplingOptions
from support.client_payloads import (
    ST_CHAR,
    ST_USER,
    st_chat_custom,
    st_chat_messages,
    st_kobold_classic,
    st_pygmalion_prompt,
    st_textgen,
)
from support.server_harness import RunningServer

# SillyTavern 1.12.6's defaults (public/scripts/openai.js), {{user}}/{{char}} filled in.
CONTINUE_NUDGE = ("[Continue the following message. Do not include ANY parts of the "
                  "original message. Use capitalization and punctuation as if your reply is "
                  "a part of the original message: {}]")
IMPERSONATION = (f"[Write your next reply from the point of view of {ST_USER}, using the chat "
                 f"history so far as a guideline for the writing style of {ST_USER}. Don't "
                 f"write as {ST_CHAR} or system. Don't describe actions of {ST_CHAR}.]")
LAST_REPLY = "I am fine! Shall we go to the lake"


def chat(*extra):
    messages = st_chat_messages("Aqua is a goddess of water.", [("Hi", "Hey!")],
                                "Hello there!", ["How are you?", LAST_REPLY])
    return messages + list(extra)


def test_continue_extends_the_last_line_without_a_new_turn(server, recording):
    nudge = {"role": "system", "content": CONTINUE_NUDGE.format(LAST_REPLY)}
    status, reply = server.request("POST", "/v1/chat/completions", st_chat_custom(chat(nudge)))
    assert status == 200, reply
    text = recording.prompt.text
    assert text.endswith(f"\n{ST_CHAR}: {LAST_REPLY}")  # inside the character's line
    assert "Continue the following message" not in text
    assert not text.endswith(f"{ST_CHAR}:")


def test_impersonate_writes_the_users_line_and_stops_at_the_characters(server, recording):
    instruction = {"role": "system", "content": IMPERSONATION}
    status, reply = server.request("POST", "/v1/chat/completions",
                                   st_chat_custom(chat(instruction)))
    assert status == 200, reply
    text = recording.prompt.text
    assert text.endswith(f"\n{ST_CHAR}: {LAST_REPLY}\nYou:")
    assert "point of view" not in text
    assert f"\n{ST_CHAR}:" in recording.prompt.stop_strings


def test_a_plain_turn_still_opens_the_characters_line(server, recording):
    status, _ = server.request("POST", "/v1/chat/completions",
                               st_chat_custom(chat({"role": "user", "content": "Yes!"})))
    assert status == 200
    assert recording.prompt.text.endswith(f"You: Yes!\n{ST_CHAR}:")


def test_text_completion_continue_keeps_the_open_line(server, recording):
    """Continue on Text Completion sends the prompt ending inside the character's line."""
    prompt = st_pygmalion_prompt(3) + " I am fine"
    status, reply = server.request("POST", "/v1/completions", st_textgen("koboldcpp", prompt))
    assert status == 200, reply
    assert recording.prompt == prompt  # neither trimmed nor re-opened


def test_the_legacy_api_box_reads_textgen_fields_on_api_v1(server, recording):
    body = st_textgen("ooba", st_pygmalion_prompt(3), max_context=300, amount_gen=33)
    body["legacy_api"] = True
    status, reply = server.request("POST", "/api/v1/generate", body)
    assert status == 200, reply
    assert reply["results"][0]["text"] is not None
    assert recording.options.max_new_tokens == 33
    assert f"\n{ST_USER}:" in recording.options.stop
    status, count = server.request("POST", "/api/v1/token-count", {"prompt": "Hello there"})
    assert status == 200 and count["results"][0]["tokens"] == 2


def test_a_custom_url_without_v1_finds_every_route(server):
    assert server.request("GET", "/models")[1]["data"][0]["id"]
    status, reply = server.request("POST", "/chat/completions",
                                   st_chat_custom(chat({"role": "user", "content": "Hi"})))
    assert status == 200 and reply["choices"][0]["message"]["content"] is not None
    status, reply = server.request("POST", "/completions",
                                   st_textgen("ooba", st_pygmalion_prompt(3)))
    assert status == 200 and "choices" in reply


def test_kobold_errors_carry_error_message_too(server):
    status, reply = server.request("POST", "/api/extra/generate/stream", {"max_length": 10})
    assert status == 400
    assert reply["detail"]["msg"] == reply["error"]["message"]
    assert "prompt" in reply["error"]["message"]


def test_kobold_classic_with_a_key_is_told_which_connection_sends_it(tiny_model):
    running = RunningServer(tiny_model, api_key="s3cret")
    try:
        status, reply = running.request("POST", "/api/v1/generate",
                                        st_kobold_classic("You: Hi\nAqua:"))
        assert status == 401
        assert "Text Completion" in reply["detail"]["msg"] and "KoboldCpp" in reply["error"][
            "message"]
        status, reply = running.request("GET", "/v1/models")
        assert status == 401 and "KoboldAI Classic" not in reply["error"]["message"]
    finally:
        running.stop()


@pytest.mark.parametrize("route, body", [
    ("/api/v1/generate", {**st_kobold_classic("x"), "use_default_badwordsids": True}),
    ("/v1/completions", {**st_textgen("ooba", "x"), "ban_eos_token": True}),
    ("/v1/completions", {**st_textgen("vllm", "x"), "ignore_eos": True}),
    ("/completion", {**st_textgen("llamacpp", "x"), "ignore_eos": True}),
])
def test_ban_eos_forbids_the_end_token_on_every_route(server, recording, route, body):
    body["prompt"] = st_pygmalion_prompt(3)
    status, reply = server.request("POST", route, body)
    assert status == 200, reply
    options = recording.options
    assert options.min_new_tokens == options.max_new_tokens


@pytest.mark.parametrize("route, body", [
    ("/v1/completions", {**st_textgen("ooba", "x"), "min_length": 12, "min_tokens": 12}),
    ("/v1/completions", {**st_textgen("vllm", "x"), "min_tokens": 12}),
])
def test_minimum_length_is_honoured(server, recording, route, body):
    body["prompt"] = st_pygmalion_prompt(3)
    status, reply = server.request("POST", route, body)
    assert status == 200, reply
    assert recording.options.min_new_tokens == 12


def test_the_ended_reply_is_at_least_the_minimum_length(tiny_model):
    """CTranslate2's min_length holds the end token back (float32 tiny model, greedy)."""
    options = SamplingOptions(temperature=0, banned=(), max_new_tokens=20, min_new_tokens=20)
    tiny_model.generate("Hello", options)
    assert tiny_model.last_generation.new_tokens == 20


def test_token_and_string_bans_reach_the_model(server, recording):
    body = {**st_textgen("koboldcpp", st_pygmalion_prompt(3)),
            "banned_strings": ["lake"], "custom_token_bans": "198, 50256, 99999999",
            "logit_bias": {"464": -100, "13": 5}}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200, reply
    assert "lake" in recording.options.banned
    assert set(recording.options.banned_ids) == {198, 50256, 464}
    assert any("99999999" in w and "vocabulary" in w for w in reply["warnings"])
    assert any("logit_bias" in w for w in reply["warnings"])


def test_llamacpp_logit_bias_pairs_ban_tokens(server, recording):
    body = {**st_textgen("llamacpp", st_pygmalion_prompt(3)), "logit_bias": [[198, False]]}
    status, reply = server.request("POST", "/completion", body)
    assert status == 200, reply
    assert recording.options.banned_ids == (198,)


def test_a_banned_token_is_never_generated(tiny_model):
    options = SamplingOptions(temperature=0, banned=(), max_new_tokens=12)
    free = tiny_model.generate("The storm", options)
    first = tiny_model.tokenizer.encode(free)[0]
    banned = tiny_model.generate("The storm", options.with_overrides(banned_ids=(first,)))
    assert first not in tiny_model.tokenizer.encode(banned)


def test_unsupported_samplers_are_named_and_universal_light_stays_truncated(server, recording):
    # SillyTavern's Universal-Light preset: temperature 1.25, min_p 0.1, nothing else.
    body = {**st_textgen("koboldcpp", st_pygmalion_prompt(3)), "temperature": 1.25,
            "min_p": 0.1, "top_p": 1, "top_k": 0, "dry_multiplier": 0.8}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200, reply
    warnings = " ".join(reply["warnings"])
    assert "min_p 0.1" in warnings and "dry_multiplier 0.8" in warnings
    assert recording.options.top_p == 0.9 and recording.options.temperature == 1.0
    status, perf = server.request("GET", "/api/extra/perf")
    assert {"min_p", "dry_multiplier"} <= set(perf["ignored_settings"])


def test_default_settings_name_only_what_is_not_neutral(server):
    status, reply = server.request("POST", "/v1/completions",
                                   st_textgen("ooba", st_pygmalion_prompt(3)))
    assert status == 200
    assert not any("not supported" in w for w in reply.get("warnings", []))
    # KoboldAI Classic's defaults carry top_a 1, which KoboldCpp would apply.
    status, reply = server.request("POST", "/api/v1/generate",
                                   st_kobold_classic(st_pygmalion_prompt(3)))
    assert status == 200
    assert [w.split()[0] for w in reply["warnings"] if "not supported" in w] == ["top_a"]
