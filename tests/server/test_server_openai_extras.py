"""What the openai SDK asks beyond a reply (issue 29, finding 7): the usage chunk of a stream,
fields that cannot be honoured named in warnings, and the user-line stop as an option."""

from support.server_harness import RunningServer

CHAT = {"messages": [{"role": "system", "content": "Aqua's Persona: a goddess of water."},
                     {"role": "user", "content": "Hello!"}], "max_tokens": 6}


def test_a_stream_that_asks_for_usage_ends_with_a_usage_chunk(server):
    for path, body in [("/v1/chat/completions", CHAT),
                       ("/v1/completions", {"prompt": "You: Hi!\nAqua:", "max_tokens": 6})]:
        events = server.events(path, {**body, "stream": True,
                                      "stream_options": {"include_usage": True}})
        assert events[-1] == "[DONE]"
        last = events[-2]
        assert last["choices"] == [] and last["usage"]["prompt_tokens"] > 0
        assert 0 < last["usage"]["completion_tokens"] <= 6
        assert last["usage"]["total_tokens"] == (last["usage"]["prompt_tokens"]
                                                 + last["usage"]["completion_tokens"])
        plain = server.events(path, {**body, "stream": True})
        assert all("usage" not in e for e in plain[:-1])


def test_tools_and_response_formats_are_named_as_ignored(server):
    body = {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required", "response_format": {"type": "json_object"}}
    status, reply = server.request("POST", "/v1/chat/completions", body)
    assert status == 200 and reply["choices"][0]["message"]["content"] is not None
    named = " ".join(reply["warnings"])
    assert all(f"'{name}'" in named for name in ("tools", "tool_choice", "response_format"))
    status, reply = server.request("POST", "/v1/chat/completions", {
        **CHAT, "tool_choice": "none", "response_format": {"type": "text"}})
    assert status == 200 and not reply.get("warnings")  # the defaults ask for nothing


def test_the_user_line_stop_can_be_turned_off(demo_pyg_model):
    from support.server_harness import RecordingModel

    recording = RecordingModel(demo_pyg_model)
    for user_line_stop in (True, False):
        running = RunningServer(recording, max_length=8, user_line_stop=user_line_stop)
        try:
            body = {"prompt": "Once upon a time", "max_length": 2}
            assert running.request("POST", "/api/v1/generate", body)[0] == 200
            assert ("\nYou:" in recording.options.stop) is user_line_stop
        finally:
            running.stop()


def test_without_the_user_line_stop_a_greedy_reply_runs_on_as_a_plain_generation(
        demo_pyg_model):
    """Issue 37: serve --no-user-line-stop must let a reply run past a "You:" line. The
    demo's greedy reply here writes two user lines before its end token."""
    from pyg_edge.generation.sampling import SamplingOptions

    prompt = "Robin's Persona: A friendly robot.\n<START>\nYou: Who are you?\nRobin:"
    plain = "".join(demo_pyg_model.stream(prompt, SamplingOptions(temperature=0,
                                                                  max_new_tokens=40)))
    assert plain.count("\nYou:") >= 2  # the prompt still makes the demo write user lines
    running = RunningServer(demo_pyg_model, max_length=40, user_line_stop=False)
    stopping = RunningServer(demo_pyg_model, max_length=40)
    try:
        body = {"prompt": prompt, "max_length": 40, "temperature": 0}
        assert running.request("POST", "/api/v1/generate", body)[1]["results"][0]["text"] == plain
        cut = stopping.request("POST", "/api/v1/generate", body)[1]["results"][0]["text"]
        assert cut == plain.split("\nYou:")[0]
    finally:
        running.stop()
        stopping.stop()
