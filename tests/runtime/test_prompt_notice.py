"""A long prompt pass is never silent: PygModel measures prompt speed, the CLI says it."""

import json

import pytest
from click.testing import CliRunner

import pyg_edge.generation.model
from pyg_edge.cli import main
from pyg_edge.generation.prefill import PromptSpeed

CARD = {"char_name": "Aqua", "char_persona": " ".join(["A goddess of water."] * 5),
        "char_greeting": "Are you new here?", "world_scenario": "",
        "example_dialogue": "<START>\nYou: Hi!\nAqua: Hello!"}


def test_prompt_speed_estimates_only_from_comparable_passes():
    speed = PromptSpeed()
    assert speed.estimate(100) is None  # nothing measured: no promise
    speed.record(10, 0.001)  # too short to say anything about long prompts
    assert speed.estimate(100) is None
    speed.record(500, 10.0)
    assert speed.estimate(1000) == pytest.approx(20.0)
    assert speed.estimate(1001) is None  # beyond twice the longest pass measured
    speed.record(500, 5.0)  # a faster pass moves the estimate halfway
    assert speed.estimate(500) == pytest.approx(500 / 75)


def test_the_model_announces_long_passes_with_its_own_measured_speed(tiny_model):
    heard = []

    def listen(tokens, seconds):
        heard.append((tokens, seconds))

    tiny_model.long_prompt_tokens = 64
    tiny_model.prompt_speed = PromptSpeed()  # the session's model: forget earlier tests
    try:
        prompt = " ".join(f"word{i}" for i in range(60))
        tiny_model.generate(prompt, max_new_tokens=2, temperature=0, on_long_prompt=listen)
        first = tiny_model.last_generation
        tiny_model.generate(prompt + " more", max_new_tokens=2, temperature=0,
                            on_long_prompt=listen)
        tiny_model.generate("short", max_new_tokens=2, temperature=0, on_long_prompt=listen)
        tiny_model.generate(prompt + " other", max_new_tokens=2)  # no listener: none heard
    finally:
        tiny_model.long_prompt_tokens = pyg_edge.generation.model.LONG_PROMPT_TOKENS
    assert first.read_tokens == first.prompt_tokens >= 64
    assert len(heard) == 2  # not the short prompt
    assert heard[0] == (first.read_tokens, None)  # nothing measured yet: no estimate
    tokens, seconds = heard[1]
    reading = first.first_token_seconds - first.queued_seconds  # not the wait for the turn
    assert seconds == pytest.approx(tokens * reading / first.read_tokens)


def test_cli_chat_says_it_is_reading_a_long_prompt(converted, tmp_path, monkeypatch):
    monkeypatch.setattr(pyg_edge.generation.model, "LONG_PROMPT_TOKENS", 32)
    card = tmp_path / "aqua.json"
    card.write_text(json.dumps(CARD))
    model = converted("neo_w16_safetensors_f32", "int8")
    result = CliRunner().invoke(main, ["chat", str(model), "-c", str(card),
                                       "--max-new-tokens", "4", "--temperature", "0"],
                                input="Hello there, how are you today?\nAnd now?\n")
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if line.startswith("(reading ")]
    assert notices and "about" not in notices[0]  # nothing measured yet: no estimate
    assert result.stdout.count("Aqua: ") == 3  # the greeting and two replies
    assert "(reading" not in result.stdout  # piped replies stay clean


@pytest.fixture
def announcing(tiny_model):
    """tiny_model announcing passes of 16 tokens or more, having read 100 tokens a second."""
    tiny_model.long_prompt_tokens = 16
    tiny_model.prompt_speed = PromptSpeed()
    tiny_model.prompt_speed.record(200, 2.0)
    yield tiny_model
    tiny_model.long_prompt_tokens = pyg_edge.generation.model.LONG_PROMPT_TOKENS
    tiny_model.prompt_speed = PromptSpeed()


def test_web_chat_stream_announces_a_long_prompt_pass_first(announcing):
    from pyg_edge.generation.sampling import SamplingOptions
    from support.server_harness import RunningServer

    server = RunningServer(announcing, defaults=SamplingOptions(max_new_tokens=4,
                                                                temperature=0))
    chat = {"character": {"name": "Aqua", "persona": CARD["char_persona"]}, "history": [],
            "message": "Hello there, how are you today?"}
    try:
        events = server.events("/api/pyg-edge/chat/stream", chat)
        tokens = announcing.last_generation.read_tokens
        assert tokens >= 16
        assert events[0] == {"reading": {"tokens": tokens, "seconds": pytest.approx(tokens / 100)}}
        assert "token" in events[1]  # the notice came before the first token, once
        assert not any("reading" in e for e in events[1:])
        announcing.long_prompt_tokens = 10_000
        events = server.events("/api/pyg-edge/chat/stream", chat)
        assert not any("reading" in e for e in events) and "token" in events[0]
    finally:
        server.stop()
