"""Cards in the terminal: the load notice, /greeting, and `pyg-edge prompt --lore`."""

import json

import pytest

from support.cli import card_file, invoke

CARD = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
    "name": "Aqua", "description": "A goddess of water.", "first_mes": "Are you new here?",
    "alternate_greetings": ["Welcome to Axel, {{user}}!"], "system_prompt": "Be Aqua.",
    "character_book": {"scan_depth": 3, "entries": [
        {"keys": ["axel"], "content": "Axel is a town of beginners.", "enabled": True,
         "insertion_order": 10, "name": "Axel", "extensions": {}},
        {"keys": ["guild"], "content": "The guild pays for frogs.", "enabled": True,
         "insertion_order": 20, "name": "Guild", "extensions": {"probability": 0}},
        {"keys": [], "content": "Aqua is useless.", "constant": True, "enabled": True,
         "insertion_order": 0, "name": "Truth", "extensions": {}},
    ]}}}


@pytest.fixture
def model(converted):
    return converted("neo_w16_safetensors_f32", "int8")


@pytest.fixture
def card(tmp_path):
    return card_file(tmp_path, CARD)


def test_chat_opens_with_a_chosen_greeting_and_shows_the_notice(model, card, tmp_path):
    saved = tmp_path / "chat.jsonl"
    script = f"/greeting\n/greeting 1\n/greeting 7\n/save {saved}\n/quit\n"
    result = invoke("chat", model, "-c", card, "--max-new-tokens", "4", input=script)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("(Aqua (aqua.json): read but not applied: system_prompt")
    assert "  0: Are you new here?\n  1: Welcome to Axel, You!\n" in result.stderr
    assert "(greeting 7 does not exist: 0 to 1)" in result.stderr
    assert result.stdout.splitlines() == ["Aqua: Are you new here?",
                                          "Aqua: Welcome to Axel, You!"]
    messages = [json.loads(line) for line in saved.read_text().splitlines()[1:]]
    assert [m["mes"] for m in messages] == ["Welcome to Axel, You!"]


def test_prompt_lore_lists_activated_entries_and_why_on_stderr(model, card):
    result = invoke("prompt", model, "-c", card, "-m", "Is the guild in Axel?", "--lore",
                    "--max-new-tokens", "40")
    assert result.exit_code == 0, result.output
    lore = result.stderr[result.stderr.index("(lore:"):].splitlines()
    assert lore[0].startswith("(lore: 2 of 3 entries activated, ")
    assert lore[1:] == ["  Truth: constant", "  Axel: key 'axel' in message 0",
                        "  Guild: lost its 0% roll (key 'guild' in message 0)"]
    assert "lore" not in result.stdout and result.stdout.startswith("Aqua's Persona:")
    # What activated is in the prompt, in insertion order, before the last messages.
    assert "Aqua is useless.\nAxel is a town of beginners.\n" in result.stdout
    assert "frogs" not in result.stdout
