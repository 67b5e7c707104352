"""The real server on a loopback port: every endpoint, streaming, abort, concurrency, bad input."""

import asyncio
import http.client
import threading
import time

import pytest

from pyg_edge.generation.sampling import SamplingOptions
from support.cards import TAVERN_V1, b64, png_with_text
from support.server_harness import RunningServer
from support.slowed import SlowedModel

GREEDY = {"temperature": 0, "rep_pen": 1.0}
PROMPT = "You: Tell me about the sea, the ships and the harbour.\nAqua:"


def slow_pieces(item):
    """20 ms a piece, so requests overlap as on a big model."""
    if isinstance(item, str):
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server(tiny_model):
    running = RunningServer(tiny_model, max_length=128,
                            defaults=SamplingOptions(max_new_tokens=60))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def slow_server(tiny_model):
    running = RunningServer(SlowedModel(tiny_model, slow_pieces), max_length=200,
                            write_timeout=0.5)  # a stalled reader is cut off quickly
    yield running
    running.stop()


def generate(server, **body):
    status, reply = server.request("POST", "/api/v1/generate", {"prompt": PROMPT, **body})
    assert status == 200, reply
    return reply["results"][0]


def test_kobold_info_endpoints(server):
    status, model = server.request("GET", "/api/v1/model")
    assert status == 200 and model["result"].startswith("pyg-edge/neo_w16_safetensors_f32")
    status, version = server.request("GET", "/api/v1/info/version")
    assert status == 200 and tuple(map(int, version["result"].split("."))) >= (1, 2, 2)
    assert server.request("GET", "/api/v1/config/max_context_length") == (200, {"value": 256})
    assert server.request("GET", "/api/v1/config/max_length") == (200, {"value": 60})
    status, extra = server.request("GET", "/api/extra/version")
    assert status == 200 and extra["result"] == "KoboldCpp"


def test_kobold_generate_maps_its_fields_and_ignores_the_rest(server):
    first = generate(server, max_length=20, typical=1, tfs=1, top_a=0, sampler_order=[6, 0],
                     use_default_badwordsids=False, **GREEDY)
    again = generate(server, max_length=20, **GREEDY)
    assert first["text"] == again["text"] and first["text"]
    assert first["finish_reason"] in ("length", "stop")
    stop = first["text"][4:7]
    cut = generate(server, max_length=20, stop_sequence=[stop], **GREEDY)
    assert cut["text"] == first["text"][: first["text"].index(stop)]


def test_kobold_generate_cuts_an_over_long_prompt_from_the_left(server):
    reply = generate(server, prompt="word " * 400 + PROMPT, max_length=10,
                     max_context_length=200, **GREEDY)
    assert reply["text"]


def test_koboldcpp_stream_sends_the_same_tokens(server):
    text = generate(server, max_length=24, **GREEDY)["text"]
    events = server.events("/api/extra/generate/stream", {"prompt": PROMPT, "max_length": 24,
                                                          **GREEDY})
    assert "".join(e["token"] for e in events) == text and len(events) > 1


def test_tokencount(server, tiny_model):
    status, reply = server.request("POST", "/api/extra/tokencount", {"prompt": PROMPT})
    assert status == 200 and reply["ids"] == tiny_model.tokenizer.encode(PROMPT)
    assert reply["value"] == len(reply["ids"])


def test_openai_models_and_completions(server):
    status, models = server.request("GET", "/v1/models")
    assert status == 200 and models["data"][0]["id"].startswith("pyg-edge/")
    body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "repetition_penalty": 1.0}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200 and reply["object"] == "text_completion"
    text = reply["choices"][0]["text"]
    assert reply["usage"]["completion_tokens"] <= 12 and text
    events = server.events("/v1/completions", {**body, "stream": True})
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] in ("length", "stop")
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == text


def test_openai_chat_completions_use_the_pygmalion_format(server):
    body = {"messages": [{"role": "system", "content": "A goddess of water."},
                         {"role": "assistant", "name": "Aqua", "content": "Hello!"},
                         {"role": "user", "content": "Hi Aqua."}],
            "max_tokens": 12, "temperature": 0}
    status, reply = server.request("POST", "/v1/chat/completions", body)
    assert status == 200 and reply["object"] == "chat.completion"
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == message["content"].strip()
    events = server.events("/v1/chat/completions", {**body, "stream": True})
    assert events[-1] == "[DONE]" and events[0]["object"] == "chat.completion.chunk"
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert streamed == message["content"]


def error_message(path, reply):
    """The message of an error body in the shape the API of path uses."""
    if path.startswith("/api/") and not path.startswith("/api/pyg-edge/"):
        # KoboldAI's detail, and error.message beside it for SillyTavern's stream reader.
        assert set(reply) == {"detail", "error"} and reply["detail"]["type"]
        assert reply["error"]["message"] == reply["detail"]["msg"]
        return reply["detail"]["msg"]
    assert set(reply) == {"error"} and reply["error"]["type"]
    return reply["error"]["message"]


@pytest.mark.parametrize("method, path, body, status, fragment", [
    ("POST", "/api/v1/generate", "{not json", 400, "not valid JSON"),
    ("POST", "/api/v1/generate", "[1]", 400, "JSON object"),
    ("POST", "/api/v1/generate", '{"max_length": 5}', 400, "missing field 'prompt'"),
    ("POST", "/api/v1/generate", '{"prompt": 5}', 400, "must be str"),
    ("POST", "/api/v1/generate", '{"prompt": "x", "temperature": "hot"}', 400, "must be float"),
    ("POST", "/api/v1/generate", '{"prompt": "x", "max_context_length": 5}', 400,
     "at least 32 tokens"),
    ("POST", "/v1/completions", '{"prompt": "x", "n": 0}', 400, "field 'n' is 0, expected 1 to 8"),
    ("POST", "/v1/completions", '{"prompt": "x", "n": 9}', 400, "field 'n' is 9, expected 1 to 8"),
    ("POST", "/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "n": -1}',
     400, "field 'n' is -1"),
    ("POST", "/v1/completions", '{"prompt": "x", "n": "2"}', 400, "field 'n' must be int"),
    ("POST", "/v1/completions", '{"prompt": "x", "n": 2.5}', 400, "field 'n' must be int"),
    ("POST", "/v1/chat/completions", '{"messages": [{"role": "bot"}]}', 400, "needs a role"),
    ("POST", "/v1/chat/completions", '{"messages": []}', 400, "non-empty list"),
    ("GET", "/api/v1/nothing", None, 404, "Not Found"),
    ("GET", "/api/v1/generate", None, 405, "Method Not Allowed"),
    ("GET", "/v1/nothing", None, 404, "Not Found"),
])
def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(server, method, path, body,
                                                                  status, fragment):
    got, reply = server.request(method, path, raw=body,
                                headers={"Content-Type": "application/json"})
    assert got == status and fragment in error_message(path, reply)
    assert server.request("GET", "/api/v1/model")[0] == 200


def test_an_oversized_body_is_refused(server):
    status, reply = server.request("POST", "/api/v1/generate",
                                   {"prompt": "x" * (3 * 1024 * 1024)})
    assert status == 413 and error_message("/api/v1/generate", reply)


def test_api_key_is_required_when_set(tiny_model):
    running = RunningServer(tiny_model, api_key="s3cret")
    try:
        assert running.request("GET", "/api/v1/model")[0] == 401
        wrong = {"Authorization": "Bearer nope"}
        assert running.request("GET", "/v1/models", headers=wrong)[0] == 401
        assert running.request("GET", "/v1/models",
                               headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert running.request("GET", "/api/v1/model", headers={"X-Api-Key": "s3cret"})[0] == 200
        status, page = running.request("GET", "/")
        assert status == 200 and "<title>pyg-edge chat</title>" in page
    finally:
        running.stop()


def in_thread(function, *args, **kwargs):
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=function(*args, **kwargs)))
    thread.start()
    return thread, result


def test_abort_ends_the_running_generation_with_what_it_has(slow_server):
    thread, result = in_thread(generate, slow_server, max_length=200, genkey="KCPP1", **GREEDY)
    time.sleep(0.5)
    status, reply = slow_server.request("POST", "/api/extra/abort", {"genkey": "KCPP1"})
    thread.join(30)
    assert status == 200 and reply["success"] == "true"
    assert result["value"]["finish_reason"] == "cancelled"
    assert 0 < len(result["value"]["text"]) < len(generate(slow_server, max_length=200,
                                                             **GREEDY)["text"])


def test_a_client_that_disconnects_stops_its_generation(slow_server, tiny_model):
    events = slow_server.events("/api/extra/generate/stream",
                                {"prompt": PROMPT, "max_length": 200, **GREEDY}, stop_after=3)
    assert len(events) == 3
    started = time.monotonic()
    generate(slow_server, max_length=2, **GREEDY)  # waits its turn behind the abandoned one
    assert time.monotonic() - started < 3  # 200 slow tokens would take over 4 s
    assert tiny_model.last_generation.new_tokens <= 2


def test_concurrent_requests_are_served_one_at_a_time_in_arrival_order(slow_server):
    finished = []

    def client(i):
        reply = generate(slow_server, max_length=15, **GREEDY)
        finished.append(i)
        return reply["text"]

    threads = []
    for i in range(4):
        thread, result = in_thread(client, i)
        threads.append((thread, result))
        time.sleep(0.05)
    for thread, _ in threads:
        thread.join(60)
    texts = {result["value"] for _, result in threads}
    assert finished == [0, 1, 2, 3] and len(texts) == 1


def test_web_chat_page_card_upload_and_reply(server):
    status, page = server.request("GET", "/")
    assert status == 200 and "/api/pyg-edge/chat/stream" in page and "http" not in page.split(
        "<script>")[1].replace("http.", "")
    card = png_with_text({"chara": b64(TAVERN_V1)})
    status, character = server.request("POST", "/api/pyg-edge/character?name=aqua.png", raw=card,
                                        headers={"Content-Type": "application/octet-stream"})
    assert status == 200 and character["name"] == "Aqua" and character["example_dialogue"]
    status, error = server.request("POST", "/api/pyg-edge/character", raw=b"\x89PNG\r\n\x1a\nxx")
    assert status == 400 and "truncated PNG" in error_message("/api/pyg-edge/character", error)
    events = server.events("/api/pyg-edge/chat/stream", {
        "character": character, "history": [{"is_user": False, "text": character["greeting"]}],
        "message": "Hello!"})
    assert events[-1]["finish_reason"] in ("stop", "length") and len(events) > 1
    assert len(events) - 1 <= 60


# OpenAI's n: several choices from one prompt pass --------------------------------------

SAMPLED = {"temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.0, "max_tokens": 12}


def test_completions_with_n_return_n_choices_each_ending_at_its_stop(server):
    body = {"prompt": PROMPT, "n": 3, "stop": ["e"], "seed": 5, **SAMPLED}
    status, reply = server.request("POST", "/v1/completions", body)
    assert status == 200, reply
    choices = reply["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert all(c["finish_reason"] in ("stop", "length") and "e" not in c["text"]
               for c in choices)
    assert len({c["text"] for c in choices}) > 1  # sampled, not copies
    again = server.request("POST", "/v1/completions", body)[1]["choices"]
    assert [c["text"] for c in again] == [c["text"] for c in choices]  # the seed holds
    assert reply["usage"]["completion_tokens"] >= len(choices)  # every choice counted


def sillytavern_stream(events, field):
    """Reads streamed chunks as SillyTavern does: index > 0 goes to the swipes."""
    text, swipes = "", {}
    for event in events[:-1]:
        choice = event["choices"][0]
        piece = choice["delta"].get("content", "") if field == "delta" else choice["text"]
        if choice["index"] > 0:
            swipes[choice["index"] - 1] = swipes.get(choice["index"] - 1, "") + piece
        else:
            text += piece
    return text, [swipes[i] for i in sorted(swipes)]


def test_streamed_completions_with_n_stream_choice_0_then_send_the_others(server):
    body = {"prompt": PROMPT, "n": 3, "seed": 8, **SAMPLED}
    expected = [c["text"] for c in server.request("POST", "/v1/completions", body)[1]["choices"]]
    events = server.events("/v1/completions", {**body, "stream": True})
    assert events[-1] == "[DONE]" and all(len(e["choices"]) == 1 for e in events[:-1])
    indexes = [e["choices"][0]["index"] for e in events[:-1]]
    assert indexes == sorted(indexes) and indexes[-4:] == [1, 1, 2, 2]
    finished = [e["choices"][0] for e in events[:-1] if e["choices"][0]["finish_reason"]]
    assert [c["index"] for c in finished] == [0, 1, 2]
    text, swipes = sillytavern_stream(events, "text")
    assert [text, *swipes] == expected


def test_chat_completions_with_n_as_sillytavern_sends_them(server):
    # SillyTavern's Custom (OpenAI-compatible) source with "Multiple swipes per generation".
    body = {"messages": [{"role": "system", "content": "A goddess of water."},
                         {"role": "user", "content": "Hi Aqua."}],
            "model": "pyg-edge", "temperature": 1, "frequency_penalty": 0,
            "presence_penalty": 0, "top_p": 1, "max_tokens": 12, "stream": False,
            "logit_bias": {}, "seed": 3, "n": 2}
    status, reply = server.request("POST", "/v1/chat/completions", body)
    assert status == 200, reply
    contents = [c["message"]["content"] for c in reply["choices"]]
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    assert all(c == c.strip() for c in contents)
    events = server.events("/v1/chat/completions", {**body, "stream": True})
    text, swipes = sillytavern_stream(events, "delta")
    assert [text, *swipes] == contents


def test_greedy_n_gives_copies_of_the_greedy_completion(server):
    body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0}
    single = server.request("POST", "/v1/completions", body)[1]["choices"][0]["text"]
    status, reply = server.request("POST", "/v1/completions", {**body, "n": 2})
    assert status == 200 and [c["text"] for c in reply["choices"]] == [single, single]


def test_web_chat_sends_spare_replies_with_its_last_event(tiny_model):
    running = RunningServer(tiny_model, defaults=SamplingOptions(max_new_tokens=12,
                                                                 temperature=1.0), replies=3)
    try:
        events = running.events("/api/pyg-edge/chat/stream", {
            "character": {"name": "Aqua"}, "history": [], "message": "Hello!"})
        spares = events[-1]["spares"]
        assert 1 <= len(spares) <= 2 and len(set(spares)) == len(spares)
        assert all(isinstance(s, str) and s and s == s.strip() for s in spares)
        single = running.events("/api/pyg-edge/chat/stream", {
            "character": {"name": "Aqua"}, "history": [], "message": "Hello!", "replies": 1})
        assert single[-1]["spares"] == []
    finally:
        running.stop()


def test_a_client_that_leaves_an_n_stream_stops_every_choice(slow_server, tiny_model):
    # Greedy: the tiny model's sampled replies may end early by themselves.
    body = {"prompt": PROMPT, "n": 3, "stream": True, "temperature": 0, "max_tokens": 200}
    events = slow_server.events("/v1/completions", body, stop_after=3)
    assert len(events) == 3
    started = time.monotonic()
    generate(slow_server, max_length=2, **GREEDY)  # waits its turn behind the abandoned one
    assert time.monotonic() - started < 3  # 200 slow pieces would take over 4 s
    assert tiny_model.last_generation.new_tokens <= 2


def test_a_keyless_abort_never_cuts_another_clients_keyed_reply(slow_server):
    thread, result = in_thread(generate, slow_server, max_length=60, genkey="KCPP7", **GREEDY)
    time.sleep(0.4)
    status, reply = slow_server.request("POST", "/api/extra/abort")  # no genkey, no body
    assert status == 200 and reply["success"] == "false"
    thread.join(30)
    assert result["value"]["finish_reason"] != "cancelled"


def test_a_keyless_abort_cuts_nothing_while_someone_waits(slow_server):
    first, first_result = in_thread(generate, slow_server, max_length=40, **GREEDY)
    time.sleep(0.3)
    second, second_result = in_thread(generate, slow_server, max_length=4, **GREEDY)
    time.sleep(0.2)
    assert slow_server.request("POST", "/api/extra/abort", {})[1]["success"] == "false"
    first.join(30)
    second.join(30)
    assert first_result["value"]["finish_reason"] != "cancelled"
    # Alone and keyless, it is the client's own reply: abort cuts it, marked cancelled.
    thread, result = in_thread(generate, slow_server, max_length=60, **GREEDY)
    time.sleep(0.4)
    assert slow_server.request("POST", "/api/extra/abort", {})[1]["success"] == "true"
    thread.join(30)
    assert result["value"]["finish_reason"] == "cancelled"


def test_check_never_shows_an_openai_or_web_chat_reply(server):
    status, reply = server.request("POST", "/v1/completions", {
        "prompt": PROMPT, "max_tokens": 6, "temperature": 0})
    assert status == 200 and reply["choices"][0]["text"]
    status, check = server.request("POST", "/api/extra/generate/check", {})
    assert status == 200 and check == {"results": [{"text": ""}]}
    kobold = generate(server, max_length=6, **GREEDY)["text"]
    assert server.request("GET", "/api/extra/generate/check")[1]["results"][0]["text"] == kobold


def test_a_client_that_reads_nothing_is_cut_off_and_the_others_are_served(slow_server,
                                                                           monkeypatch):
    """A stream whose writes cannot drain for write_timeout is cancelled (its socket is
    stalled here by holding its writes), and a request behind it is served meanwhile."""
    from aiohttp import web

    original = web.StreamResponse.write

    async def write(self, data):
        if self._req is not None and self._req.headers.get("X-Test-Stall"):
            await asyncio.sleep(3600)  # a client whose receive window never opens
        return await original(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", write)
    def stalled_client():
        try:
            slow_server.request("POST", "/api/extra/generate/stream",
                                {"prompt": PROMPT, "max_length": 200, **GREEDY},
                                headers={"X-Test-Stall": "1"})
        except http.client.IncompleteRead:
            return "cut off"
        return "served"

    stalled, outcome = in_thread(stalled_client)
    time.sleep(0.2)
    started = time.monotonic()
    reply = generate(slow_server, max_length=4, **GREEDY)
    assert reply["text"] and time.monotonic() - started < 3  # 200 slow tokens take 4 s
    stalled.join(10)
    assert outcome["value"] == "cut off"
