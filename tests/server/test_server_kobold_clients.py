"""Contract: KoboldAI and KoboldCpp routes answer SillyTavern (KoboldAI Classic), KoboldAI
Lite and Agnaistic as those clients call them with their default settings."""

import pytest

from support.client_payloads import (
    PERSONA,
    agnai_kobold,
    lite_generate,
    st_kobold_classic,
    st_pygmalion_prompt,
)
from support.server_harness import CLIENT_MAX_LENGTH, RunningServer

LIMIT, CONTEXT = CLIENT_MAX_LENGTH, 512  # the server's --max-length, the demo's context
LONG = st_pygmalion_prompt(120)  # about 1,700 tokens: far over the context
SHORT = st_pygmalion_prompt(3)


def kobold_generate(server, body):
    status, reply = server.request("POST", "/api/v1/generate", body)
    assert status == 200, reply
    assert reply["results"][0]["text"].strip()
    return reply


def prompt_tokens(recording):
    return len(recording.tokenizer.encode(recording.prompt))


def test_sillytavern_kobold_classic_defaults_get_a_reply(server, recording):
    reply = kobold_generate(server, st_kobold_classic(SHORT))
    assert recording.prompt == SHORT and recording.options.seed is None  # seed -1: random
    # SillyTavern's stop, and Pygmalion's own user line, which the model writes anyway.
    assert recording.options.stop == ("\nUser:", "\nYou:") and recording.options.top_k == 0
    assert "warnings" in reply  # max_context_length 2048 is more than the model has
    assert any("max_context_length 2048" in w for w in reply["warnings"])


def test_an_over_long_prompt_is_cut_from_the_left_keeping_the_pygmalion_persona(server,
                                                                               recording):
    reply = kobold_generate(server, st_kobold_classic(LONG, amount_gen=80))
    assert len(LONG) > 4 * CONTEXT and prompt_tokens(recording) <= CONTEXT - 80
    assert recording.prompt.startswith(f"Aqua's Persona: {PERSONA}\n<START>\n")
    assert recording.prompt.endswith(LONG[-200:])
    assert any("cut from the left" in w for w in reply["warnings"])


def test_sillytavern_kobold_streaming_sends_named_message_events(server):
    events = server.named_events("/api/extra/generate/stream",
                                 st_kobold_classic(LONG, stream=True))
    assert all(name == "message" for name, _ in events) and len(events) > 1
    assert "".join(data["token"] for _, data in events).strip()
    assert events[-1][1]["finish_reason"] in ("stop", "length")


def test_koboldai_lite_keeps_its_memory_in_front_and_check_shows_the_text(server, recording):
    memory = f"[Character: Aqua; {PERSONA}]\n"
    body = lite_generate(st_pygmalion_prompt(120).split("<START>\n", 1)[1], memory)
    events = server.named_events("/api/extra/generate/stream", body)
    text = "".join(data["token"] for name, data in events if name == "message")
    assert text.strip() and recording.prompt.startswith(memory)
    assert prompt_tokens(recording) <= CONTEXT - 100  # max_length 200 clamped to 100
    status, check = server.request("POST", "/api/extra/generate/check", {"genkey": "KCPP4242"})
    assert status == 200 and check == {"results": [{"text": text}]}
    status, other = server.request("POST", "/api/extra/generate/check", {"genkey": "KCPP1"})
    assert other == {"results": [{"text": ""}]}  # never another client's text


def test_agnaistic_kobold_defaults_get_a_reply_with_max_length_clamped(server, recording):
    reply = kobold_generate(server, agnai_kobold(SHORT))
    assert recording.options.max_new_tokens == LIMIT
    assert any("max new tokens 300" in w for w in reply["warnings"])
    # Its min_p 0.1 cannot run here, and nothing else truncates: top_p stands in for it.
    assert recording.options.top_p == 0.9
    assert any(w.startswith("min_p 0.1 is not supported") for w in reply["warnings"])


@pytest.mark.parametrize("sliders, expected", [
    ({"sampler_seed": -1}, {"seed": None}),
    ({"sampler_seed": -7}, {"seed": None}),
    ({"top_k": -1}, {"top_k": 0}),
    ({"top_k": 0}, {"top_k": 0}),
    ({"temperature": 5}, {"temperature": 5.0}),
    ({"temperature": -1}, {"temperature": 0.0}),
    ({"top_p": 0}, {"top_p": 1.0}),
    ({"rep_pen": 0}, {"repetition_penalty": 1.0}),
    ({"max_length": 5000}, {"max_new_tokens": LIMIT}),
    ({"max_length": 0}, {"max_new_tokens": 1}),
    ({"max_length": 60, "max_context_length": 64}, {"max_new_tokens": 64 - 16}),
])
def test_slider_values_a_client_allows_get_a_reply(server, recording, sliders, expected):
    # top_a off: with it on, top_p 0.9 would stand in for it (test_server_sillytavern_actions)
    body = {**st_kobold_classic(LONG), "top_a": 0, **sliders}
    status, reply = server.request("POST", "/api/v1/generate", body)
    assert status == 200, reply
    assert {k: getattr(recording.options, k) for k in expected} == expected
    context = min(sliders.get("max_context_length", CONTEXT), CONTEXT)
    assert prompt_tokens(recording) + recording.options.max_new_tokens <= context


def test_a_fixed_seed_repeats_the_reply(server):
    body = {**st_kobold_classic(SHORT), "sampler_seed": 1234, "max_length": 30}
    first = kobold_generate(server, body)["results"][0]["text"]
    assert kobold_generate(server, body)["results"][0]["text"] == first


def test_koboldcpp_status_routes_clients_probe(server):
    assert server.request("GET", "/api/extra/true_max_context_length") == (200,
                                                                          {"value": CONTEXT})
    assert server.request("GET", "/api/extra/preloadstory") == (200, {})
    assert server.request("GET", "/api/v1/config/soft_prompts_list") == (200, {"values": []})
    assert server.request("GET", "/api/v1/config/soft_prompt") == (200, {"value": ""})
    assert server.request("GET", "/api/latest/model") == server.request("GET", "/api/v1/model")
    status, version = server.request("GET", "/api/extra/version")
    assert status == 200 and version["result"] == "KoboldCpp" and version["protected"] is False


def test_perf_reports_the_latest_generation(server, recording):
    before = server.request("GET", "/api/extra/perf")[1]["total_gens"]
    kobold_generate(server, {**st_kobold_classic(SHORT), "max_length": 20})
    status, perf = server.request("GET", "/api/extra/perf")
    stats = recording.last_generation
    assert status == 200 and perf["total_gens"] == before + 1
    assert perf["last_token_count"] == stats.new_tokens > 0
    assert perf["last_input_count"] == stats.prompt_tokens == prompt_tokens(recording)
    assert perf["last_process"] > 0 and perf["last_process_speed"] > 0
    assert perf["stop_reason"] in (0, 1) and perf["idle"] == 1 and perf["queue"] == 0


def test_perf_says_whether_int8_is_exact_on_this_cpu(server, recording):
    status, perf = server.request("GET", "/api/extra/perf")
    path = perf["int8_path"]
    assert path == recording.int8_path  # the library's verdict, as the model has it
    assert path["compute_type"] == recording.compute_type and path["device"] == "cpu"
    assert path["int8_exact"] == (recording.compute_type == "int8")  # auto: int8 if exact
    assert path["backend"] and path["detail"]


def test_kobold_errors_have_koboldai_shape_and_the_key_is_checked(demo_pyg_model):
    running = RunningServer(demo_pyg_model, api_key="s3cret")
    try:
        status, reply = running.request("POST", "/api/v1/generate", st_kobold_classic(SHORT))
        assert status == 401 and "API key" in reply["detail"]["msg"]
        assert reply["detail"]["type"] == "unauthorized"
        key = {"Authorization": "Bearer s3cret"}
        status, reply = running.request("POST", "/api/extra/tokencount", {}, headers=key)
        assert status == 400 and reply["detail"] == {"msg": "missing field 'prompt'",
                                                     "type": "bad_input"}
        status, version = running.request("GET", "/api/extra/version", headers=key)
        assert version["protected"] is True
        status, reply = running.request("POST", "/api/v1/generate",
                                        {**st_kobold_classic(SHORT), "n": 2}, headers=key)
        assert status == 400 and "one reply per request" in reply["detail"]["msg"]
    finally:
        running.stop()
