"""The chara_card_v2/v3 fields beyond V1's six, and the notice naming what is not applied.

Every field of the V2 and V3 specifications is either used (greetings, the lorebook,
creator notes and metadata kept on the Character) or named in the notice.
"""

from collections.abc import Callable

from pyg_edge.chat.card_book import read_lorebook
from pyg_edge.errors import CharacterError

# Shown or kept, never in prompts (the specs say so).
_METADATA = ("creator", "character_version", "tags", "source", "creation_date",
             "modification_date")
# Prompt fields Pygmalion's format has no place for (its model card: persona, scenario,
# example dialogue, chat); named in the notice when they hold text.
_NOT_APPLIED = {
    "system_prompt": "Pygmalion's prompt has no system prompt",
    "post_history_instructions": "Pygmalion's prompt has no instruction after the chat",
    "group_only_greetings": "pyg-edge has no group chats",
}


def spec_fields(data: dict, spec: str, version, clean: Callable[[str], str],
                fill: Callable[[str], str]) -> dict:
    """The Character fields read from a V2/V3 card's data, notice included.

    Args:
      data: The card's `data` object.
      spec: "chara_card_v2" or "chara_card_v3".
      version: The card's spec_version.
      clean: Normalises a text field (line ends, stray spaces); raises on a non-text.
      fill: Replaces {{char}}/{{user}} placeholders.

    Returns:
      Keyword arguments for Character, "notice" holding a list of phrases.

    Raises:
      CharacterError: a field has the wrong type.
    """
    _strings(data.get("group_only_greetings"), "group_only_greetings")
    unapplied = [f"{key} ({why})" for key, why in _NOT_APPLIED.items()
                 if _holds(data.get(key))]
    fields = {
        "alternate_greetings": tuple(fill(clean(g)) for g in
                                     _strings(data.get("alternate_greetings"),
                                              "alternate_greetings") if clean(g)),
        "creator_notes": _creator_notes(data, clean),
        "system_prompt": fill(clean(data.get("system_prompt"))),
        "post_history_instructions": fill(clean(data.get("post_history_instructions"))),
        "metadata": _metadata(data),
    }
    book = data.get("character_book")
    if book is not None:
        fields["book"], notes = read_lorebook(book, fill)
        unapplied += notes
    unapplied += _extensions(data.get("extensions"))
    unapplied += _assets(data.get("assets"))
    if _newer(spec, version):
        unapplied.insert(0, f"{spec} {version} is newer than 3.0: its new fields")
    fields["notice"] = unapplied
    return fields


def _creator_notes(data: dict, clean) -> str:
    """V3: the English note of creator_notes_multilingual, else creator_notes."""
    notes = data.get("creator_notes_multilingual")
    if isinstance(notes, dict) and isinstance(notes.get("en"), str):
        return clean(notes["en"])
    return clean(data.get("creator_notes"))


def _metadata(data: dict) -> tuple:
    pairs = []
    for key in _METADATA:
        value = data.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value not in (None, "", 0):
            pairs.append((key, str(value)))
    notes = data.get("creator_notes_multilingual")
    if isinstance(notes, dict) and set(notes) - {"en"}:
        pairs.append(("creator_notes_multilingual", ", ".join(sorted(notes))))
    return tuple(pairs)


def _extensions(extensions) -> list:
    """Card extensions pyg-edge does not apply: each key that holds something."""
    if not isinstance(extensions, dict):
        return []
    named = []
    for key, value in sorted(extensions.items()):
        if key == "depth_prompt" and isinstance(value, dict):
            if value.get("prompt"):
                named.append("extensions.depth_prompt (SillyTavern's character note)")
        elif key == "world" and value:
            named.append(f"extensions.world {value!r} (a SillyTavern World Info file, not "
                         "in the card)")
        elif value not in (None, "", False, [], {}):
            named.append(f"extensions.{key}")
    return named


def _assets(assets) -> list:
    """V3 assets: the main icon is the card's own picture; others are named."""
    if not isinstance(assets, list):
        return []
    others = [a for a in assets if not (isinstance(a, dict) and a.get("type") == "icon"
                                        and a.get("uri") == "ccdefault:")]
    return [f"assets ({len(others)}: only the card's own picture is shown)"] if others else []


def _newer(spec: str, version) -> bool:
    try:
        return spec == "chara_card_v3" and float(version) > 3.0
    except (TypeError, ValueError):
        return False


def _strings(value, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CharacterError(f"the card's {key} must be a list of strings")
    return value


def _holds(value) -> bool:
    return bool(value.strip()) if isinstance(value, str) else bool(value)
