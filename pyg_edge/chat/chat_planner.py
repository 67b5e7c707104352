"""Every chat surface's prompt, planned from its messages: ChatSession (and so `pyg-edge
chat` and apps), the web chat page, Completions.create_chat_completion and `pyg-edge prompt`.

A chat comes in structured parts (the card, the history, the user's new message: ChatParts)
and leaves as a Prompt whose static prefix CTranslate2 caches. The same parts give the same
prompt on every surface; nothing is found again in rendered text (that is for raw-text
completions only: pyg_edge.chat.planning).

What fits, in one rule: the persona, scenario and the user's message always stay; older
history goes first, then example dialogues; a message that does not fit beside the persona
raises PromptTooLongError before anything changes.

What is cached: the card, and a frozen block of older messages after it, which stays the
same for several turns, so each turn reads only what follows it:

- While the chat grows, the block moves on once more than UNCACHED_TAIL_TOKENS follow it
  (one pass over the prompt, then fast turns again).
- Once the history outgrows the context it is cut deep, as the server's smart context cuts
  a full raw chat: the newest `smart_context` share of the history room is kept and frozen,
  and stays so until the history outgrows the context again; until then, what follows the
  block may grow to one exact prompt pass (the prefill chunk).

Each conversation's block is found again in the next turn's history by its messages, so
the plan survives a regenerate, an undo, or a client that resends the whole chat, and
several chats (two windows, two characters) keep their own blocks side by side.
"""

import threading
from dataclasses import dataclass, replace

from pyg_edge.chat.characters import USER
from pyg_edge.chat.lore_placement import DEFAULT_PLACEMENT, plan_lore
from pyg_edge.chat.messages import CONTINUE, IMPERSONATE, ChatParts
from pyg_edge.chat.prompt import Message, Prompt, build_prompt
from pyg_edge.chat.smart_context import DEFAULT_FRACTION, FULL_SHARE, history_budget

# Past this many tokens after the cached block, a turn freezes a new block (one slow turn)
# so that the next turns stay fast.
UNCACHED_TAIL_TOKENS = 256
# Conversations whose blocks are remembered (the least recently planned is forgotten).
CONVERSATIONS = 16
# The share of the history room a deep cut keeps when smart context is off.
PLAIN_CUT_SHARE = 0.75


@dataclass
class _Conversation:
    """What one chat froze: its card, and the messages after it in the static prefix."""

    card: tuple
    block: tuple = ()
    cut: bool = False  # the history was cut deep (the block ends where the cut kept)

    def trimmed_into(self, history: list) -> bool:
        """Whether history starts inside the block: a client dropped its oldest messages,
        the first of the block among them, and kept the rest of the block."""
        size = len(self.block)
        return any(history[:size - k] == list(self.block[k:]) for k in range(1, size)
                   if history and self.block[k] == history[0])

    def start_in(self, history: list) -> int | None:
        """Where the block starts in history (0 for none), or None when it is not there."""
        size = len(self.block)
        if not size:
            return 0
        for i in range(len(history) - size, -1, -1):
            if history[i] == self.block[0] and tuple(history[i:i + size]) == self.block:
                return i
        return None


class ChatPlanner:
    """Plans each chat's prompts so that their static prefixes stay cached.

    Args:
      count: Counts the tokens of a text (the model's tokenizer).
      prefill_chunk: The model's prefill chunk (0 for one pass): after a deep cut, what
        follows the block may grow to this.
      smart_context: The share of the history room a deep cut keeps (0: cut as little as
        fits, the block then moving on every UNCACHED_TAIL_TOKENS).
      lore_placement: Where a card's activated lorebook entries go (chat.lore_placement).
    """

    def __init__(self, count, prefill_chunk: int = 0, smart_context: float = DEFAULT_FRACTION,
                 lore_placement: str = DEFAULT_PLACEMENT):
        self.lore_placement = lore_placement
        self.count = count
        self.prefill_chunk = prefill_chunk
        self.smart_context = smart_context
        self._conversations = []  # most recently planned last
        self._lock = threading.Lock()

    def plan(self, parts: ChatParts, max_context: int, max_new_tokens: int) -> Prompt:
        """The prompt for what parts ask (a reply, a continuation or an impersonation).

        Raises:
          PromptTooLongError: the persona, scenario and message alone do not fit in
            max_context less max_new_tokens.
        """
        if parts.message is not None:  # as every surface shows and saves it
            parts = replace(parts, message=parts.message.strip())
        with self._lock:
            if parts.kind == CONTINUE:  # the reply goes on inside the last message
                last = parts.history[-1].text
                reserve = self.count(f" {last}")
                prompt = self._plan(replace(parts, history=parts.history[:-1]), max_context,
                                    max_new_tokens + reserve)
                return replace(prompt, text=f"{prompt.text} {last}",
                               token_count=prompt.token_count + reserve)
            prompt = self._plan(parts, max_context, max_new_tokens)
            if parts.kind == IMPERSONATE:  # the user's turn instead of the character's
                opened = prompt.text.rfind(f"{parts.character.name}:")
                return replace(prompt, text=prompt.text[:opened] + f"{USER}:")
            return prompt

    def _plan(self, parts: ChatParts, max_context: int, max_new_tokens: int) -> Prompt:
        history = parts.history
        lore = plan_lore(parts.character, history, parts.message, self.count, max_context,
                         self.lore_placement)
        parts = replace(parts, character=lore.character)  # persona lore changes the card
        # The chat as the next turns will see it: the message is history then.
        said = history + ([Message(USER, parts.message, True)] if parts.message else [])
        chat, first = self._conversation(parts.character, said)

        def build(first_message: int, frozen: int, slack: int = 0) -> Prompt:
            return build_prompt(parts.character, history, parts.message, self.count,
                                max_context - slack, max_new_tokens, first_message,
                                min(frozen, len(history) - first_message), lore.lines,
                                lore.depth, freeze_message=frozen > len(history) - first_message)

        # A client that trims a full chat itself (SillyTavern drops its oldest messages
        # each turn: the history now starts inside the block) is cut deep too, or every
        # turn would read its whole prompt; a short one was shortened on purpose.
        trimmed = first is None
        first = first or 0
        prompt = build(first, 0 if trimmed else len(chat.block))
        room = max_context - max_new_tokens
        if (trimmed and prompt.token_count >= FULL_SHARE * room) or (
                prompt.dropped_messages > first):
            first = self._deep_cut(build, len(history), room)
            chat.cut = True
            prompt = build(first, len(said) - first)
        elif (prompt.token_count - self.count(prompt.static_prefix)
              > self._tail_limit(chat, max_context)):
            prompt = build(first, len(said) - first)
        chat.block = tuple(said[first:first + prompt.static_messages + prompt.message_frozen])
        return prompt

    def _deep_cut(self, build, messages: int, room: int) -> int:
        """Where a deep cut starts the history: its newest smart_context share of the room."""
        head = build(messages, 0).token_count  # the card, the message and the reply's turn
        keep = history_budget(room, head, self.smart_context or PLAIN_CUT_SHARE)
        return build(0, 0, slack=room - head - keep).dropped_messages

    def _tail_limit(self, chat: _Conversation, max_context: int) -> int:
        """Tokens after the block before it moves on (a pass over it all)."""
        if not chat.cut or not self.smart_context:
            return UNCACHED_TAIL_TOKENS
        return self.prefill_chunk or max_context

    def _conversation(self, character, said: list) -> tuple:
        """(The conversation said continues, where its block starts or None where the
        client trimmed the history into it); a new conversation (block at 0) if none."""
        card = _card_key(character)
        for chat in reversed(self._conversations):
            if chat.card != card:
                continue
            start = chat.start_in(said)
            if start is not None or chat.trimmed_into(said):
                self._conversations.remove(chat)
                self._conversations.append(chat)
                return chat, start
        chat = _Conversation(card)
        self._conversations = self._conversations[-(CONVERSATIONS - 1):] + [chat]
        return chat, 0


def _card_key(c) -> tuple:
    return c.name, c.persona, c.scenario, c.example_dialogue


def plan_first_turn(character, history: list, message: str | None, count, max_context: int,
                    max_new_tokens: int, prefill_chunk: int = 0) -> Prompt:
    """The prompt a chat's first call reads (`pyg-edge prompt`: what every surface sends)."""
    parts = ChatParts(character, list(history), message, ())
    return ChatPlanner(count, prefill_chunk).plan(parts, max_context, max_new_tokens)
