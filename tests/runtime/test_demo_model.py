"""Behaviour that needs trained weights, on the bundled demo model (pyg_edge/demo_data)."""

import pytest
from click.testing import CliRunner

from pyg_edge import demo
from pyg_edge.chat.characters import load_character
from pyg_edge.chat.session import ChatSession
from pyg_edge.cli import main
from pyg_edge.generation.sampling import SamplingOptions

GREEDY = SamplingOptions(temperature=0, max_new_tokens=60)


@pytest.fixture
def robin():
    return load_character(demo.DEMO_CHARACTER)


def test_the_demo_checkpoint_is_small_plain_files():
    files = list(demo.DEMO_CHECKPOINT.iterdir())
    assert not any(p.is_symlink() for p in files)  # links break on Windows checkouts
    assert {p.name for p in files} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert sum(p.stat().st_size for p in files) <= 25 * 1000 * 1000


# benchmarks/quality_report.py's messages: the first demo looped on three of them.
MESSAGES = ("Hello, how are you?", "What is your favourite food?", "Tell me about computers.",
            "Do you like movies?", "What did you do today?")


def repeated_ngram(text: str, n: int) -> bool:
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) < len(grams)


@pytest.mark.parametrize("message", MESSAGES)
def test_a_greedy_reply_ends_where_the_characters_turn_ends(demo_pyg_model, robin, message):
    session = ChatSession(demo_pyg_model, robin, GREEDY)
    reply = "".join(session.send(message))
    assert reply and "You:" not in reply and "\n" not in reply
    assert demo_pyg_model.last_generation.finish_reason == "stop"
    assert demo_pyg_model.last_generation.new_tokens < GREEDY.max_new_tokens
    assert not repeated_ngram(reply, 3), reply  # no loop: no 3 words said twice


def test_the_raw_model_writes_the_users_turn_next_and_the_stop_spans_tokens(demo_pyg_model, robin):
    session = ChatSession(demo_pyg_model, robin, GREEDY)
    session.history.append(session.history[0].__class__("You", "Do you like pizza?", True))
    prompt = session.prompt()
    raw = demo_pyg_model.generate(prompt.text, GREEDY)  # a str prompt: no stop strings apply
    assert "\nYou:" in raw
    assert len(demo_pyg_model.tokenizer.encode("\nYou:")) > 1  # "\n", "You", ":"
    reply = demo_pyg_model.generate(prompt, GREEDY)
    assert reply == raw[: raw.index("\nYou:")].strip()


def test_the_first_command_of_the_readme_chats_with_the_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["chat", "--temperature", "0", "--max-new-tokens", "40"],
                                input="Hello!\n")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Robin: ")]
    assert lines[0] == "Robin: Hi! I'm Robin. What would you like to chat about?"
    assert len(lines) == 2 and len(lines[1]) > len("Robin: ")
    assert (demo.converted_path() / "pyg_edge.json").exists()
    assert demo.converted_path().parent == tmp_path / "cache"
