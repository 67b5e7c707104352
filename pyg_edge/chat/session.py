"""A chat with one character: history, replies, regenerate, undo, edit, save and load.

Chats are saved in SillyTavern's JSONL layout (a metadata line, then one message per
line: name, is_user, mes), so SillyTavern chats load as they are.
"""

import functools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from pyg_edge.chat.characters import USER, Character
from pyg_edge.chat.completion_stream import CompletionStream, ReadyStream
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.messages import ChatParts
from pyg_edge.chat.prompt import Message, Prompt
from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.errors import ChatFileError, ReentryError
from pyg_edge.generation.replies import check_reply_count
from pyg_edge.generation.sampling import SamplingOptions

_STREAMING = "a reply of this chat is still streaming: read it to the end or close it first"


class ChatSession:
    """A conversation between the user and a character on a model.

    A thin stateful layer over Completions.create_character_reply: it keeps the history,
    and the shared chat planner (pyg_edge.chat.chat_planner) decides what each turn reads.

    Args:
      model: A PygModel.
      character: The Character; its greeting opens the chat.
      options: Sampling options for replies (defaults: SamplingOptions()).
      history: Earlier messages to continue from, instead of the greeting.
      replies: Replies sampled per turn (PygModel.stream with n): the first is shown, the
        others are kept, and regenerate() shows one of them at once instead of generating.
        1 (the default) keeps none.
      smart_context: The share of the history room kept when the history outgrows the
        context, as the server's smart context keeps it (pyg_edge.chat.smart_context).
      on_long_prompt: Called as on_long_prompt(tokens, seconds), from the generation's
        thread, before a long prompt pass (PygModel.stream).
      completions: The Completions to call (default: one of this session's own); chats
        that share one share its planner, which keeps each chat's cached block apart.

    Threads: one reply streams at a time; send(), regenerate() or reply() while a reply
    still streams raises ReentryError. history is a list that a reply appends to when it
    ends: another thread (a UI) may read it, or copy it, at any time.
    """

    def __init__(self, model, character: Character, options: SamplingOptions | None = None,
                 history: list | None = None, replies: int = 1,
                 smart_context: float = DEFAULT_FRACTION, on_long_prompt=None,
                 completions: Completions | None = None):
        self.model = model
        self.completions = completions or Completions(model, smart_context=smart_context)
        self.on_long_prompt = on_long_prompt
        self._streaming = threading.Lock()
        self.character = character
        self.options = options or SamplingOptions()
        self.replies = check_reply_count(replies)
        self._spares = []  # other replies to the context in _spares_for, not yet shown
        self._spares_for = None
        if history is not None:
            self.history = list(history)
        else:
            greeting = [Message(character.name, character.greeting)] if character.greeting else []
            self.history = greeting

    def use_greeting(self, index: int) -> str:
        """Opens the chat with character.greetings[index] (0: the greeting, then the
        card's alternate greetings) while the chat has gone no further than its opening.

        Returns:
          The greeting now opening the chat.

        Raises:
          ValueError: no such greeting, or the user has already spoken.
        """
        greetings = self.character.greetings
        if not 0 <= index < len(greetings):
            raise ValueError(f"greeting {index} does not exist: 0 to {len(greetings) - 1}")
        if len(self.history) > 1 or any(m.is_user for m in self.history):
            raise ValueError("the chat has begun: a greeting can only be chosen first")
        self.history = [Message(self.character.name, greetings[index])]
        return greetings[index]

    def send(self, text: str, cancel=None, replies: int | None = None) -> CompletionStream:
        """Adds the user's message and streams the character's reply.

        Args:
          text: The user's message.
          cancel: An Event that stops the reply when set.
          replies: Replies to sample for this turn (default: self.replies).

        Returns:
          The reply's CompletionStream: iterate (or `async for`) its text pieces; its
          .stats are the reply's own, final when the iteration ends.

        Raises:
          PromptTooLongError: the message does not fit beside the persona and the reply's
            max_new_tokens (older history, then examples, are left out first); the
            history is unchanged.
          ReentryError: a reply of this chat is still streaming.
        """
        n = self.replies if replies is None else check_reply_count(replies)
        message = Message(USER, text.strip(), is_user=True)
        stream = self._start(self.history, message.text, cancel, n)
        self.history.append(message)
        return stream

    def regenerate(self, cancel=None) -> CompletionStream:
        """Replaces the character's last reply with another.

        A spare reply to the same chat (see `replies`) is shown at once, as a single
        piece, without calling the model; otherwise a new reply is generated and streamed.
        """
        self._check_not_streaming()
        last_is_reply = bool(self.history) and not self.history[-1].is_user
        before = self.history[:-1] if last_is_reply else list(self.history)
        if self._spares and self._spares_for == self._context(before):
            self._take_turn()
            self.history[:] = before
            stream = CompletionStream(ReadyStream(self._spares.pop(0)), text=True,
                                      on_end=self._ended)
        else:
            stream = self._reply_to(before, cancel, self.replies)
            self.history[:] = before
        return stream

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

    def prompt(self, message: str | None = None) -> Prompt:
        """The prompt the next reply is generated from (to message, if given).

        Its static prefix (persona, examples and a frozen block of older messages) stays
        the same for several turns, so the model reuses its cached state
        (pyg_edge.chat.chat_planner). A user's message that ends the history is the
        message: it is never left out.
        """
        history, message = _split_message(self.history, message)
        return self.completions.plan_chat(ChatParts(self.character, history, message, ()),
                                          self.options.max_new_tokens)

    def save(self, path) -> None:
        """Writes the chat as SillyTavern JSONL, atomically."""
        write_chat(path, self.character.name, self.history)

    def load(self, path) -> None:
        """Replaces the history with a saved chat's."""
        self.history = read_chat(path, self.character.name)

    def reply(self, cancel=None, replies: int | None = None) -> CompletionStream:
        """Streams the character's reply to the history as it stands, and records it.

        With replies > 1 the other replies are kept as spares once the iteration ends.

        Raises:
          OptionsError: replies is not a valid number of replies (checked at once).
          PromptTooLongError: a user's message that ends the history does not fit.
        """
        n = self.replies if replies is None else check_reply_count(replies)
        return self._reply_to(self.history, cancel, n)

    def _reply_to(self, history: list, cancel, n: int) -> CompletionStream:
        history, message = _split_message(history, None)
        return self._start(history, message, cancel, n)

    def _start(self, history: list, message: str | None, cancel, n: int) -> CompletionStream:
        """Plans the turn (raising before anything changes), then starts its reply."""
        context = self._context(history + ([Message(USER, message, True)] if message else []))
        self._take_turn()
        try:
            stream = self.completions.create_character_reply(
                self.character, history, message, self.options, n=n, cancel=cancel,
                text=True, on_long_prompt=self.on_long_prompt,
                on_end=functools.partial(self._ended, n=n, context=context))
        except BaseException:
            self._streaming.release()
            raise
        self._spares, self._spares_for = [], None
        return stream

    def _take_turn(self) -> None:
        if not self._streaming.acquire(blocking=False):  # another turn started meanwhile
            raise ReentryError(_STREAMING)

    def _check_not_streaming(self) -> None:
        """Refuses a new turn, before it changes anything, while a reply still streams."""
        if self._streaming.locked():
            raise ReentryError(_STREAMING)

    def _ended(self, stream: CompletionStream, shown: str, n: int = 1, context=None) -> None:
        """Whatever was shown is kept, also when the reply was cancelled; spares with it."""
        if shown:
            self.history.append(Message(self.character.name, shown))
        if n > 1:
            self._keep_spares(stream.others, shown, context)
        self._streaming.release()

    def _keep_spares(self, others: list, shown: str, context) -> None:
        """Keeps the finished replies that differ from the shown one and from each other."""
        kept = []
        for text, reason in others:
            if text and reason != "cancelled" and text != shown and text not in kept:
                kept.append(text)
        self._spares, self._spares_for = kept, context

    def _context(self, history=None) -> tuple:
        """What a reply answers: the history before it and the sampling options."""
        return tuple(self.history if history is None else history), self.options


def _split_message(history: list, message: str | None) -> tuple:
    """(history, message): a user's message that ends the history is the turn's message."""
    if message is None and history and history[-1].is_user:
        return list(history[:-1]), history[-1].text
    return list(history), message


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
