"""Pygmalion prompts: persona, scenario, example dialogue and history, fitted to a token budget.

The layout follows the Pygmalion model card and PygmalionAI's gradio-ui:

    {char}'s Persona: {persona}
    Scenario: {scenario}
    <START>
    {example dialogue block}        (each further block after its own <START>)
    <START>
    {history, oldest first}
    You: {message}
    {char}:
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from pyg_edge.chat.characters import USER, Character
from pyg_edge.errors import PromptTooLongError
from pyg_edge.generation.request import ModelInput

_SPEAKER = re.compile(r"^([^\s:<>][^:\n<>]{0,39}):", re.MULTILINE)


@dataclass(frozen=True)
class Message:
    """One chat message.

    Attributes:
      speaker: Who says it; the user is always "You" in the prompt.
      text: What is said.
      is_user: Whether the user said it.
    """

    speaker: str
    text: str
    is_user: bool = False

    def render(self) -> str:
        return f"{USER if self.is_user else self.speaker}: {self.text}"


# Pygmalion's prompt markers: a reply that wrote one would start a card or a chat of its own.
PYGMALION_BANNED = ("Persona:", "Scenario:", "<START>")


@dataclass(frozen=True)
class Prompt(ModelInput):
    """An assembled chat prompt: a ModelInput (what PygModel.stream reads) with its figures.

    Attributes:
      text: The prompt.
      stop_strings: Where the character's turn ends in generated text.
      static_prefix: The leading part that stays the same from turn to turn (persona,
        scenario, example dialogue and a frozen block of older messages): worth caching.
      trim: True: a chat reply is shown trimmed.
      banned: Pygmalion's markers (PYGMALION_BANNED), which start a card or a chat.
      token_count: Tokens in text.
      dropped_messages: Oldest history messages left out (to fit, or before first_message).
      dropped_examples: Example dialogue blocks left out to fit the budget.
      static_messages: History messages (from first_message on) in the static prefix.
      message_frozen: The user's message is in the static prefix too.
    """

    trim: bool = True
    banned: tuple = PYGMALION_BANNED
    token_count: int = 0
    dropped_messages: int = 0
    dropped_examples: int = 0
    static_messages: int = 0
    message_frozen: bool = False


def build_prompt(
    character: Character,
    history: list,
    message: str | None,
    count_tokens: Callable[[str], int],
    max_context: int,
    max_new_tokens: int,
    first_message: int = 0,
    static_messages: int = 0,
    lore: tuple = (),
    lore_depth: int = 0,
    freeze_message: bool = False,
) -> Prompt:
    """Assembles the prompt for the character's next reply, fitted to the context.

    Persona and scenario are always kept; example dialogue blocks are kept while they fit;
    then as many history messages as fit, the oldest dropped first.

    Args:
      character: Who replies.
      history: Earlier Messages, oldest first.
      message: The user's new message, or None to answer the end of history as it is.
      count_tokens: Counts the tokens of a text.
      max_context: The model's context length in tokens.
      max_new_tokens: Tokens to leave free for the reply.
      first_message: Leave out history before this index, fit or not.
      static_messages: Also count this many history messages from first_message on as
        part of the static prefix, when all of them are in the prompt.
      lore: Lorebook text for the chat (chat.lore_placement), always kept: it goes
        lore_depth messages before the reply, but after the static prefix's messages.
      lore_depth: See lore.
      freeze_message: Also put the message in the static prefix, when every history
        message from first_message on is in it and no lore follows them (the message is
        history on the next turn, which then reads only what follows it).

    Raises:
      PromptTooLongError: persona, scenario and message alone do not fit.
    """
    budget = max_context - max_new_tokens
    header = _header_lines(character)
    turn = ([Message(USER, message, is_user=True).render()] if message is not None else [])
    turn.append(f"{character.name}:")
    fixed = count_tokens("\n".join(header + ["<START>"] + list(lore) + turn))
    if fixed > budget:
        raise PromptTooLongError(
            f"persona, scenario{', lore' if lore else ''} and message are {fixed} tokens; "
            f"the context is {max_context} "
            f"with {max_new_tokens} kept for the reply: shorten them or lower max_new_tokens"
        )
    examples = _fit_examples(character.example_dialogue, count_tokens, budget - fixed)
    static = header + [line for block in examples for line in ("<START>", block)]
    rendered = [m.render() for m in history[first_message:]]
    kept = _fit_newest(rendered, count_tokens, budget - fixed - _cost(examples, count_tokens))
    # Lines counted apart can merge at their joins; trim further on the rare overshoot.
    while (tokens := count_tokens(_join(static, rendered[len(rendered) - kept:] + list(lore),
                                        turn))) > budget:
        if not kept:
            break
        kept -= 1
    chat = rendered[len(rendered) - kept:]
    frozen = static_messages if 0 < static_messages <= len(chat) == len(rendered) else 0
    message_frozen = (freeze_message and message is not None and not lore
                      and frozen == len(chat) == len(rendered))
    static_lines = static + (["<START>"] + chat[:frozen] + turn[:message_frozen]
                             if frozen or message_frozen else [])
    if lore:
        at = max(frozen, len(chat) - lore_depth)
        chat = chat[:at] + list(lore) + chat[at:]
        tokens = count_tokens(_join(static, chat, turn))
    return Prompt(
        text=_join(static, chat, turn),
        stop_strings=stop_strings(character, history),
        static_prefix="\n".join(static_lines) + "\n" if static_lines else "",
        token_count=tokens,
        dropped_messages=len(history) - kept,
        dropped_examples=len(character.example_dialogue) - len(examples),
        static_messages=frozen,
        message_frozen=message_frozen,
    )


def _join(static: list, chat: list, turn: list) -> str:
    return "\n".join(static + ["<START>"] + chat + turn)


def _header_lines(character: Character) -> list:
    lines = []
    if character.persona:
        lines.append(f"{character.name}'s Persona: {character.persona}")
    if character.scenario:
        lines.append(f"Scenario: {character.scenario}")
    return lines


def _cost(blocks: list, count_tokens) -> int:
    """Tokens that blocks add, each after its own <START> line."""
    return sum(count_tokens(f"<START>\n{block}\n") for block in blocks)


def _fit_examples(blocks: tuple, count_tokens, room: int) -> list:
    kept = []
    for block in blocks:
        if _cost(kept + [block], count_tokens) > room:
            break
        kept.append(block)
    return kept


def _fit_newest(lines: list, count_tokens, room: int) -> int:
    """How many of the last lines fit in room tokens (each with its newline)."""
    used = kept = 0
    for line in reversed(lines):
        used += count_tokens(line + "\n")
        if used > room:
            break
        kept += 1
    return kept


def stop_strings(character: Character, history: list) -> tuple:
    """Where the character's turn ends: a new <START>, or a line by any speaker.

    Speakers are the user, the character, and whoever speaks in the example dialogue or
    history, so the model never writes the next line for them.
    """
    speakers = [USER, character.name]
    for block in character.example_dialogue:
        speakers += _SPEAKER.findall(block)
    speakers += [m.speaker for m in history if not m.is_user]
    unique = dict.fromkeys(s.strip() for s in speakers if s.strip())
    return tuple(f"\n{speaker}:" for speaker in unique) + ("\n<START>", "<START>")
