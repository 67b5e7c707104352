"""What every API's routes share: the app's state, JSON bodies, and running a generation.

A generation is a CompletionStream from the library (pyg_edge.chat.completions). It runs to
its end (generate) or streams as server-sent events (stream_sse); either way it stops when
its client goes away.
"""

import asyncio
import contextlib
import json

from aiohttp import web

from pyg_edge.chat.completions import Completions
from pyg_edge.errors import PygEdgeError
from pyg_edge.generation.model import PygModel
from pyg_edge.server.error_replies import status_of
from pyg_edge.server.generations import Generations
from pyg_edge.server.parsing import BadRequest, Completion, Limits, single_reply, token_list
from pyg_edge.server.settings import ServerSettings

MODEL = web.AppKey("model", PygModel)
COMPLETIONS = web.AppKey("completions", Completions)
GENERATIONS = web.AppKey("generations", Generations)
SETTINGS = web.AppKey("settings", ServerSettings)
NAME = web.AppKey("name", str)


def limits(request) -> Limits:
    """What the model and the server's settings allow a request."""
    model, settings = request.app[MODEL], request.app[SETTINGS]
    return Limits(model.context_length, settings.max_length, len(model.tokenizer.vocabulary),
                  settings.user_line_stop, settings.max_stops, settings.max_bans,
                  settings.max_phrase_chars)


def completions(request) -> Completions:
    return request.app[COMPLETIONS]


async def off_loop(function, *args, **kwargs):
    """function(*args, **kwargs) in a worker thread: tokenizing or fitting a big body (or
    reading a card) takes seconds, and on the event loop it would stall every client."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def start_completion(request, parsed: Completion, single: bool = False):
    """The CompletionStream of a parsed completion body, its prompt fitted to its context
    off the event loop (pyg_edge.chat.completions); its notes join the body's.

    Args:
      single: The route's reply holds one text: n > 1 is refused.

    Raises:
      BadRequest: single and n > 1.
    """
    if single:
        single_reply(parsed.n)
    stream = await off_loop(completions(request).create_completion, parsed.prompt,
                            parsed.options, memory=parsed.memory, context=parsed.context,
                            n=parsed.n)
    parsed.notes.extend(stream.notes)
    return stream


async def decode_tokens(request, body: dict) -> str:
    """The text of a body's `tokens` (a list of token ids), decoded off the event loop.

    Raises:
      BadRequest: tokens is missing or holds something other than valid ids.
    """
    tokenizer = request.app[MODEL].tokenizer
    return await off_loop(tokenizer.decode, token_list(body, len(tokenizer.vocabulary)))


async def encode(request, text: str, pieces: bool = False) -> list:
    """text's token ids (pieces: {id, piece} pairs), counted off the event loop.

    Raises:
      BadRequest: more than the server's max_tokenize_tokens.
    """
    tokenizer, most = request.app[MODEL].tokenizer, request.app[SETTINGS].max_tokenize_tokens

    def tokens():
        ids = tokenizer.encode_at_most(text, most)
        if ids is None:
            raise BadRequest(f"the text is more than {most} tokens: at most {most} are "
                             "counted per call (serve --max-tokenize-tokens)")
        return [{"id": i, "piece": tokenizer.decode([i])} for i in ids] if pieces else ids

    return await off_loop(tokens)


async def json_body(request) -> dict:
    """The request's body as a JSON object; every way a body can be bad is a 400.

    Raises:
      BadRequest: the body is not JSON in a known charset, not an object, nested too
        deep, holds a number too long to read, or a string that is not valid Unicode.
    """
    try:
        body = json.loads(await request.text())
    except LookupError:
        raise BadRequest(f"unknown charset {request.charset!r}: send UTF-8") from None
    except RecursionError:
        raise BadRequest("the body is nested too deep") from None
    except ValueError as error:  # bad JSON or UTF-8, a number past Python's digit limit
        raise BadRequest(f"the body is not valid JSON ({str(error)[:80]})") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the body holds a lone surrogate (\\ud800-\\udfff): not valid "
                         "Unicode text") from None
    return body


async def optional_json_body(request) -> dict:
    """json_body, or {} for a POST with no body (KoboldCpp's abort as clients send it)."""
    return await json_body(request) if request.body_exists and await request.read() else {}


@contextlib.asynccontextmanager
async def _cancel_on_disconnect(request, stream):
    """Cancels stream when the client goes away, also while it waits for its first token."""

    async def watch():
        while stream.state != "done":
            transport = request.transport
            if transport is None or transport.is_closing():
                stream.cancel()
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


def admit(request, stream) -> None:
    """Refuses a generation when max_waiting others already wait for the model: each
    waiting one holds a thread and a connection, and its client would rather retry.

    Raises:
      web.HTTPServiceUnavailable: the queue is full (503, with Retry-After).
    """
    most = request.app[SETTINGS].max_waiting
    if request.app[GENERATIONS].waiting >= most:
        stream.close()
        raise web.HTTPServiceUnavailable(
            reason=f"{most} requests already wait for the model: try again shortly (serve "
                   "--max-waiting)", headers={"Retry-After": "5"})


async def generate(request, stream, key: str = "", seed=None, kobold: bool = False) -> str:
    """Runs one generation to its end; returns its text (stream.stats has its figures,
    stream.others the other replies). kobold: started through a KoboldAI route.

    Raises:
      web.HTTPServiceUnavailable: the queue is full (admit).
    """
    admit(request, stream)
    pieces = []
    async with _cancel_on_disconnect(request, stream):
        async for chunk in request.app[GENERATIONS].run(stream, key, seed, kobold):
            pieces.append(chunk.text)
    return "".join(pieces)


async def stream_sse(request, stream, event, key="", done=None, name=None, notice=None,
                     seed=None, kobold=False):
    """Streams a generation as server-sent events: event(chunk) per text chunk, then
    done(stream) (a list of final events).

    name, when given, goes on every event's `event:` line (KoboldCpp's "message"). notice,
    when given, turns a chunk announcing a long prompt pass into an event of its own.
    """
    admit(request, stream)  # before the headers: a full queue is a plain 503
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})

    # A client that reads nothing for write_timeout is cut off: its socket buffer stays
    # full, and the generation would go on for nobody.
    timeout = request.app[SETTINGS].write_timeout

    async def send(data):
        await asyncio.wait_for(response.write(sse(data, name)), timeout)

    try:
        await response.prepare(request)
        async with _cancel_on_disconnect(request, stream):
            async for chunk in request.app[GENERATIONS].run(stream, key, seed, kobold):
                if chunk.notice is not None:
                    if notice is not None:
                        await send(notice(chunk.notice))
                elif chunk.finish_reason is None:
                    await send(event(chunk))
            for line in done(stream) if done else ():
                await send(line)
    except PygEdgeError as error:  # found in the call's turn: the headers are sent already
        kind = "invalid_request_error" if status_of(error) < 500 else "server_error"
        with contextlib.suppress(ConnectionResetError, asyncio.TimeoutError):
            await send({"error": {"message": str(error), "type": kind}})
    except (ConnectionResetError, asyncio.TimeoutError):
        stream.cancel()  # the client left, or reads nothing: stop generating for it
        if request.transport is not None:
            request.transport.close()
    return response


def sse(data, name=None) -> bytes:
    """One server-sent event carrying data (a str as it is, anything else as JSON)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {name}\n" if name else "").encode() + f"data: {text}\n\n".encode()
