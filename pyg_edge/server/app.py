"""The aiohttp application: routes, errors, API key, streaming, and the web chat page."""

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import threading
import uuid
from importlib import resources

from aiohttp import web

from pyg_edge import __version__
from pyg_edge.characters import Character, character_from_bytes
from pyg_edge.errors import PygEdgeError
from pyg_edge.model import GenerationStats, PygModel
from pyg_edge.prompt import Message, build_prompt
from pyg_edge.sampling import SamplingOptions
from pyg_edge.server import choices, kobold, openai
from pyg_edge.server.engine import GenerationQueue
from pyg_edge.server.params import BadRequest, field

logger = logging.getLogger("pyg_edge")

MAX_BODY_BYTES = 2 * 1024 * 1024  # a long chat plus a PNG card fit; more is refused (413)
MODEL = web.AppKey("model", PygModel)
QUEUE = web.AppKey("queue", GenerationQueue)
SETTINGS = web.AppKey("settings", dict)
routes = web.RouteTableDef()


def create_app(model: PygModel, api_key: str = "", max_length: int = 512,
               defaults: SamplingOptions = None, replies: int = 1) -> web.Application:
    """Builds the server around a loaded model.

    Args:
      model: The PygModel every request uses, one generation at a time.
      api_key: When set, every API request needs it (Authorization: Bearer KEY).
      max_length: The most new tokens one request may ask for.
      defaults: Sampling options for fields a request leaves out.
      replies: Replies the web chat page samples per turn; the extras make its
        Regenerate instant.
    """
    app = web.Application(middlewares=[_errors_as_json, _require_key],
                          client_max_size=MAX_BODY_BYTES)
    app[MODEL] = model
    app[QUEUE] = GenerationQueue(model)
    app[SETTINGS] = {"api_key": api_key, "max_length": max_length,
                     "defaults": defaults or SamplingOptions(), "replies": replies,
                     "name": "pyg-edge/" + os.path.basename(os.path.normpath(model.path))}
    app.add_routes(routes)

    async def close_queue(app):
        app[QUEUE].close()

    app.on_cleanup.append(close_queue)
    return app


def serve(model_path: str, host: str = "127.0.0.1", port: int = 5001, api_key: str = "",
          max_length: int = 512, replies: int = 1, **model_options) -> None:
    """Loads a model and serves it until interrupted."""
    if not _is_loopback(host) and not api_key:
        logger.warning("serving on %s without an API key: anyone who reaches it can use it", host)
    with PygModel(model_path, **model_options) as model:
        web.run_app(create_app(model, api_key, max_length, replies=replies), host=host,
                    port=port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@web.middleware
async def _errors_as_json(request, handler):
    """Every error a client can cause becomes a 4xx with a JSON body; the server goes on."""
    try:
        return await handler(request)
    except (BadRequest, PygEdgeError) as error:
        return _error(400, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(error.status, error.reason)


def _error(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


@web.middleware
async def _require_key(request, handler):
    key = request.app[SETTINGS]["api_key"]
    if key and request.path.startswith(("/api/", "/v1/")):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = given or request.headers.get("X-Api-Key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            return _error(401, "missing or wrong API key (send Authorization: Bearer KEY)")
    return await handler(request)


async def _json_body(request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


@contextlib.asynccontextmanager
async def _cancel_on_disconnect(request, cancel: threading.Event):
    """Sets cancel when the client goes away, also while it waits for its first token."""

    async def watch():
        while not cancel.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                cancel.set()
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


async def _generate(request, prompt, options, key="", n=1, others=None) -> tuple:
    """Runs one generation to its end; returns (text, GenerationStats)."""
    cancel, stats, pieces = threading.Event(), GenerationStats(), []
    async with _cancel_on_disconnect(request, cancel):
        async for piece in request.app[QUEUE].stream(prompt, options, cancel, stats, key,
                                                     n, others):
            pieces.append(piece)
    return "".join(pieces), stats


async def _stream_sse(request, prompt, options, event, key="", done=None, n=1, others=None):
    """Streams a generation as server-sent events: event(piece) per piece, then done(stats)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    cancel, stats = threading.Event(), GenerationStats()
    try:
        async with _cancel_on_disconnect(request, cancel):
            async for piece in request.app[QUEUE].stream(prompt, options, cancel, stats, key,
                                                         n, others):
                await response.write(_sse(event(piece)))
            for line in done(stats) if done else ():
                await response.write(_sse(line))
    except ConnectionResetError:
        cancel.set()  # the client left: stop generating for it
    return response


def _sse(data) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def _fit_left(request, prompt: str, options: SamplingOptions, max_context: int) -> str:
    """Cuts the prompt from the left to fit the context, as KoboldAI does."""
    model = request.app[MODEL]
    room = min(max_context, model.context_length) - options.max_new_tokens
    if room < 1:
        raise BadRequest(f"max_length {options.max_new_tokens} leaves no room for the prompt "
                         f"in a context of {min(max_context, model.context_length)}")
    return model.tokenizer.keep_last(prompt, room)


# KoboldAI ------------------------------------------------------------------------------

@routes.get("/api/v1/model")
async def kobold_model(request):
    return web.json_response({"result": request.app[SETTINGS]["name"]})


@routes.get("/api/v1/info/version")
async def kobold_version(request):
    return web.json_response({"result": kobold.API_VERSION})


@routes.get("/api/v1/config/max_context_length")
async def kobold_max_context(request):
    return web.json_response({"value": request.app[MODEL].context_length})


@routes.get("/api/v1/config/max_length")
async def kobold_max_length(request):
    return web.json_response({"value": request.app[SETTINGS]["defaults"].max_new_tokens})


def _kobold_request(request, body) -> kobold.KoboldRequest:
    settings, model = request.app[SETTINGS], request.app[MODEL]
    return kobold.parse_generate(body, settings["defaults"], settings["max_length"],
                                 model.context_length)


@routes.post("/api/v1/generate")
async def kobold_generate(request):
    parsed = _kobold_request(request, await _json_body(request))
    prompt = _fit_left(request, parsed.prompt, parsed.options, parsed.max_context)
    text, stats = await _generate(request, prompt, parsed.options, parsed.key)
    return web.json_response({"results": [{"text": text, "finish_reason": stats.finish_reason}]})


@routes.get("/api/extra/version")
async def koboldcpp_version(request):
    return web.json_response({"result": "KoboldCpp", "version": kobold.KOBOLDCPP_VERSION,
                              "backend": f"pyg-edge {__version__}"})


@routes.post("/api/extra/generate/stream")
async def koboldcpp_stream(request):
    parsed = _kobold_request(request, await _json_body(request))
    prompt = _fit_left(request, parsed.prompt, parsed.options, parsed.max_context)
    return await _stream_sse(request, prompt, parsed.options, lambda p: {"token": p},
                             parsed.key)


@routes.post("/api/extra/abort")
async def koboldcpp_abort(request):
    body = await _json_body(request) if request.can_read_body else {}
    aborted = request.app[QUEUE].abort(field(body, "genkey", str, ""))
    return web.json_response({"success": "true" if aborted else "false"})


@routes.post("/api/extra/tokencount")
async def koboldcpp_tokencount(request):
    text = field(await _json_body(request), "prompt", str, required=True)
    ids = request.app[MODEL].tokenizer.encode(text)
    return web.json_response({"value": len(ids), "ids": ids})


# OpenAI-style --------------------------------------------------------------------------

@routes.get("/v1/models")
async def openai_models(request):
    name = request.app[SETTINGS]["name"]
    return web.json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "pyg-edge"}]})


@routes.post("/v1/completions")
async def openai_completions(request):
    body = await _json_body(request)
    options = _openai_options(request, body, default_tokens=16)  # OpenAI's default
    prompt = openai.completion_prompt(body)
    return await _openai_reply(request, body, "text_completion", prompt, options)


@routes.post("/v1/chat/completions")
async def openai_chat(request):
    body = await _json_body(request)
    settings, model = request.app[SETTINGS], request.app[MODEL]
    options = _openai_options(request, body, settings["defaults"].max_new_tokens)
    character, history, message = openai.chat_parts(body)
    prompt = build_prompt(character, history, message, model.tokenizer.count,
                          model.context_length, options.max_new_tokens)
    return await _openai_reply(request, body, "chat.completion", prompt, options)


def _openai_options(request, body, default_tokens) -> SamplingOptions:
    settings = request.app[SETTINGS]
    return openai.parse_options(body, settings["defaults"], settings["max_length"],
                                default_tokens)


async def _openai_reply(request, body, kind, prompt, options):
    name = request.app[SETTINGS]["name"]
    n, others = choices.reply_count(body), []  # others: choices 1.. as (text, reason)
    if not field(body, "stream", bool, False):
        text, stats = await _generate(request, prompt, options, n=n, others=others)
        completion = openai.completion_body(kind, name, text, stats)
        return web.json_response(choices.add_choices(completion, kind, others))
    ident = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
    return await _stream_sse(
        request, prompt, options, lambda p: openai.chunk_body(kind, name, ident, p),
        done=lambda stats: [openai.chunk_body(kind, name, ident, None, stats.finish_reason),
                            *choices.other_chunks(kind, name, ident, others), "[DONE]"],
        n=n, others=others)


# The built-in web chat -------------------------------------------------------------------

@routes.get("/")
async def web_chat_page(request):
    page = resources.files("pyg_edge.server").joinpath("webchat.html").read_text("utf-8")
    return web.Response(text=page, content_type="text/html")


@routes.post("/api/pyg-edge/character")
async def web_character(request):
    """Parses an uploaded card (the raw bytes of a .json or .png file)."""
    character = character_from_bytes(await request.read(), request.query.get("name", "card"))
    return web.json_response(character.__dict__ | {
        "example_dialogue": list(character.example_dialogue)})


@routes.post("/api/pyg-edge/chat/stream")
async def web_chat_stream(request):
    """Streams the character's reply to a chat the page keeps: {character, history, message}."""
    body = await _json_body(request)
    model, settings = request.app[MODEL], request.app[SETTINGS]
    character = _character_from_json(body.get("character"))
    history = [_message_from_json(m, character.name) for m in body.get("history") or []]
    message = field(body, "message", str, None)
    options, others = settings["defaults"], []
    n = field(body, "replies", int, settings["replies"], 1, choices.MAX_REPLIES)
    prompt = build_prompt(character, history, message, model.tokenizer.count,
                          model.context_length, options.max_new_tokens)
    # The other replies come with the last event, as spares for the page's Regenerate.
    return await _stream_sse(request, prompt, options, lambda p: {"token": p},
                             done=lambda stats: [{"finish_reason": stats.finish_reason,
                                                  "spares": choices.spare_texts(others)}],
                             n=n, others=others)


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
