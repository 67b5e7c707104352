"""pyg-edge chat, prompt and generate, driven as a user would (scripted stdin)."""

import json

import pytest

from pyg_edge.chat.characters import load_character
from pyg_edge.chat.prompt import build_prompt
from pyg_edge.generation.tokenizer import TextTokenizer
from support.cli import card_file, invoke

CARD = {"char_name": "Aqua", "char_persona": "A goddess of water.",
        "char_greeting": "Are you new here?", "world_scenario": "",
        "example_dialogue": "<START>\nYou: Hi!\nAqua: Hello!"}


@pytest.fixture
def model(converted):
    return converted("neo_w16_safetensors_f32", "int8")


@pytest.fixture
def card(tmp_path):
    return card_file(tmp_path, CARD)


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0]


def test_chat_with_piped_stdin_streams_replies_and_runs_commands(model, card, tmp_path):
    saved = tmp_path / "chat.jsonl"
    script = f"Hello!\n/regen\n/undo\nHow are you?\n/save {saved}\n/quit\nnever read\n"
    result = invoke("chat", model, "-c", card, "--max-new-tokens", "8", "--seed", "1",
                    input=script)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Aqua: Are you new here?"
    replies = [line for line in lines[1:] if line.startswith("Aqua: ")]
    assert len(replies) >= 3  # Hello!, /regen, How are you?
    messages = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines()[1:]]
    assert [m["mes"] for m in messages if m["is_user"]] == ["How are you?"]
    assert len(messages) == 3


def test_chat_ends_at_end_of_input(model, card):
    result = invoke("chat", model, "-c", card, "--max-new-tokens", "4", input="Hi\n")
    assert result.exit_code == 0 and result.output.count("Aqua: ") == 2


def test_prompt_prints_exactly_the_prompt(model, card, tmp_path):
    history = tmp_path / "h.jsonl"
    history.write_text('{"user_name": "You"}\n{"name": "Aqua", "is_user": false, "mes": "Yo."}\n')
    result = invoke("prompt", model, "-c", card, "-m", "Hi there", "--history", history,
                    "--max-new-tokens", "40")
    assert result.exit_code == 0, result.output
    tokenizer = TextTokenizer.from_model_folder(str(model))
    from pyg_edge.chat.session import read_chat

    expected = build_prompt(load_character(card), read_chat(history, "Aqua"), "Hi there",
                            tokenizer.count, 256, 40)
    assert result.output == expected.text + "\n"
    assert result.output.startswith("Aqua's Persona: A goddess of water.\n<START>\nYou: Hi!\n")


def test_prompt_that_cannot_fit_is_one_line(model, card):
    assert_one_line_error(
        invoke("prompt", model, "-c", card, "-m", "word " * 200, "--max-new-tokens", "100"),
        "lower max_new_tokens")


def test_generate_prints_the_completion(model):
    result = invoke("generate", model, "--prompt", "You: hi\nAqua:", "--temperature", "0",
                    "--max-new-tokens", "10")
    assert result.exit_code == 0 and len(result.output.strip()) > 0
    again = invoke("generate", model, "--prompt", "You: hi\nAqua:", "--temperature", "0",
                   "--max-new-tokens", "10")
    assert again.output == result.output


def test_generate_reads_a_prompt_file_and_applies_stop_strings(model, tmp_path):
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("You: hi\nAqua:", encoding="utf-8")
    full = invoke("generate", model, "--prompt-file", prompt_file, "--temperature", "0",
                  "--max-new-tokens", "20").output.strip()
    stop = full[3:5]
    cut = invoke("generate", model, "--prompt-file", prompt_file, "--temperature", "0",
                 "--max-new-tokens", "20", "--stop", stop).output.strip()
    assert cut == full[: full.index(stop)].strip()


@pytest.mark.parametrize("args, fragment", [
    (["chat", "{model}", "-c", "{missing}"], "cannot read character card"),
    (["chat", "{nomodel}", "-c", "{card}"], "is not a folder"),
    (["generate", "{model}", "--prompt", "x", "--top-p", "2"], "top_p"),
])
def test_user_errors_are_one_line(model, card, tmp_path, args, fragment):
    values = {"model": model, "card": card, "missing": tmp_path / "none.json",
              "nomodel": tmp_path / "nomodel"}
    result = invoke(*[a.format(**values) for a in args], input="")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert fragment in result.output


def test_generate_needs_exactly_one_prompt_source(model):
    result = invoke("generate", model)
    assert result.exit_code == 2 and "exactly one of --prompt and --prompt-file" in result.output


def test_chat_regen_shows_a_spare_reply_with_replies_2(model, card, tmp_path, monkeypatch):
    from pyg_edge.generation.model import PygModel

    calls = []
    original = PygModel.stream
    monkeypatch.setattr(PygModel, "stream",
                        lambda self, *a, **k: calls.append(k["n"]) or original(self, *a, **k))
    saved = tmp_path / "chat.jsonl"
    script = f"Hello!\n/regen\n/save {saved}\n"
    result = invoke("chat", model, "-c", card, "--max-new-tokens", "12", "--temperature", "1",
                    "--seed", "3", "--replies", "2", input=script)
    assert result.exit_code == 0, result.output
    replies = [line for line in result.output.splitlines() if line.startswith("Aqua: ")][1:]
    assert len(replies) == 2 and replies[0] != replies[1]
    assert calls == [2]  # one batch of two replies; /regen showed the spare
    last = json.loads(saved.read_text(encoding="utf-8").splitlines()[-1])
    assert "Aqua: " + last["mes"] == replies[1]


@pytest.mark.parametrize("count", ["0", "9", "-1"])
def test_chat_refuses_a_bad_number_of_replies(model, card, count):
    result = invoke("chat", model, "-c", card, "--replies", count, input="Hi\n")
    assert result.exit_code == 2 and "--replies" in result.output
