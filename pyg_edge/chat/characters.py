"""Character cards: Pygmalion/gradio JSON, TavernAI V1, chara_card_v2/v3, as JSON or PNG."""

import base64
import binascii
import json
import logging
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from pyg_edge.chat.card_fields import spec_fields
from pyg_edge.chat.lorebook import Lorebook
from pyg_edge.errors import CharacterError

logger = logging.getLogger("pyg_edge")
USER = "You"  # Pygmalion was trained with the user always named "You"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG text chunk inflates to at most this many bytes, as Pillow's MAX_TEXT_CHUNK: a 2 MB
# zTXt bomb otherwise inflates to gigabytes (CVE-2014-9601 was this bug in Pillow).
MAX_CARD_TEXT_BYTES = 1024 * 1024
_CHAR_PLACEHOLDER = re.compile(r"\{\{char\}\}|<BOT>", re.IGNORECASE)
_USER_PLACEHOLDER = re.compile(r"\{\{user\}\}|<USER>", re.IGNORECASE)


@dataclass(frozen=True)
class Character:
    """A character to chat with, placeholders already replaced.

    Attributes:
      name: The character's name, as it speaks in the prompt.
      persona: Who the character is.
      scenario: The situation of the chat.
      greeting: The character's first message.
      example_dialogue: Example chats, one string per <START> block.
      alternate_greetings: Other first messages the user may open the chat with.
      creator_notes: The author's notes for users (never in prompts, by the spec).
      system_prompt: The card's system prompt (Pygmalion's format has none: see notice).
      post_history_instructions: The card's instructions after the chat (see notice).
      book: The card's lorebook (character_book), or None.
      metadata: (field, text) pairs kept out of prompts, as the spec asks: creator,
        character_version, tags, source, dates.
      notice: What the card holds that pyg-edge reads but does not apply, in one line
        ("" when nothing); load_character logs it.
    """

    name: str
    persona: str = ""
    scenario: str = ""
    greeting: str = ""
    example_dialogue: tuple = field(default_factory=tuple)
    alternate_greetings: tuple = ()
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    book: Lorebook | None = None
    metadata: tuple = ()
    notice: str = ""

    @property
    def greetings(self) -> tuple:
        """Every first message the chat can open with: the greeting, then the others."""
        return tuple(g for g in (self.greeting, *self.alternate_greetings) if g)


def load_character(path) -> Character:
    """Reads a character card from a .json or .png file.

    Raises:
      CharacterError: the file is missing, is no card, or the card lacks a name.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CharacterError(f"cannot read character card {path}: {error.strerror}") from None
    return character_from_bytes(raw, path.name)


def character_from_bytes(raw: bytes, source: str = "card") -> Character:
    """Builds a Character from the bytes of a .json or .png card (e.g. an upload)."""
    return character_from_card(card_from_bytes(raw, source), Path(source).name)


def card_from_bytes(raw: bytes, source: str = "card"):
    """The parsed JSON of a .json or .png card, as its author wrote it."""
    path = Path(source)
    text = _png_card_text(raw, path) if raw.startswith(_PNG_SIGNATURE) else _utf8(raw, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CharacterError(f"character card {path.name} is not valid JSON: {error}") from None
    except RecursionError:  # [[[[...: a card is a few levels deep
        raise CharacterError(f"character card {path.name} is nested too deep") from None


def character_from_card(card, source: str = "card") -> Character:
    """Builds a Character from a parsed card of any supported format.

    A V2/V3 card's fields beyond V1's six are read too (card_fields); what of them is not
    applied is named in the Character's notice, which is logged once here.
    """
    if not isinstance(card, dict):
        raise CharacterError(f"{source} is not a character card (expected a JSON object)")
    spec = str(card.get("spec", ""))
    data = card.get("data")
    if spec.startswith("chara_card_v") and isinstance(data, dict):
        card = data
    if "char_name" in card:  # Pygmalion / gradio
        fields = (card.get("char_name"), card.get("char_persona"), card.get("world_scenario"),
                  card.get("char_greeting"), card.get("example_dialogue"))
    else:  # TavernAI V1 and the data of V2/V3
        persona = "\n".join(_clean(card.get(k)) for k in ("description", "personality")
                            if _clean(card.get(k)))
        fields = (card.get("name"), persona, card.get("scenario"), card.get("first_mes"),
                  card.get("mes_example"))
    name = _clean(fields[0])
    if not name:
        raise CharacterError(f"{source} has no character name (char_name or name)")
    # V3: {{char}} stands for the nickname where the card has one.
    said = _clean(card.get("nickname") if isinstance(card.get("nickname"), str) else "") or name
    persona, scenario, greeting, examples = (fill_placeholders(_clean(f), said)
                                             for f in fields[1:])
    extra = {}
    if card is data:
        extra = spec_fields(data, spec, card.get("spec_version"), _clean,
                            lambda text: fill_placeholders(text, said))
        extra["notice"] = _notice(source, name, extra["notice"])
        if extra["notice"]:
            logger.info("%s", extra["notice"])
    return Character(name, persona, scenario, greeting, _example_blocks(examples), **extra)


def _notice(source: str, name: str, unapplied: list) -> str:
    """One line naming what the card holds but pyg-edge does not apply."""
    if not unapplied:
        return ""
    return f"{name} ({source}): read but not applied: " + "; ".join(unapplied)


def _utf8(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CharacterError(f"character card {path.name} is neither UTF-8 JSON nor PNG") from None


def _clean(value) -> str:
    """Normalises line ends and strips stray whitespace at line ends and around the text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CharacterError(f"a character card field holds {type(value).__name__}, not text")
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def fill_placeholders(text: str, name: str) -> str:
    """text with {{char}}/<BOT> as name and {{user}}/<USER> as You."""
    return _USER_PLACEHOLDER.sub(USER, _CHAR_PLACEHOLDER.sub(name, text))


def _example_blocks(text: str) -> tuple:
    """Splits example dialogue on its <START> lines into non-empty blocks."""
    blocks = re.split(r"^\s*<START>\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    return tuple(block.strip() for block in blocks if block.strip())


def _png_card_text(raw: bytes, path: Path) -> str:
    """The card JSON inside a PNG: the ccv3 text chunk if present, else chara (base64)."""
    chunks = _png_text_chunks(raw, path)
    for keyword in ("ccv3", "chara"):
        if keyword in chunks:
            try:
                return base64.b64decode(chunks[keyword], validate=False).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                message = f"{path.name}: its {keyword} chunk is not base64 JSON"
                raise CharacterError(message) from None
    raise CharacterError(f"{path.name} is a PNG without a character card (no chara chunk)")


def _png_text_chunks(raw: bytes, path: Path) -> dict:
    chunks, offset = {}, len(_PNG_SIGNATURE)
    while True:
        if offset + 12 > len(raw):
            raise CharacterError(f"{path.name} is a truncated PNG")
        length, kind = struct.unpack(">I4s", raw[offset:offset + 8])
        data = raw[offset + 8:offset + 8 + length]
        if len(data) < length:
            raise CharacterError(f"{path.name} is a truncated PNG")
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, _, rest = data.partition(b"\0")
            chunks[keyword.decode("latin-1")] = _chunk_text(kind, rest, path)
        if kind == b"IEND":
            return chunks
        offset += 12 + length


def _chunk_text(kind: bytes, rest: bytes, path: Path) -> bytes:
    try:
        if kind == b"zTXt":
            return _bounded_inflate(rest[1:], path)
        if kind == b"iTXt":
            compressed, text = rest[0], rest[2:].split(b"\0", 2)[-1]
            return _bounded_inflate(text, path) if compressed else text
    except (zlib.error, IndexError):
        raise CharacterError(f"{path.name} has a corrupt text chunk") from None
    return rest


def _bounded_inflate(data: bytes, path: Path) -> bytes:
    """A zlib stream inflated, refused once it passes MAX_CARD_TEXT_BYTES.

    Raises:
      CharacterError: it inflates to more.
      zlib.error: it is not a zlib stream.
    """
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, MAX_CARD_TEXT_BYTES + 1)
    if len(text) > MAX_CARD_TEXT_BYTES or inflater.unconsumed_tail:
        raise CharacterError(f"{path.name} has a text chunk over {MAX_CARD_TEXT_BYTES} bytes "
                             "inflated: not a character card")
    return text
