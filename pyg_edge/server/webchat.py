"""The built-in web chat page and the two routes it calls (card upload, streamed reply)."""

from importlib import resources

from aiohttp import web

from pyg_edge.chat.card_book import read_lorebook
from pyg_edge.chat.characters import (
    Character,
    card_from_bytes,
    character_from_card,
    fill_placeholders,
)
from pyg_edge.chat.prompt import Message
from pyg_edge.errors import CharacterError
from pyg_edge.generation.replies import MAX_REPLIES
from pyg_edge.generation.stats import PromptNotice
from pyg_edge.server.common import SETTINGS, completions, json_body, off_loop, stream_sse
from pyg_edge.server.parsing import BadRequest, field

routes = web.RouteTableDef()


@routes.get("/")
async def page(request):
    text = resources.files("pyg_edge.server").joinpath("webchat.html").read_text("utf-8")
    # No other site may frame the page (clickjacking its Send and Stop buttons).
    return web.Response(text=text, content_type="text/html", headers={
        "Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"})


@routes.post("/api/pyg-edge/character")
async def character_card(request):
    """Parses an uploaded card (the raw bytes of a .json or .png file), off the event loop.

    The reply is what the page keeps and sends back with each turn: the prompt fields,
    `alternate_greetings`, `creator_notes`, `metadata`,
    `notice` (what the card holds that pyg-edge does not apply) and `character_book` as
    the card wrote it.
    """
    source = request.query.get("name", "card")
    card, character = await off_loop(_read_card, await request.read(), source)
    data = card.get("data") if isinstance(card.get("data"), dict) else card
    return web.json_response({
        "name": character.name, "persona": character.persona,
        "scenario": character.scenario, "greeting": character.greeting,
        "example_dialogue": list(character.example_dialogue),
        "alternate_greetings": list(character.alternate_greetings),
        "creator_notes": character.creator_notes,
        "metadata": dict(character.metadata), "notice": character.notice,
        "character_book": data.get("character_book") if character.book else None,
    })


@routes.post("/api/pyg-edge/chat/stream")
async def chat_stream(request):
    """Streams the character's reply to a chat the page keeps: {character, history, message}.

    An optional `replies` (default: serve --replies) samples that many replies from one
    prompt pass; the others come with the last event as `spares`, for the page's
    Regenerate. Before a long prompt pass (as long as the CLI chat announces) comes
    {"reading": {"tokens", "seconds"}}: the uncached tokens and this machine's estimate
    (null before one could be made), which the page shows until the first token.
    """
    body = await json_body(request)
    settings = request.app[SETTINGS]
    character = _character_from_json(body.get("character"))
    history = [_message_from_json(m, character.name)
               for m in field(body, "history", list, [])]
    message = field(body, "message", str, None)
    options = page_options(body, settings)
    n = field(body, "replies", int, settings.replies, 1, MAX_REPLIES)
    stream = await off_loop(completions(request).create_character_reply, character, history,
                            message, options, n=n, notices=True)  # planning tokenizes the chat
    return await stream_sse(request, stream, lambda chunk: {"token": chunk.text},
                            done=lambda stream: [{"finish_reason": stream.stats.finish_reason,
                                                  "spares": spare_texts(stream.others)}],
                            notice=reading_event)


def _read_card(raw: bytes, source: str) -> tuple:
    """(The card as JSON, its Character): inflating and parsing, for a worker thread."""
    card = card_from_bytes(raw, source)
    return card, character_from_card(card, source)


def reading_event(notice: PromptNotice) -> dict:
    """The event announcing a long prompt pass."""
    return {"reading": {"tokens": notice.tokens, "seconds": notice.seconds}}


def spare_texts(others: list) -> list:
    """The other replies worth showing later: finished, not empty, no repeats."""
    kept = []
    for text, reason in others:
        if text and reason != "cancelled" and text not in kept:
            kept.append(text)
    return kept


def page_options(body: dict, settings):
    """The serve defaults with the page's reply length (lowered to serve --max-length, as
    every API's) and temperature, where the page sends them."""
    length = field(body, "max_new_tokens", int, None, 1)
    overrides = {"max_new_tokens": None if length is None else min(length, settings.max_length),
                 "temperature": field(body, "temperature", float, None, 0, 5)}
    return settings.defaults.with_overrides(
        **{key: value for key, value in overrides.items() if value is not None})


def _character_from_json(data) -> Character:
    """The Character the page sends back: the upload route's reply (or the page's own)."""
    if not isinstance(data, dict):
        raise BadRequest("field 'character' must be an object")
    name = field(data, "name", str, required=True)
    greetings = _strings(field(data, "alternate_greetings", list, []), "alternate_greetings")
    book = field(data, "character_book", dict, None)
    try:
        book = read_lorebook(book, lambda text: fill_placeholders(text, name))[0] if book else None
    except CharacterError as error:
        raise BadRequest(f"field 'character.character_book': {error}") from None
    return Character(
        name=name,
        persona=field(data, "persona", str, ""),
        scenario=field(data, "scenario", str, ""),
        greeting=field(data, "greeting", str, ""),
        example_dialogue=tuple(_strings(field(data, "example_dialogue", list, []),
                                        "example_dialogue")),
        alternate_greetings=tuple(greetings),
        creator_notes=field(data, "creator_notes", str, ""),
        book=book,
    )


def _strings(values: list, key: str) -> list:
    if not all(isinstance(v, str) for v in values):
        raise BadRequest(f"field '{key}' must be a list of strings")
    return values


def _message_from_json(data, name: str) -> Message:
    if not isinstance(data, dict):
        raise BadRequest("each history entry must be an object")
    is_user = field(data, "is_user", bool, False)
    return Message("You" if is_user else name, field(data, "text", str, required=True), is_user)
