"""docs/cards.md's example card does what the page says."""

import json

from pyg_edge.chat.characters import character_from_card
from pyg_edge.chat.chat_planner import plan_first_turn
from pyg_edge.chat.lore_placement import explain_lore
from support.paths import REPO

PAGE = (REPO / "docs" / "cards.md").read_text(encoding="utf-8")


def fenced() -> list:
    """(language, text) of each fenced block of the page, in order."""
    blocks, current = [], None
    for line in PAGE.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), [])
            else:
                blocks.append((current[0], "".join(current[1])))
                current = None
        elif current is not None:
            current[1].append(line)
    return blocks


def test_the_example_card_gives_the_prompt_and_lore_shown():
    blocks = fenced()
    card = json.loads(next(text for language, text in blocks if language == "json"))
    aqua = character_from_card(card, "card.json")
    assert aqua.notice == ""
    message = "Is the guild giving a quest?"
    prompt = plan_first_turn(aqua, [], message, lambda t: len(t.split()), 512, 100)
    plain = [text for language, text in blocks if not language]
    assert prompt.text + "\n" in plain
    lore = explain_lore(aqua, [], message, lambda t: len(t.split()), 512)
    shown = next(b for b in plain if b.startswith("(lore:"))
    assert lore.splitlines()[1:] == shown.splitlines()[1:]
