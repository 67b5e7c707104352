"""OpenAI chat messages turned into a Pygmalion prompt (Completions.create_chat_completion,
and so the server's /v1/chat/completions).

System messages are the persona, the assistant is the character, the user is "You".
Clients such as SillyTavern's Chat Completion (Custom) send messages without `name`
and no character field, so the character's name is read from the system text
("Aqua's Persona:", "Write Aqua's next reply", "[Aqua's personality:"), else a neutral
one. Example messages (system messages named example_user / example_assistant, as
SillyTavern sends them) become example dialogue, and the reply stops at a line by the
user under any name the client gives them, so it never runs on into other speakers.

SillyTavern's Continue and Impersonate end the messages with a system instruction (its
`continue_nudge_prompt`, which quotes the last message, and `impersonation_prompt`, "Write
your next reply from the point of view of {{user}}..."). A Pygmalion model cannot follow
instructions, so both are done in the prompt instead: Continue ends it inside the
character's last line (the reply is what follows it, with no new turn), Impersonate opens
a "You:" line (the reply stops at the character's turn).
"""

import re
from dataclasses import dataclass

from pyg_edge.chat.characters import USER, Character, fill_placeholders
from pyg_edge.chat.prompt import Message
from pyg_edge.errors import InvalidRequestError

NEUTRAL_NAME = "Character"
ROLES = ("system", "developer", "user", "assistant")
_NAME = r"([^\n{}\[\]:]{1,40}?)"
_CHARACTER_PATTERNS = [re.compile(p, re.MULTILINE) for p in (
    rf"^{_NAME}'s Persona:", rf"\bWrite {_NAME}'s next reply", rf"\[{_NAME}'s personality:")]
_USER_PATTERN = re.compile(rf"\bbetween {_NAME} and {_NAME}[.,\n]")
_SPEAKER_LINE = re.compile(r"^([^\s:<>\[\]{}][^:\n<>\[\]{}]{0,39}):", re.MULTILINE)
# SillyTavern's markers between prompt parts ("[Start a new Chat]", "[Example Chat]").
_MARKER = re.compile(r"^\[(start a new (group )?chat|example chat)[^\]]*\]$", re.IGNORECASE)
_IMPERSONATE = re.compile(r"\bnext reply from the point of view of\b", re.IGNORECASE)
REPLY, CONTINUE, IMPERSONATE = "reply", "continue", "impersonate"


@dataclass(frozen=True)
class ChatParts:
    """A chat body read into Pygmalion terms.

    Attributes:
      character: Who replies (persona from the system messages, examples).
      history: Earlier Messages, oldest first.
      message: The user's new message, or None when the chat ends with the character.
      stop: Extra stop strings: lines by the user under their own name, and by others.
      kind: REPLY (the character's next message), CONTINUE (more of its last message)
        or IMPERSONATE (the user's next message).
    """

    character: Character
    history: list
    message: str | None
    stop: tuple
    kind: str = REPLY


def chat_parts(messages, character: str = "", user_name: str = "") -> ChatParts:
    """Reads OpenAI-style messages ({"role", "content", "name"?} dicts).

    Args:
      messages: The chat, oldest first.
      character: Who replies, when the messages do not say (else read from them).
      user_name: The user's name in the client, whose lines the reply must not write.

    Raises:
      InvalidRequestError: messages is not a non-empty list, or has a message without role
        or text.
    """
    messages = [_checked(i, m) for i, m in enumerate(_message_list(messages))]
    kind = _kind(messages)
    if kind != REPLY:
        messages = messages[:-1]  # the instruction is carried out in the prompt instead
    system = "\n".join(text for role, name, text in messages if role == "system" and not name)
    name = _character_name(character, messages, system)
    texts = [(role, who, fill_placeholders(text, name)) for role, who, text in messages]
    persona = "\n".join(t for r, who, t in texts if r == "system" and not who and
                        not _MARKER.match(t)).strip()
    persona = persona.removeprefix(f"{name}'s Persona:").strip()
    history = [Message(USER, t, True) if r == "user" else Message(name, t)
               for r, who, t in texts if r != "system"]
    message = history.pop().text if history and history[-1].is_user else None
    replier = Character(name, persona=persona, example_dialogue=_examples(texts, name))
    return ChatParts(replier, history, message, _extra_stops(user_name, system, texts, name),
                     kind)


def _kind(messages: list) -> str:
    """What a chat ending in a system instruction asks for (SillyTavern's Continue and
    Impersonate), else REPLY."""
    role, name, text = messages[-1]
    if role != "system" or name:
        return REPLY
    said = [t for r, _, t in messages[:-1] if r != "system"]
    last_role = next((r for r, _, _ in reversed(messages[:-1]) if r != "system"), None)
    if last_role == "assistant" and said and said[-1] and said[-1] in text:
        return CONTINUE  # the nudge quotes the message to continue
    if _IMPERSONATE.search(text):
        return IMPERSONATE
    return REPLY


def _message_list(messages) -> list:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("field 'messages' must be a non-empty list")
    return messages


def _checked(index: int, message) -> tuple:
    """(role, example name or "", text) of one message; content may be a list of parts."""
    valid = isinstance(message, dict) and message.get("role") in ROLES
    content = message.get("content") if valid else None
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image_url"}]
        content = "".join(p.get("text", "") for p in content
                          if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not isinstance(content, str):
        raise InvalidRequestError(f"messages[{index}] needs a role ({', '.join(ROLES)}) and string "
                         "content")
    role = "system" if message["role"] == "developer" else message["role"]
    name = message.get("name") if isinstance(message.get("name"), str) else ""
    example = name if role == "system" and name.startswith("example_") else ""
    return role, example or (name if role == "assistant" else ""), content.strip()


def _character_name(given: str, messages: list, system: str) -> str:
    named = [who for role, who, _ in messages if role == "assistant" and who]
    if given or named:
        return (given or named[0]).strip()
    for pattern in _CHARACTER_PATTERNS:
        if match := pattern.search(system):
            return match.group(1).strip()
    return NEUTRAL_NAME


def _examples(texts: list, name: str) -> tuple:
    """Example dialogue blocks from example_user / example_assistant system messages."""
    blocks, lines = [], []
    for role, who, text in texts:
        if role == "system" and who in ("example_user", "example_assistant"):
            speaker = USER if who == "example_user" else name
            lines.append(f"{speaker}: {text.removeprefix(f'{speaker}:').strip()}")
        elif role == "system" and lines:
            blocks.append("\n".join(lines))  # any other system message ends a block
            lines = []
    return tuple(blocks + (["\n".join(lines)] if lines else []))


def _extra_stops(user_name: str, system: str, texts: list, name: str) -> tuple:
    """Lines the reply must not write: the user under their own name, other speakers."""
    users = [user_name]
    if match := _USER_PATTERN.search(system):
        users.append(match.group(2))
    speakers = users + [s for r, _, t in texts if r != "system" for s in _SPEAKER_LINE.findall(t)]
    unique = dict.fromkeys(s.strip() for s in speakers if s.strip())
    return tuple(f"\n{s}:" for s in unique if s not in (name, USER))
