"""What every API's routes share: the app's state, JSON bodies, and running a generation.

A generation runs to its end (generate) or streams as server-sent events (stream_sse);
either way it stops when its client goes away.
"""

import asyncio
import contextlib
import json
import threading

from aiohttp import web

from pyg_edge.chat.fitting import fit_prompt
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.stats import GenerationStats
from pyg_edge.server.engine import GenerationQueue
from pyg_edge.server.options import Completion, Limits
from pyg_edge.server.params import BadRequest

MODEL = web.AppKey("model", PygModel)
QUEUE = web.AppKey("queue", GenerationQueue)
SETTINGS = web.AppKey("settings", dict)


def limits(request) -> Limits:
    """What the model and the server's settings allow a request."""
    model = request.app[MODEL]
    return Limits(model.context_length, request.app[SETTINGS]["max_length"],
                  len(model.tokenizer.vocabulary))


def fitted_prompt(request, completion: Completion) -> str:
    """The completion's memory and prompt, cut from the left to leave room for the reply."""
    room = completion.context - completion.options.max_new_tokens
    return fit_prompt(request.app[MODEL].tokenizer, completion.prompt, room,
                      completion.notes, completion.memory)


async def json_body(request) -> dict:
    """The request's body as a JSON object.

    Raises:
      BadRequest: the body is not JSON, or not an object.
    """
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


async def generate(request, prompt, options, key="", n=1, others=None, room=None) -> tuple:
    """Runs one generation to its end; returns (text, GenerationStats).

    With n > 1 the text is the first reply's; others receives the rest; room is the
    client's prompt budget (see GenerationQueue.stream).
    """
    cancel, stats, pieces = threading.Event(), GenerationStats(), []
    async with _cancel_on_disconnect(request, cancel):
        async for piece in request.app[QUEUE].stream(prompt, options, cancel, stats, key,
                                                     n, others, room=room):
            pieces.append(piece)
    return "".join(pieces), stats


async def stream_sse(request, prompt, options, event, key="", done=None, name=None, n=1,
                     others=None, notice=None, room=None):
    """Streams a generation as server-sent events: event(piece) per piece, then done(stats).

    name, when given, goes on every event's `event:` line (KoboldCpp's "message"). With
    n > 1 the pieces are the first reply's, and others holds the rest by the time done
    is called (see GenerationQueue.stream). notice, when given, turns a PromptNotice
    (before a long prompt pass) into an event of its own. room: as for generate.
    """
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    cancel, stats = threading.Event(), GenerationStats()
    try:
        async with _cancel_on_disconnect(request, cancel):
            async for piece in request.app[QUEUE].stream(prompt, options, cancel, stats, key,
                                                         n, others, notice is not None, room):
                data = event(piece) if isinstance(piece, str) else notice(piece)
                await response.write(sse(data, name))
            for line in done(stats) if done else ():
                await response.write(sse(line, name))
    except ConnectionResetError:
        cancel.set()  # the client left: stop generating for it
    return response


def sse(data, name=None) -> bytes:
    """One server-sent event carrying data (a str as it is, anything else as JSON)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {name}\n" if name else "").encode() + f"data: {text}\n\n".encode()
