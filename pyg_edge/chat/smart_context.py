"""Cut deep, then match: a chat whose context is full reads only what is new each turn.

Once a chat outgrows its context the client drops its oldest messages every turn. GPT-Neo's
positions are learned and absolute, so every position after the card shifts, nothing but
the card matches what CTranslate2 has cached, and each turn would re-read the whole prompt.
SmartContext instead:

1. cuts deep: keeps the card (everything before the history) and only the newest part of
   the history, `fraction` of the room the client budgets for it, cut where a message
   starts, and has that cached as the static prefix: one pass over about half a context;
2. matches: on the next turns it finds where that kept block starts in the new prompt (the
   client still sends older messages before it), drops what comes before it, keeps the
   card in front, and the turn reads only what follows the cached block;
3. cuts again when the client's own trimming reaches into the kept block, the card
   changes, or what follows the block outgrows one exact prompt pass. Example dialogues
   that the client pushes out of the card as the chat grows are no change: the kept card
   keeps them until the next cut. A chat that grows while its context has room keeps its
   first cached prefix (the card) for as long as the rest is one exact pass, and is cut
   when it outgrows it: replacing a cached prefix means reloading the model, which would
   make that turn slower than no reuse at all.

The model sees between `fraction` and all of the history the client sent. The idea is
KoboldCpp's SmartContext; unlike it, the split is an option and the trigger is the client's
own budget (max_context_length - max_length), not the model's context. The model input is
exactly the kept text's tokens: the prefix ends where a line starts, which GPT-2's
tokenizer never merges across, so the cached tokens are those of the whole kept text.
"""

import logging
import os
import re
from dataclasses import dataclass

from pyg_edge.errors import OptionsError

logger = logging.getLogger("pyg_edge")

DEFAULT_FRACTION = 0.8
# A prompt that shifted is "full" when it takes at least this share of the client's room:
# below it the client shortened the chat on purpose (an edit, a deleted message).
FULL_SHARE = 0.75
_SPEAKER_LINE = re.compile(r"^([^\s:<>][^:\n<>]{0,39}):", re.MULTILINE)
_CHAT_START = "<START>\n"


@dataclass(frozen=True)
class Fitted:
    """What the model reads for one prompt.

    Attributes:
      text: The prompt as the model reads it (the client's, or the kept part of it).
      static_chars: Leading characters to cache as the static prefix; 0 leaves the choice
        to the prefix planner.
      event: "cut" (a new kept block), "match" (the kept block found again) or "".
      kept_tokens: History tokens the model reads (with event).
      history_tokens: History tokens the client sent (with event).
    """

    text: str
    static_chars: int = 0
    event: str = ""
    kept_tokens: int = 0
    history_tokens: int = 0


def history_budget(room: int, head_tokens: int, fraction: float) -> int:
    """Tokens of history a deep cut keeps: fraction of what the room leaves after the card."""
    return max(0, int(fraction * (room - head_tokens)))


class SmartContext:
    """Keeps the prompts of one long chat stable, so its cached prefix stays useful.

    Args:
      count: Counts the tokens of a text.
      fraction: Share of the client's history room a cut keeps; 0 turns this off.
      max_dynamic: The most tokens that may follow the cached block (the model's exact
        pass after a prefix), or None for no limit.
    """

    def __init__(self, count, fraction: float = DEFAULT_FRACTION, max_dynamic: int | None = None):
        if not 0 <= fraction < 1:
            raise OptionsError(f"smart context fraction is {fraction}: expected 0 (off) to < 1")
        self.count = count
        self.fraction = fraction
        self.max_dynamic = max_dynamic
        self.last = None  # the latest Fitted with an event, for /api/extra/perf
        self._head = self._block = None  # the kept card and history block of the last cut
        self._previous = None

    def fit(self, text: str, room: int, speakers=(), outgrown: bool = False) -> Fitted:
        """What the model should read of text, the client's prompt for this turn.

        Args:
          text: The prompt as the client sent it.
          room: The client's budget for the prompt (its context less its reply length).
          speakers: Names that start a message line ("You", the character's name...);
            empty: any "Name:" line in the history starts one.
          outgrown: What follows the cached prefix is more than one exact pass: a chat
            that grew to nearly fill its room is cut then, as a full one would be.
        """
        previous, self._previous = self._previous, text
        if not self.fraction:
            return Fitted(text)
        fitted = self._match(text, room, speakers)
        if fitted is None:
            self._head = self._block = None
            if previous is not None and self._is_full_shift(text, previous, room):
                fitted = self._cut(text, previous, room, speakers)
            elif outgrown:  # the history starts after "<START>" (else: no cut)
                fitted = self._cut(text, "", room, speakers)
        if fitted is None:
            return Fitted(text)
        self.last = fitted
        logger.info("smart context (%s): kept %d of %d history tokens", fitted.event,
                    fitted.kept_tokens, fitted.history_tokens)
        return fitted

    def _is_full_shift(self, text: str, previous: str, room: int) -> bool:
        """The client dropped old messages from a prompt that fills its room."""
        extends = text.startswith(previous.rstrip())
        return not extends and self.count(text) >= FULL_SHARE * room

    def _match(self, text: str, room: int, speakers) -> Fitted | None:
        """The kept block found again in text (at a message start), or None."""
        start = self._kept_card_end(text) if self._block is not None else None
        if start is None:
            return None
        at = text.find(self._block, start)
        while at >= 0 and not _starts_message(text, at, speakers):
            at = text.find(self._block, at + 1)
        if at < 0:
            return None
        kept = self._head + text[at:]
        static = len(self._head) + len(self._block)
        if self.max_dynamic is not None and self.count(kept[static:]) > self.max_dynamic:
            return None
        if start != len(self._head) and self.count(kept) > room:
            return None  # the examples kept take the room the client made for the history
        history = self.count(text[start:_last_line(text)])
        return Fitted(kept, static, "match", self.count(kept[len(self._head):_last_line(kept)]),
                      history)

    def _kept_card_end(self, text: str) -> int | None:
        """Where text's history starts if its card is the kept one, else None.

        A client that pushes its example dialogues out as the chat grows (SillyTavern's
        default: the last examples go first) sends a card that is the kept one less some
        trailing "<START>" blocks. The kept card, examples included, stays until the next
        cut: dropping them now would cost a new cached prefix each turn they go.
        """
        if text.startswith(self._head):
            return len(self._head)
        if not self._head.endswith(_CHAT_START):
            return None
        chat = text.rfind(_CHAT_START, 0, _last_line(text))
        if chat < 0 or not self._head.startswith(text[:chat] + _CHAT_START):
            return None  # not the kept card less some of its last examples
        return chat + len(_CHAT_START)

    def _cut(self, text: str, previous: str, room: int, speakers) -> Fitted | None:
        """Keeps the card and the newest `fraction` of the history room."""
        common = len(os.path.commonprefix([text, previous]))
        head = _history_start(text, common, speakers)
        end = _last_line(text)
        if head is None:
            return None
        starts = [s for s in _message_starts(text, speakers) if head <= s < end]
        if not starts:
            return None
        budget = history_budget(room, self.count(text[:head]), self.fraction)
        keep = starts[-1]  # at least the newest message
        for start in reversed(starts[:-1]):
            if self.count(text[start:end]) > budget:
                break
            keep = start
        self._head, self._block = text[:head], text[keep:end]
        kept = self._head + text[keep:]
        return Fitted(kept, head + end - keep, "cut", self.count(text[keep:end]),
                      self.count(text[head:end]))


def speakers_from_stops(stops) -> tuple:
    """Speaker names in stop strings shaped as a new line ("\\nYou:", "\\nAqua:")."""
    names = []
    for stop in stops:
        match = re.fullmatch(r"\n?([^\s:<>][^:\n<>]{0,39}):\s*", stop)
        if match:
            names.append(match.group(1))
    return tuple(dict.fromkeys(names))


def _message_starts(text: str, speakers) -> list:
    """Character offsets where a message line starts."""
    return [m.start() for m in _SPEAKER_LINE.finditer(text)
            if not speakers or m.group(1) in speakers]


def _starts_message(text: str, at: int, speakers) -> bool:
    if at and text[at - 1] != "\n":
        return False
    match = _SPEAKER_LINE.match(text, at)
    return bool(match) and (not speakers or match.group(1) in speakers)


def _history_start(text: str, common: int, speakers) -> int | None:
    """Where the history starts: after Pygmalion's chat start, the last "<START>" line;
    without one, at the last message start within what the prompt shares with the previous
    one (the card); None when neither is found (nothing is cut then: the card stays whole).
    """
    chat = text.rfind(_CHAT_START, 0, _last_line(text))
    if chat >= 0:
        return chat + len(_CHAT_START)
    starts = [s for s in _message_starts(text, speakers) if 0 < s <= common]
    return starts[-1] if starts else None


def _last_line(text: str) -> int:
    """Where the prompt's last line starts (the reply's open "Name:" turn)."""
    return text.rfind("\n") + 1
