"""The built-in web chat page and the two routes it calls (card upload, streamed reply)."""

from importlib import resources

from aiohttp import web

from pyg_edge.chat.characters import Character, character_from_bytes
from pyg_edge.chat.prompt import Message, build_prompt
from pyg_edge.generation.replies import MAX_REPLIES
from pyg_edge.generation.stats import PromptNotice
from pyg_edge.server.common import (
    MODEL,
    SETTINGS,
    completions,
    json_body,
    off_loop,
    stream_sse,
)
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
    """Parses an uploaded card (the raw bytes of a .json or .png file)."""
    character = await off_loop(character_from_bytes, await request.read(),
                               request.query.get("name", "card"))
    return web.json_response(character.__dict__ | {
        "example_dialogue": list(character.example_dialogue)})


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
    model, settings = request.app[MODEL], request.app[SETTINGS]
    character = _character_from_json(body.get("character"))
    history = [_message_from_json(m, character.name)
               for m in field(body, "history", list, [])]
    message = field(body, "message", str, None)
    options = settings.defaults
    n = field(body, "replies", int, settings.replies, 1, MAX_REPLIES)
    prompt = build_prompt(character, history, message, model.tokenizer.count,
                          model.context_length, options.max_new_tokens)
    stream = completions(request).complete_prompt(prompt, options, n=n, notices=True)
    return await stream_sse(request, stream, lambda chunk: {"token": chunk.text},
                            done=lambda stream: [{"finish_reason": stream.stats.finish_reason,
                                                  "spares": spare_texts(stream.others)}],
                            notice=reading_event)


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


def _character_from_json(data) -> Character:
    if not isinstance(data, dict):
        raise BadRequest("field 'character' must be an object")
    return Character(
        name=field(data, "name", str, required=True),
        persona=field(data, "persona", str, ""),
        scenario=field(data, "scenario", str, ""),
        greeting=field(data, "greeting", str, ""),
        example_dialogue=tuple(_strings(field(data, "example_dialogue", list, []))),
    )


def _strings(values: list) -> list:
    if not all(isinstance(v, str) for v in values):
        raise BadRequest("field 'example_dialogue' must be a list of strings")
    return values


def _message_from_json(data, name: str) -> Message:
    if not isinstance(data, dict):
        raise BadRequest("each history entry must be an object")
    is_user = field(data, "is_user", bool, False)
    return Message("You" if is_user else name, field(data, "text", str, required=True), is_user)
