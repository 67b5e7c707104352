"""On the demo model: an entry that activates at turn 5 keeps the cached prefix at depth
(the turn reads its new tokens and the lore), and re-reads the whole prompt with the card."""

from dataclasses import replace

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.chat_planner import ChatPlanner
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.lorebook import Lorebook, LoreEntry
from pyg_edge.chat.session import ChatSession
from pyg_edge.generation.sampling import SamplingOptions

LORE = "[The old lighthouse stands on the northern cliff; its lamp turns by itself.]"
PERSONA = ("Robin is a cheerful sailor who has crossed every sea of the old maps. He tells "
           "long stories about storms, whales and islands, laughs loudly, and never refuses "
           "a cup of tea or a question about the harbour.")
ROBIN = Character("Robin", persona=PERSONA, greeting="Ahoy!",
                  book=Lorebook((LoreEntry(LORE, ("lighthouse",), name="Lighthouse"),)))
MESSAGES = ["Hello there.", "How is the sea?", "Any ships today?", "Tell me a story.",
            "What about the lighthouse?", "And the storm?"]


def turns(model, character, placement):
    completions = Completions(model)
    completions.chats = ChatPlanner(model.tokenizer.count, model.prefill_chunk,
                                    lore_placement=placement)
    session = ChatSession(model, character, SamplingOptions(temperature=0, max_new_tokens=12),
                          completions=completions)
    stats = []
    for text in MESSAGES:
        stream = session.send(text)
        stream.text()
        stats.append(stream.stats)
    return stats


@pytest.mark.parametrize("placement", ["depth", "persona"])
def test_an_entry_activating_at_turn_5(demo_pyg_model, placement):
    plain = turns(demo_pyg_model, replace(ROBIN, book=None), placement)
    lore = turns(demo_pyg_model, ROBIN, placement)
    lore_tokens = demo_pyg_model.tokenizer.count(LORE + "\n")
    # (The first turn may find the plain run's card still cached.)
    assert [s.read_tokens for s in lore[1:4]] == [s.read_tokens for s in plain[1:4]]
    fifth = lore[4]
    if placement == "depth":
        # The card and the frozen messages stay cached: only what follows them and the lore.
        assert fifth.read_tokens <= plain[4].read_tokens + lore_tokens + 2
        card = demo_pyg_model.tokenizer.count(f"Robin's Persona: {PERSONA}")
        assert fifth.read_tokens <= fifth.prompt_tokens - card
    else:
        assert fifth.read_tokens == fifth.prompt_tokens  # the whole prompt again
