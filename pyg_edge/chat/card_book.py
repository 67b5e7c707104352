"""Reading a card's character_book (V2/V3 spec, SillyTavern's extensions) into a Lorebook.

What is read but not applied comes back as short phrases for the card's load notice.
"""

from collections.abc import Callable

from pyg_edge.chat.lorebook import DEFAULT_DEPTH, LOGICS, Lorebook, LoreEntry
from pyg_edge.errors import CharacterError

# SillyTavern's extensions.position: 0 before and 1 after the character, 2/3 the Author's
# Note's top/bottom, 4 at a depth, 5/6 the example messages' top/bottom.
_ST_POSITIONS = {0: "before_char", 1: "after_char", 2: "at_depth", 3: "at_depth",
                 4: "at_depth", 5: "before_char", 6: "after_char"}
_ST_POSITION_NAMES = {2: "the Author's Note (top)", 3: "the Author's Note (bottom)",
                      5: "the example messages (top)", 6: "the example messages (bottom)"}
# Entry extensions pyg-edge applies, or that only order SillyTavern's editor.
_APPLIED = {"position", "depth", "probability", "useProbability", "selectiveLogic",
            "scan_depth", "case_sensitive", "match_whole_words", "exclude_recursion",
            "prevent_recursion", "delay_until_recursion", "display_index"}
# Entry extensions whose default value means "not used" (so naming them would be noise).
_UNUSED = (None, "", False, 0, [], {}, 100)
# V3 decorators pyg-edge applies; others are named in the notice.
_DECORATORS = {"activate", "dont_activate", "scan_depth", "depth"}


def read_lorebook(data, fill: Callable[[str], str]) -> tuple:
    """A Lorebook from a card's character_book, and what of it is not applied.

    Args:
      data: The character_book object.
      fill: Replaces {{char}}/{{user}} placeholders in keys and content.

    Returns:
      (Lorebook, list of phrases naming what was read but is not applied).

    Raises:
      CharacterError: the book or an entry is not shaped as the spec says.
    """
    if not isinstance(data, dict) or not isinstance(data.get("entries", []), list):
        raise CharacterError("character_book must be an object with a list of entries")
    unapplied = [f"character_book.extensions.{k}"
                 for k, v in sorted(_dict(data.get("extensions")).items()) if v not in _UNUSED]
    entries = []
    for index, raw in enumerate(data.get("entries", [])):
        entry, notes = _entry(raw, index, fill)
        entries.append(entry)
        unapplied += notes
    book = Lorebook(
        entries=tuple(entries), name=_text(data.get("name")),
        scan_depth=_number(data.get("scan_depth"), int),
        token_budget=_number(data.get("token_budget"), int),
        recursive_scanning=bool(data.get("recursive_scanning")),
    )
    return book, unapplied


def _entry(raw, index: int, fill) -> tuple:
    if not isinstance(raw, dict):
        raise CharacterError(f"character_book entry {index} is not an object")
    ext = _dict(raw.get("extensions"))
    name = _text(raw.get("name")) or _text(raw.get("comment")) or f"#{raw.get('id', index)}"
    content, decorators = _decorators(fill(_text(raw.get("content"))))
    notes = [f"lore entry {name!r}: extensions.{k}" for k, v in sorted(ext.items())
             if k not in _APPLIED and v not in _UNUSED]
    notes += [f"lore entry {name!r}: decorator @@{d}" for d in decorators
              if d not in _DECORATORS]
    position, depth = _position(raw, ext, decorators, name, notes)
    probability = _number(ext.get("probability"), float)
    logic = ext.get("selectiveLogic", raw.get("selectiveLogic", 0))
    if logic not in range(len(LOGICS)):
        notes.append(f"lore entry {name!r}: selectiveLogic {logic!r} (AND_ANY used)")
        logic = 0
    entry = LoreEntry(
        content=content,
        keys=tuple(fill(k) for k in _strings(raw.get("keys"), name)),
        secondary_keys=tuple(fill(k) for k in _strings(raw.get("secondary_keys"), name)),
        logic=LOGICS[logic],
        selective=bool(raw.get("selective", False)),
        constant=bool(raw.get("constant")) or "activate" in decorators,
        enabled=bool(raw.get("enabled", True)) and not _dont_activate(decorators),
        insertion_order=_number(raw.get("insertion_order"), int) or 0,
        priority=_number(raw.get("priority"), float),
        position=position,
        depth=depth,
        case_sensitive=_flag(ext.get("case_sensitive", raw.get("case_sensitive"))),
        match_whole_words=_flag(ext.get("match_whole_words")),
        use_regex=bool(raw.get("use_regex")) and not _written_by_sillytavern(ext),
        scan_depth=_number(decorators.get("scan_depth", ext.get("scan_depth")), int),
        probability=100.0 if ext.get("useProbability") is False or probability is None
        else probability,
        exclude_recursion=bool(ext.get("exclude_recursion")),
        prevent_recursion=bool(ext.get("prevent_recursion")),
        delay_until_recursion=bool(ext.get("delay_until_recursion")),
        name=name,
    )
    return entry, notes


def _position(raw: dict, ext: dict, decorators: dict, name: str, notes: list) -> tuple:
    """(position, depth): SillyTavern's number first, then the spec's word, then @@depth."""
    depth = _number(ext.get("depth"), int)
    st_position = ext.get("position")
    if "depth" in decorators:
        return "at_depth", _number(decorators["depth"], int) or 0
    if st_position in _ST_POSITIONS:
        if st_position in _ST_POSITION_NAMES:
            placed = _ST_POSITIONS[st_position].replace("_", " ")
            notes.append(f"lore entry {name!r}: position {_ST_POSITION_NAMES[st_position]} "
                         f"(placed {placed})")
        return _ST_POSITIONS[st_position], DEFAULT_DEPTH if depth is None else depth
    position = raw.get("position") if raw.get("position") == "after_char" else "before_char"
    return position, DEFAULT_DEPTH if depth is None else depth


def _decorators(content: str) -> tuple:
    """(content without its leading @@decorator lines, {name: value}).

    The first decorator of a name counts; a @@@fallback line stands in for the unknown
    decorator just above it, and is skipped after a known one.
    """
    lines = content.split("\n")
    found, last = {}, None
    while lines and lines[0].startswith("@@"):
        line = lines.pop(0)
        word, _, value = line.lstrip("@").partition(" ")
        if line.startswith("@@@"):
            if last is None or last in _DECORATORS:
                continue
            found.pop(last, None)
        last = word
        found.setdefault(word, value.strip())
    return "\n".join(lines).strip("\n"), found


def _dont_activate(decorators: dict) -> bool:
    return "dont_activate" in decorators and "activate" not in decorators


def _written_by_sillytavern(ext: dict) -> bool:
    """SillyTavern marks every entry use_regex but matches only /pattern/ keys."""
    return "selectiveLogic" in ext or "display_index" in ext


def _strings(value, name: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):  # V3: secondary keys may be one comma-separated string
        return [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CharacterError(f"lore entry {name!r}: keys must be a list of strings")
    return value


def _text(value) -> str:
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _flag(value):
    return value if isinstance(value, bool) else None


def _number(value, kind):
    """value as int or float; None when absent or not a number (cards hold "" and null)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None
