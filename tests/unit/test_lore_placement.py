"""Lore in the prompt: a chat that mentions a key gets the entry, placed where the planner
keeps the cached prefix (depth) or with the card (persona)."""

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.chat_planner import ChatPlanner, plan_first_turn
from pyg_edge.chat.lore_placement import plan_lore
from pyg_edge.chat.lorebook import Lorebook, LoreEntry
from pyg_edge.chat.messages import ChatParts
from pyg_edge.chat.prompt import Message

BOOK = Lorebook((
    LoreEntry("[Axel is a town of beginners.]", ("axel",), name="Axel"),
    LoreEntry("[Aqua is a goddess.]", (), constant=True, name="Truth", insertion_order=0,
              position="after_char"),
    LoreEntry("[The frogs are giant.]", ("frog",), name="Frogs", position="at_depth",
              depth=1),
))
AQUA = Character("Aqua", persona="A cheerful goddess.", greeting="Hi!", book=BOOK)


def words(text: str) -> int:
    return len(text.split())


def chat(turns: int) -> list:
    history = [Message("Aqua", "Hi!")]
    for i in range(turns):
        history += [Message("You", f"Message {i}.", is_user=True),
                    Message("Aqua", f"Reply {i}.")]
    return history


def test_a_key_in_the_chat_puts_the_entry_in_the_prompt():
    prompt = plan_first_turn(AQUA, chat(3), "Tell me about Axel.", words, 2048, 100)
    assert "[Axel is a town of beginners.]" in prompt.text
    assert "[The frogs are giant.]" not in prompt.text
    without = plan_first_turn(AQUA, chat(3), "Tell me about the sea.", words, 2048, 100)
    assert "[Axel" not in without.text


def test_depth_placement_puts_lore_in_the_chat_and_keeps_the_card_line():
    prompt = plan_first_turn(AQUA, chat(3), "Axel? Frogs?", words, 2048, 100)
    lines = prompt.text.splitlines()
    assert lines[0] == "Aqua's Persona: A cheerful goddess."
    # One block of chat lore, in insertion order, at the smallest depth asked (the frogs: 1).
    at = lines.index("[Aqua is a goddess.]")
    assert lines[at:at + 4] == ["[Aqua is a goddess.]", "[Axel is a town of beginners.]",
                                "[The frogs are giant.]", "Aqua: Reply 2."]
    assert lines[-2:] == ["You: Axel? Frogs?", "Aqua:"]


def test_persona_placement_puts_positioned_entries_with_the_card():
    lore = plan_lore(AQUA, chat(1), "Axel? Frogs?", words, 2048, "persona")
    assert lore.character.persona == ("[Axel is a town of beginners.]\nA cheerful goddess.\n"
                                      "[Aqua is a goddess.]")
    assert lore.lines == ("[The frogs are giant.]",) and lore.depth == 1  # at_depth stays
    with pytest.raises(ValueError, match="expected one of depth, persona"):
        plan_lore(AQUA, [], "x", words, 2048, "middle")


def test_an_entry_that_activates_mid_chat_keeps_the_cached_prefix_at_depth_only():
    def static_prefixes(placement):
        planner = ChatPlanner(words, lore_placement=placement)
        history, prefixes = [Message("Aqua", "Hi!")], []
        for turn in range(8):
            message = "Is Axel far?" if turn == 4 else f"Message {turn}, " + "word " * 40
            prompt = planner.plan(ChatParts(AQUA, list(history), message, ()), 2048, 100)
            prefixes.append(prompt.static_prefix)
            history += [Message("You", message, is_user=True), Message("Aqua", f"Reply {turn}.")]
        return prefixes

    depth, persona = static_prefixes("depth"), static_prefixes("persona")
    # At depth, the turn that mentions Axel still starts with the previous turn's prefix.
    assert depth[4].startswith(depth[3]) and depth[5].startswith(depth[4])
    # With the card, that turn's prefix differs from its first line on: all read again.
    assert persona[4].splitlines()[0] == "Aqua's Persona: [Axel is a town of beginners.]"
    assert persona[3].splitlines()[0] == "Aqua's Persona: A cheerful goddess."


def test_the_budget_keeps_lore_within_the_book_budget():
    # Axel (insertion order 100) goes first and takes the 6 words; Truth does not fit.
    book = Lorebook(BOOK.entries, token_budget=6)
    lore = plan_lore(Character("Aqua", book=book), [], "Axel?", words, 2048)
    assert [a.entry.name for a in lore.activations] == ["Axel"]
