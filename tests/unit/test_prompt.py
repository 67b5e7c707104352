"""Prompt assembly: the exact Pygmalion layout, token budgeting, stop strings."""

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import Message, build_prompt
from pyg_edge.errors import PromptTooLongError


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word or newline."""
    return len(text.split()) + text.count("\n")


AQUA = Character(
    name="Aqua",
    persona="A goddess of water.",
    scenario="The square of Axel.",
    greeting="Are you new here?",
    example_dialogue=("You: Hi!\nAqua: Hello!", "You: Bye.\nBob: See you.\nAqua: Bye!"),
)
HISTORY = [
    Message("Aqua", "Are you new here?"),
    Message("You", "Yes, I am.", is_user=True),
    Message("Aqua", "Welcome to Axel!"),
]


def test_the_model_card_layout_exactly():
    prompt = build_prompt(AQUA, HISTORY, "Where is the pub?", words, 2048, 196)
    assert prompt.text == (
        "Aqua's Persona: A goddess of water.\n"
        "Scenario: The square of Axel.\n"
        "<START>\n"
        "You: Hi!\n"
        "Aqua: Hello!\n"
        "<START>\n"
        "You: Bye.\n"
        "Bob: See you.\n"
        "Aqua: Bye!\n"
        "<START>\n"
        "Aqua: Are you new here?\n"
        "You: Yes, I am.\n"
        "Aqua: Welcome to Axel!\n"
        "You: Where is the pub?\n"
        "Aqua:"
    )
    assert prompt.static_prefix == prompt.text[: prompt.text.index("<START>\nAqua: Are")]
    assert prompt.token_count == words(prompt.text)
    assert (prompt.dropped_messages, prompt.dropped_examples) == (0, 0)


def test_stop_strings_cover_every_speaker_and_a_new_start():
    prompt = build_prompt(AQUA, HISTORY, "Hi", words, 2048, 196)
    assert prompt.stop_strings == ("\nYou:", "\nAqua:", "\nBob:", "\n<START>", "<START>")


def test_a_bare_character_gets_one_start_line():
    prompt = build_prompt(Character("Bot"), [], "Hello", words, 2048, 196)
    assert prompt.text == "<START>\nYou: Hello\nBot:"
    assert prompt.static_prefix == ""


def test_no_message_answers_the_end_of_history_as_is():
    history = HISTORY + [Message("You", "Hello?", is_user=True)]
    prompt = build_prompt(Character("Aqua"), history, None, words, 2048, 196)
    assert prompt.text.endswith("Aqua: Welcome to Axel!\nYou: Hello?\nAqua:")


def test_the_oldest_turns_go_first_and_examples_stay_while_they_fit():
    full = build_prompt(AQUA, HISTORY, "Where is the pub?", words, 2048, 196)
    budget = full.token_count - 1  # one token short: the oldest message must go
    prompt = build_prompt(AQUA, HISTORY, "Where is the pub?", words, budget + 10, 10)
    assert prompt.dropped_messages == 1 and prompt.dropped_examples == 0
    assert "Are you new here?" not in prompt.text
    assert "<START>\nYou: Yes, I am.\nAqua: Welcome to Axel!\n" in prompt.text
    assert prompt.token_count <= budget


def test_examples_go_last_block_first_when_even_they_do_not_fit():
    fixed = words("Aqua's Persona: A goddess of water.\nScenario: The square of Axel.\n"
                  "<START>\nYou: Where is the pub?\nAqua:")
    first_block = words("<START>\nYou: Hi!\nAqua: Hello!\n")
    prompt = build_prompt(AQUA, HISTORY, "Where is the pub?", words, fixed + first_block, 0)
    assert prompt.dropped_examples == 1 and prompt.dropped_messages == 3
    assert "Hello!" in prompt.text and "See you." not in prompt.text


def test_persona_and_message_that_cannot_fit_say_by_how_much():
    with pytest.raises(PromptTooLongError, match=r"are 22 tokens; the context is 20 with 10"):
        build_prompt(AQUA, HISTORY, "Where is the pub?", words, 20, 10)


def test_budget_holds_with_a_real_tokenizer(gpt2_tokenizer):
    long_history = [Message("You" if i % 2 else "Aqua", f"Message number {i} here.", bool(i % 2))
                    for i in range(60)]
    prompt = build_prompt(AQUA, long_history, "And now?", gpt2_tokenizer.count, 256, 40)
    assert prompt.token_count == gpt2_tokenizer.count(prompt.text) <= 216
    assert prompt.dropped_messages > 0
    assert prompt.text.endswith("You: And now?\nAqua:")
    kept = 60 - prompt.dropped_messages
    assert f"Message number {60 - kept} here." in prompt.text
    assert f"Message number {59 - kept} here." not in prompt.text
