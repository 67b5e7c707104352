"""A character card's lorebook and which of its entries a chat activates (pure, deterministic).

The rules follow the character card V2/V3 specifications and, where those leave a choice,
SillyTavern's World Info (public/scripts/world-info.js), which most cards are written for:

- Keys are looked for in the last `scan_depth` messages (the entry's own, else the book's,
  else 2, SillyTavern's default), case-insensitively unless the entry says otherwise, as
  substrings unless the entry asks for whole words. A key written `/pattern/flags` is a
  regular expression, as in SillyTavern.
- Whole words, as SillyTavern defines them: a one-word key must have a non-word ASCII
  character (or the text's edge) on both sides; a key of several words is a substring.
- A selective entry with secondary keys also needs them: AND_ANY (one of them), AND_ALL
  (all), NOT_ANY (none), NOT_ALL (not all).
- Constant entries always activate; disabled ones never.
- An entry with a probability below 100 rolls once it matched (see `scan` for the dice).
- Entries then enter the lore budget by precedence (higher `priority`, then higher
  `insertion_order`); the first that does not fit ends the lore, as in SillyTavern.
- With `recursive_scanning`, the content of activated entries is scanned too, until no
  new entry activates.
- The activated entries come back in prompt order: lower `insertion_order` first.
"""

import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_SCAN_DEPTH = 2  # SillyTavern's default World Info scan depth
DEFAULT_DEPTH = 4  # SillyTavern's default depth for entries placed in the chat
DEFAULT_BUDGET_SHARE = 0.25  # SillyTavern's default World Info budget: 25% of the context
LOGICS = ("AND_ANY", "NOT_ALL", "NOT_ANY", "AND_ALL")  # SillyTavern's selectiveLogic 0..3
POSITIONS = ("before_char", "after_char", "at_depth")
_REGEX_KEY = re.compile(r"^/(.+)/([a-z]*)$", re.DOTALL)
_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE}


@dataclass(frozen=True)
class LoreEntry:
    """One lorebook entry, placeholders already replaced.

    Attributes:
      content: The text the entry puts into the prompt (decorators removed).
      keys: Primary keys; one of them must appear in the scanned messages.
      secondary_keys: Checked with `logic` when `selective` is true.
      logic: How secondary keys count: one of LOGICS.
      selective: Whether secondary keys are checked at all (the spec's `selective`).
      constant: Activates without keys.
      enabled: A disabled entry never activates.
      insertion_order: Prompt order (lower first); also budget precedence after priority.
      priority: Budget precedence (higher kept first); None: insertion_order decides.
      position: Where the content goes: one of POSITIONS.
      depth: For "at_depth": how many messages from the end it goes in front of.
      case_sensitive: Keys match case-sensitively (None: no, SillyTavern's default).
      match_whole_words: Keys match whole words only (None: no, SillyTavern's default).
      use_regex: Every key is a regular expression (V3's use_regex). SillyTavern writes
        use_regex on every entry yet matches only `/pattern/flags` keys as patterns, so
        the card reader clears it on entries SillyTavern wrote.
      scan_depth: Messages scanned for this entry (None: the book's).
      probability: Chance in percent that a matched entry is used.
      exclude_recursion: Only the chat's messages can activate it, not other entries.
      prevent_recursion: Its content is not scanned for other entries' keys.
      delay_until_recursion: Only other entries' content can activate it.
      name: How reasons name the entry (its name or comment, else its id).
    """

    content: str
    keys: tuple = ()
    secondary_keys: tuple = ()
    logic: str = "AND_ANY"
    selective: bool = True
    constant: bool = False
    enabled: bool = True
    insertion_order: int = 100
    priority: float | None = None
    position: str = "before_char"
    depth: int = DEFAULT_DEPTH
    case_sensitive: bool | None = None
    match_whole_words: bool | None = None
    use_regex: bool = False
    scan_depth: int | None = None
    probability: float = 100.0
    exclude_recursion: bool = False
    prevent_recursion: bool = False
    delay_until_recursion: bool = False
    name: str = ""


@dataclass(frozen=True)
class Lorebook:
    """A character card's lorebook (the spec's character_book).

    Attributes:
      entries: The LoreEntry objects, in the card's order.
      name: The book's name.
      scan_depth: Messages scanned for keys (None: DEFAULT_SCAN_DEPTH).
      token_budget: The most tokens of lore in a prompt (None: the caller's budget).
      recursive_scanning: Whether activated content can activate further entries.
    """

    entries: tuple = ()
    name: str = ""
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool = False


@dataclass(frozen=True)
class Activation:
    """An entry that activated, and why.

    Attributes:
      entry: The LoreEntry.
      reason: Why, in words: "constant", or which key matched where.
      key: The primary key that matched (None for constant entries).
      message: Index into the scanned messages (oldest first) where the key matched; None
        when it matched in another entry's content (recursion) or was not needed.
      step: 0 for the chat's messages, n for the n-th recursive scan.
    """

    entry: LoreEntry
    reason: str
    key: str | None = None
    message: int | None = None
    step: int = 0


@dataclass(frozen=True)
class LoreScan:
    """The outcome of a scan: what goes into the prompt, and what was left out and why.

    Attributes:
      activated: Activations in prompt order (insertion_order, lowest first).
      over_budget: Activations that matched but did not fit the lore budget.
      missed_roll: Activations that matched but lost their probability roll.
      tokens: Tokens of the activated content (each entry's content plus a newline).
    """

    activated: tuple = ()
    over_budget: tuple = ()
    missed_roll: tuple = ()
    tokens: int = 0


def lore_budget(book: Lorebook, context_length: int) -> int:
    """The most tokens of lore: the book's token_budget, else a quarter of the context
    (SillyTavern's default), so a large book cannot crowd the chat out."""
    if book.token_budget is not None:
        return book.token_budget
    return int(context_length * DEFAULT_BUDGET_SHARE)


def activate(book: Lorebook, messages: list, count_tokens: Callable[[str], int],
             budget: int | None = None, rng: random.Random | None = None) -> list:
    """The entries a chat activates, in prompt order, each with the reason it fired.

    Args and rules: see `scan`, whose `activated` this returns as a list.
    """
    return list(scan(book, messages, count_tokens, budget, rng).activated)


def scan(book: Lorebook, messages: list, count_tokens: Callable[[str], int],
         budget: int | None = None, rng: random.Random | None = None) -> LoreScan:
    """Scans a chat for the book's keys.

    Args:
      book: The Lorebook.
      messages: The chat as text, oldest first, the new user message last; pass each
        message as the prompt shows it ("You: hi"), as SillyTavern scans names too.
      count_tokens: Counts the tokens of a text (for the budget).
      budget: The most tokens of lore; None: the book's token_budget, else no limit.
      rng: Rolls for entries with a probability below 100. None (the default) rolls
        deterministically: the roll is a hash of the entry and of the message that
        activated it, so the same chat always gets the same lore, a turn does not change
        the prompt's cached prefix by chance, and a new mention rolls anew.

    Returns:
      A LoreScan.
    """
    limit = budget if budget is not None else book.token_budget
    chosen, over, missed, texts, step = [], [], [], [], 0
    while True:
        seen = {id(a.entry) for a in chosen + over + missed}
        found = _step(book, messages, texts, step, seen)
        if not found:
            break
        kept = []
        for activation in found:
            if not _rolls(activation, messages, rng):
                missed.append(activation)
            else:
                kept.append(activation)
        fitted, dropped = _fit(chosen, kept, limit, count_tokens)
        chosen += fitted
        over += dropped
        texts += [a.entry.content for a in fitted if not a.entry.prevent_recursion]
        if dropped or not book.recursive_scanning or not fitted:
            break
        step += 1
    ordered = sorted(chosen, key=lambda a: a.entry.insertion_order)
    return LoreScan(tuple(ordered), tuple(over), tuple(missed), _tokens(chosen, count_tokens))


def _step(book: Lorebook, messages: list, texts: list, step: int, seen: set):
    """The entries that activate in one scan, by budget precedence."""
    found = []
    for entry in book.entries:
        if id(entry) in seen or not entry.enabled:
            continue
        if step == 0 and entry.delay_until_recursion or step > 0 and entry.exclude_recursion:
            continue
        activation = _check(entry, book, messages, texts, step)
        if activation is not None:
            found.append(activation)
    return sorted(found, key=_precedence)


def _precedence(activation: Activation) -> tuple:
    entry = activation.entry
    return (-(entry.priority if entry.priority is not None else 0), -entry.insertion_order)


def _check(entry: LoreEntry, book: Lorebook, messages: list, texts: list, step: int):
    """The entry's Activation if it fires on these messages (and activated texts)."""
    if entry.constant:
        return Activation(entry, "constant", step=step)
    depth = entry.scan_depth if entry.scan_depth is not None else book.scan_depth
    depth = DEFAULT_SCAN_DEPTH if depth is None else max(0, depth)
    first = max(0, len(messages) - depth)
    # Newest first, so a reason names the latest mention; then recursion texts.
    places = [(i, messages[i]) for i in range(len(messages) - 1, first - 1, -1)]
    places += [(None, text) for text in texts]
    for key in entry.keys:
        for index, text in places:
            if _matches(key, text, entry):
                return _secondary(entry, key, index, [t for _, t in places], step)
    return None


def _secondary(entry: LoreEntry, key: str, index, texts: list, step: int):
    where = "another entry's content" if index is None else f"message {index}"
    reason = f"key {key!r} in {where}"
    if not (entry.selective and entry.secondary_keys):
        return Activation(entry, reason, key, index, step)
    hits = [k for k in entry.secondary_keys if any(_matches(k, t, entry) for t in texts)]
    passed = {"AND_ANY": bool(hits), "AND_ALL": len(hits) == len(entry.secondary_keys),
              "NOT_ANY": not hits,
              "NOT_ALL": len(hits) < len(entry.secondary_keys)}[entry.logic]
    if not passed:
        return None
    found = ", ".join(repr(k) for k in hits) or "none"
    return Activation(entry, f"{reason}; {entry.logic} secondary keys found: {found}",
                      key, index, step)


def _matches(key: str, text: str, entry: LoreEntry) -> bool:
    """Whether a key occurs in a text under the entry's case and whole-word rules."""
    key = key.strip()
    if not key:
        return False
    if entry.use_regex:  # V3: every key is a pattern; a broken one never matches
        pattern = _compile(key, "" if entry.case_sensitive else "i")
        return pattern is not None and pattern.search(text) is not None
    slashed = _REGEX_KEY.match(key)
    pattern = _compile(slashed.group(1), slashed.group(2)) if slashed else None
    if pattern is not None:
        return pattern.search(text) is not None
    if not entry.case_sensitive:  # a broken /pattern/ is plain text, as in SillyTavern
        key, text = key.lower(), text.lower()
    if not entry.match_whole_words or len(key.split()) > 1:
        return key in text
    # SillyTavern's word edges: JavaScript's \W, which is ASCII-only.
    return re.search(rf"(?:^|\W){re.escape(key)}(?:$|\W)", text, re.ASCII) is not None


def _compile(pattern: str, flags: str):
    """pattern compiled with JavaScript-style flags; None if it is no valid regex."""
    bits = 0
    for flag in flags:
        bits |= _FLAGS.get(flag, 0)
    try:
        return re.compile(pattern, bits)
    except re.error:
        return None


def _rolls(activation: Activation, messages: list, rng) -> bool:
    probability = activation.entry.probability
    if probability >= 100:
        return True
    if rng is not None:
        return rng.random() * 100 < probability
    trigger = "" if activation.message is None else messages[activation.message]
    seed = f"{activation.entry.name}\0{activation.entry.content}\0{trigger}".encode()
    return zlib.crc32(seed) / 2**32 * 100 < probability


def _fit(chosen: list, found: list, limit, count_tokens) -> tuple:
    """The activations that fit the budget, in order, and those left out after the first
    that does not fit (SillyTavern stops there)."""
    if limit is None:
        return found, []
    used = _tokens(chosen, count_tokens)
    for i, activation in enumerate(found):
        used += count_tokens(activation.entry.content + "\n")
        if used > limit:
            return found[:i], found[i:]
    return found, []


def _tokens(activations: list, count_tokens) -> int:
    return sum(count_tokens(a.entry.content + "\n") for a in activations)
