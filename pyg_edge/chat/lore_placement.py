"""Where a chat's activated lore goes in Pygmalion's prompt (the chat planner asks here).

Two places, measured in docs/cards.md (the demo model, and planned at the 2.7B shape):

- "depth" (the default): in the chat, `depth` messages before the reply (the entry's
  depth, SillyTavern's 4 by default), yet never inside the cached block of older messages
  (then right after it). An entry that activates mid-chat costs its own tokens in the
  turns it is active, and the cached prefix (card, examples, frozen block) stays.
- "persona": with the card, as SillyTavern places before_char/after_char entries: before
  or after the persona. Each change of the active entries changes the prompt's first line,
  so that turn reads the whole prompt again (unless the cache still holds that prefix).

Entries marked at a depth (SillyTavern's position 4, the V3 @@depth decorator) go into the
chat with either placement. The chat lore goes in as one block at the smallest depth its
entries ask for, in insertion order.
"""

from dataclasses import dataclass, replace

from pyg_edge.chat.characters import USER, Character
from pyg_edge.chat.lorebook import DEFAULT_DEPTH, lore_budget, scan

PLACEMENTS = ("depth", "persona")
DEFAULT_PLACEMENT = "depth"


@dataclass(frozen=True)
class LorePlan:
    """The lore of one turn, placed.

    Attributes:
      character: The character to build the prompt with (persona lore folded in).
      lines: Lore text that goes into the chat.
      depth: Messages from the end of the history before which the chat lore goes.
      activations: The lorebook's Activations for this turn, in prompt order.
    """

    character: Character
    lines: tuple = ()
    depth: int = DEFAULT_DEPTH
    activations: tuple = ()


def plan_lore(character: Character, history: list, message: str | None, count,
              max_context: int, placement: str = DEFAULT_PLACEMENT) -> LorePlan:
    """Activates the character's lorebook on a chat and places what fired.

    Args:
      character: The Character (with its book, or none).
      history: Earlier Messages, oldest first.
      message: The user's new message, or None.
      count: Counts tokens (for the lore budget: lorebook.lore_budget).
      max_context: The context in tokens.
      placement: One of PLACEMENTS.

    Raises:
      ValueError: placement is not one of PLACEMENTS.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"lore placement {placement!r}: expected one of {', '.join(PLACEMENTS)}")
    if character.book is None or not character.book.entries:
        return LorePlan(character)
    chat = [m.render() for m in history]
    if message is not None:
        chat.append(f"{USER}: {message}")
    fired = scan(character.book, chat, count, lore_budget(character.book, max_context))
    activations = tuple(a for a in fired.activated if a.entry.content)
    in_chat = [a.entry for a in activations
               if a.entry.position == "at_depth" or placement == "depth"]
    before = [a.entry.content for a in activations
              if a.entry not in in_chat and a.entry.position == "before_char"]
    after = [a.entry.content for a in activations
             if a.entry not in in_chat and a.entry.position == "after_char"]
    if before or after:
        persona = "\n".join(before + ([character.persona] if character.persona else []) + after)
        character = replace(character, persona=persona)
    depths = [e.depth if e.position == "at_depth" else DEFAULT_DEPTH for e in in_chat]
    return LorePlan(character, tuple(e.content for e in in_chat),
                    min(depths, default=DEFAULT_DEPTH), activations)


def explain_lore(character: Character, history: list, message: str | None, count,
                 max_context: int) -> str:
    """Lines saying which lorebook entries a chat activates and why, and which matched but
    were left out (over the lore budget, or a lost probability roll): `pyg-edge prompt
    --lore`."""
    book = character.book
    if book is None:
        return "(lore: the card has no lorebook)"
    chat = [m.render() for m in history] + ([f"{USER}: {message}"] if message is not None else [])
    found = scan(book, chat, count, lore_budget(book, max_context))
    lines = [f"(lore: {len(found.activated)} of {len(book.entries)} entries activated, "
             f"{found.tokens} tokens)"]
    lines += [f"  {a.entry.name}: {a.reason}" for a in found.activated]
    lines += [f"  {a.entry.name}: over the lore budget ({a.reason})" for a in found.over_budget]
    lines += [f"  {a.entry.name}: lost its {a.entry.probability:g}% roll ({a.reason})"
              for a in found.missed_roll]
    return "\n".join(lines)
