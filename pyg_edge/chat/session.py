"""A chat with one character: history, replies, regenerate, undo, edit, save and load.

Chats are saved in SillyTavern's JSONL layout (a metadata line, then one message per
line: name, is_user, mes), so SillyTavern chats load as they are.
"""

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pyg_edge.chat.characters import USER, Character
from pyg_edge.chat.prompt import Message, Prompt, build_prompt
from pyg_edge.chat.smart_context import DEFAULT_FRACTION, history_budget
from pyg_edge.errors import ChatFileError, ReentryError
from pyg_edge.generation.replies import check_reply_count
from pyg_edge.generation.sampling import SamplingOptions

_STREAMING = "a reply of this chat is still streaming: read it to the end or close it first"
# Past this many tokens after the cached prefix, a turn re-freezes the prefix (one slow
# turn) so that the next turns stay fast.
UNCACHED_TAIL_TOKENS = 256


class ChatSession:
    """A conversation between the user and a character on a model.

    Args:
      model: A PygModel.
      character: The Character; its greeting opens the chat.
      options: Sampling options for replies (defaults: SamplingOptions()).
      history: Earlier messages to continue from, instead of the greeting.
      replies: Replies sampled per turn (PygModel.stream_replies): the first is shown, the
        others are kept, and regenerate() shows one of them at once instead of generating.
        1 (the default) keeps none.
      smart_context: The share of the history room kept when the history outgrows the
        context, as the server's smart context keeps it (pyg_edge.chat.smart_context).
      on_long_prompt: Called as on_long_prompt(tokens, seconds), from the generation's
        thread, before a long prompt pass (PygModel.stream).

    Threads: one reply streams at a time; send(), regenerate() or reply() while a reply
    still streams raises ReentryError. history is a list that a reply appends to when it
    ends: another thread (a UI) may read it, or copy it, at any time.
    """

    def __init__(self, model, character: Character, options: SamplingOptions | None = None,
                 history: list | None = None, replies: int = 1,
                 smart_context: float = DEFAULT_FRACTION, on_long_prompt=None):
        self.model = model
        self.on_long_prompt = on_long_prompt
        self._streaming = threading.Lock()
        self.character = character
        self.options = options or SamplingOptions()
        self.replies = check_reply_count(replies)
        self._spares = []  # other replies to the context in _spares_for, not yet shown
        self._spares_for = None
        self.smart_context = smart_context
        self._first = 0  # history before this index is left out of prompts
        self._frozen = 0  # messages from _first on that belong to the cached prefix
        self._cut = False  # whether the history was ever cut deep
        if history is not None:
            self.history = list(history)
        else:
            greeting = [Message(character.name, character.greeting)] if character.greeting else []
            self.history = greeting

    def send(self, text: str, cancel=None, replies: int | None = None) -> Iterator[str]:
        """Adds the user's message and streams the character's reply.

        Args:
          text: The user's message.
          cancel: An Event that stops the reply when set.
          replies: Replies to sample for this turn (default: self.replies).
        """
        if replies is not None:
            check_reply_count(replies)
        self._check_not_streaming()
        self.history.append(Message(USER, text.strip(), is_user=True))
        return self.reply(cancel, replies)

    def regenerate(self, cancel=None) -> Iterator[str]:
        """Replaces the character's last reply with another.

        A spare reply to the same chat (see `replies`) is shown at once, as a single
        piece, without calling the model; otherwise a new reply is generated and streamed.
        """
        self._check_not_streaming()
        if self.history and not self.history[-1].is_user:
            self.history.pop()
        if self._spares and self._spares_for == self._context():
            spare = self._spares.pop(0)
            self.history.append(Message(self.character.name, spare))
            return _at_once(spare)
        return self.reply(cancel)

    @property
    def spares(self) -> tuple:
        """The replies regenerate() can still show at once for the chat as it stands."""
        last_is_reply = self.history and not self.history[-1].is_user
        context = self._context(self.history[:-1] if last_is_reply else self.history)
        return tuple(self._spares) if self._spares_for == context else ()

    def undo(self) -> list:
        """Removes the last exchange (the user's last message and what followed it).

        Returns:
          The removed messages.
        """
        last_user = max((i for i, m in enumerate(self.history) if m.is_user), default=None)
        if last_user is None:
            return []
        removed, self.history = self.history[last_user:], self.history[:last_user]
        return removed

    def edit(self, index: int, text: str) -> None:
        """Replaces the text of message index (negative counts from the end)."""
        old = self.history[index]
        self.history[index] = Message(old.speaker, text.strip(), old.is_user)

    def prompt(self) -> Prompt:
        """The prompt that the next reply is generated from.

        Its static prefix (persona, examples and a frozen block of older messages) stays
        the same for several turns, so the model reuses its cached state. While the chat
        grows, the frozen block moves on once the uncached tail grows past
        UNCACHED_TAIL_TOKENS. Once the history outgrows the context it is cut deep, as
        the server's smart context cuts a full chat: the newest smart_context share of the
        history room is kept and frozen, and stays so until the history outgrows the
        context again (the tail then reads only the turns since the cut).
        """
        self._first = min(self._first, len(self.history))
        self._frozen = min(self._frozen, len(self.history) - self._first)
        count = self.model.tokenizer.count
        prompt = self._build()
        if prompt.dropped_messages > self._first:
            self._cut_deep(count)
            prompt = self._build()
        if prompt.token_count - count(prompt.static_prefix) > self._tail_limit():
            self._frozen = len(self.history) - self._first
            prompt = self._build()
        return prompt

    def _cut_deep(self, count) -> None:
        """Leaves out all but the newest smart_context share of the history room, frozen."""
        self._frozen = 0
        room = self.model.context_length - self.options.max_new_tokens
        head = count(self._build(first=len(self.history)).text)  # card and reply turn
        keep = history_budget(room, head, self.smart_context or 0.75)
        self._first = self._build(slack=room - head - keep).dropped_messages
        self._frozen = len(self.history) - self._first
        self._cut = bool(self.smart_context)

    def _tail_limit(self) -> int:
        """Tokens after the frozen block before it moves on (a pass over it all)."""
        if not self._cut:
            return UNCACHED_TAIL_TOKENS
        return self.model.prefill_chunk or self.model.context_length

    def _build(self, slack: int = 0, first: int | None = None) -> Prompt:
        return build_prompt(
            self.character, self.history, None, self.model.tokenizer.count,
            self.model.context_length - slack, self.options.max_new_tokens,
            first_message=self._first if first is None else first,
            static_messages=self._frozen,
        )

    def save(self, path) -> None:
        """Writes the chat as SillyTavern JSONL, atomically."""
        write_chat(path, self.character.name, self.history)

    def load(self, path) -> None:
        """Replaces the history with a saved chat's."""
        self.history = read_chat(path, self.character.name)

    def reply(self, cancel=None, replies: int | None = None) -> Iterator[str]:
        """Streams the character's reply to the history as it stands, and records it.

        With replies > 1 the other replies are kept as spares once the iteration ends.

        Raises:
          ValueError: replies is not a valid number of replies (checked at once).
        """
        n = self.replies if replies is None else check_reply_count(replies)
        self._check_not_streaming()
        self._spares, self._spares_for = [], None
        return self._stream_reply(n, cancel)

    def _check_not_streaming(self) -> None:
        """Refuses a new turn, before it changes anything, while a reply still streams."""
        if self._streaming.locked():
            raise ReentryError(_STREAMING)

    def _stream_reply(self, n: int, cancel) -> Iterator[str]:
        if not self._streaming.acquire(blocking=False):  # another turn started meanwhile
            raise ReentryError(_STREAMING)
        try:
            yield from self._generate_reply(n, cancel)
        finally:
            self._streaming.release()

    def _generate_reply(self, n: int, cancel) -> Iterator[str]:
        context, prompt = self._context(), self.prompt()
        kwargs = dict(cancel=cancel, on_long_prompt=self.on_long_prompt)
        if n > 1:
            stream = self.model.stream_replies(prompt, n, self.options, **kwargs)
        else:
            stream = self.model.stream(prompt, self.options, **kwargs)
        pieces = []
        try:
            for piece in stream:
                pieces.append(piece)
                yield piece
        finally:
            stream.close()
            # Whatever was shown is kept, also when the reply was cancelled.
            if pieces:
                self.history.append(Message(self.character.name, "".join(pieces)))
        if n > 1:
            self._keep_spares(stream, "".join(pieces), context)

    def _keep_spares(self, replies, shown: str, context) -> None:
        """Keeps the finished replies that differ from the shown one and from each other."""
        kept = []
        for text, reason in zip(replies.texts[1:], replies.finish_reasons[1:], strict=True):
            if text and reason != "cancelled" and text != shown and text not in kept:
                kept.append(text)
        self._spares, self._spares_for = kept, context

    def _context(self, history=None) -> tuple:
        """What a reply answers: the history before it and the sampling options."""
        return tuple(self.history if history is None else history), self.options


def _at_once(text: str) -> Iterator[str]:
    """A reply already made, as a stream of one piece (closable like a generated one)."""
    yield text


def write_chat(path, character_name: str, history: list) -> None:
    """Saves messages as SillyTavern JSONL; a crash mid-write leaves the old file intact."""
    path = Path(path)
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    lines = [{"user_name": USER, "character_name": character_name, "create_date": now}]
    lines += [{"name": m.speaker, "is_user": m.is_user, "send_date": now, "mes": m.text}
              for m in history]
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise ChatFileError(f"cannot save the chat to {path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as error:
        os.unlink(temporary)
        raise ChatFileError(f"cannot save the chat to {path}: {error.strerror}") from None


def read_chat(path, character_name: str = "") -> list:
    """Reads a SillyTavern JSONL chat (pyg-edge saves the same layout).

    Raises:
      ChatFileError: the file is missing or a line is not a chat message.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ChatFileError(f"cannot read chat {path}: {error}") from None
    messages = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise ChatFileError(f"{path}, line {number}: not JSON") from None
        if number == 1 and "mes" not in entry:
            continue  # the metadata line
        if not isinstance(entry, dict) or not isinstance(entry.get("mes"), str):
            raise ChatFileError(f"{path}, line {number}: not a chat message (no 'mes')")
        is_user = bool(entry.get("is_user"))
        speaker = USER if is_user else str(entry.get("name") or character_name)
        messages.append(Message(speaker, entry["mes"].replace("\r\n", "\n").strip(), is_user))
    return messages
