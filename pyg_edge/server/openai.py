"""The OpenAI-style API (/v1): routes, and their bodies mapped onto pyg-edge.

/v1/completions continues a raw prompt; it also reads the fields text-generation-webui
clients send (SillyTavern's Text Completion: max_new_tokens, truncation_length,
stopping_strings, rep_pen, ...), so every type SillyTavern offers gets the same reply.
/v1/chat/completions builds a Pygmalion prompt from the messages (chat_messages).

`n` asks for several choices from one prompt pass (PygModel.stream with n). Choice 0 is
generated and streamed as with n = 1; choices 1 to n-1 are sampled beside it in the same
batch. Streamed, they follow choice 0's last chunk, one chunk of whole text and one
finishing chunk each, every chunk holding one choice with its index (the OpenAI format
allows interleaved choices; SillyTavern files chunks with index > 0 as swipes).
"""

import time
import uuid

from aiohttp import web

from pyg_edge.server.common import (
    NAME,
    SETTINGS,
    completions,
    generate,
    json_body,
    limits,
    off_loop,
    start_completion,
    stream_sse,
)
from pyg_edge.server.logprobs import chat_logprobs, text_logprobs
from pyg_edge.server.parsing import Completion, field, include_usage, parse_completion

routes = web.RouteTableDef()


@routes.get("/v1/models")
@routes.get("/models")  # a Custom (Chat Completion) URL typed without /v1
async def models(request):
    name = request.app[NAME]
    return web.json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "pyg-edge"}]})


@routes.post("/v1/completions")
@routes.post("/completions")
async def completions_route(request):
    body = await json_body(request)
    completion = _parse(request, body, default_tokens=16)  # OpenAI's default
    stream = await start_completion(request, completion)
    return await _reply(request, body, "text_completion", stream, completion)


@routes.post("/v1/chat/completions")
@routes.post("/chat/completions")
async def chat_completions(request):
    body = await json_body(request)
    completion = _parse(request, body, request.app[SETTINGS].defaults.max_new_tokens,
                        prompt="")  # the prompt is built from the messages
    stream = await off_loop(
        completions(request).create_chat_completion, body.get("messages"), completion.options,
        character=field(body, "character", str, "") or field(body, "char_name", str, ""),
        user_name=field(body, "user_name", str, ""), context=completion.context,
        n=completion.n)
    completion.notes.extend(stream.notes)
    return await _reply(request, body, "chat.completion", stream, completion)


def _parse(request, body, default_tokens, prompt=None) -> Completion:
    return parse_completion(body, request.app[SETTINGS].defaults, limits(request),
                            default_tokens, prompt)


async def _reply(request, body, kind, stream, completion: Completion):
    name, options = request.app[NAME], completion.options
    if not field(body, "stream", bool, False):
        text = await generate(request, stream, seed=options.seed)
        reply = completion_body(kind, name, text, stream.stats,
                                warnings=list(completion.notes))
        if options.top_logprobs is not None:
            reply["choices"][0]["logprobs"] = _logprobs(kind, stream.stats.token_logprobs)
        return web.json_response(add_choices(reply, kind, stream.others))
    ident = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
    shown = [0]  # text streamed so far, where the next chunk's token offsets start

    def chunk(piece):
        body = chunk_body(kind, name, ident, piece.text)
        if options.top_logprobs is not None:
            body["choices"][0]["logprobs"] = _logprobs(kind, piece.logprobs, shown[0])
            shown[0] += len(piece.text)
        return body

    def done(stream):
        final = [chunk_body(kind, name, ident, None, stream.stats.finish_reason),
                 *other_chunks(kind, name, ident, stream.others)]
        if include_usage(body):  # OpenAI's last chunk: no choices, the usage
            final.append({**chunk_body(kind, name, ident, None), "choices": [],
                          "usage": usage(stream.stats)})
        return [*final, "[DONE]"]

    return await stream_sse(request, stream, chunk, done=done, seed=options.seed)


def _logprobs(kind: str, entries, offset: int = 0) -> dict:
    return chat_logprobs(entries) if kind == "chat.completion" else text_logprobs(entries,
                                                                                   offset)


def completion_body(kind: str, model: str, text: str, stats, created: int = 0,
                    warnings: list = ()) -> dict:
    """The JSON of a finished (non-streamed) completion; warnings say what was adjusted."""
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}}
              if kind == "chat.completion" else {"index": 0, "text": text, "logprobs": None})
    choice["finish_reason"] = _finish(stats.finish_reason)
    body = {
        "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind, "created": created or int(time.time()), "model": model,
        "choices": [choice],
        "usage": usage(stats),
    }
    if warnings:
        body["warnings"] = list(warnings)
    return body


def usage(stats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.new_tokens,
            "total_tokens": stats.prompt_tokens + stats.new_tokens}


def chunk_body(kind: str, model: str, ident: str, piece, finish=None) -> dict:
    """One streamed chunk: a text piece, or (piece None) the final chunk with its reason."""
    if kind == "chat.completion":
        delta = {"content": piece} if piece is not None else {}
        choice = {"index": 0, "delta": delta}
        kind_name = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": piece or "", "logprobs": None}
        kind_name = "text_completion"
    choice["finish_reason"] = _finish(finish) if finish else None
    return {"id": ident, "object": kind_name, "created": int(time.time()), "model": model,
            "choices": [choice]}


def add_choices(completion: dict, kind: str, others: list) -> dict:
    """Appends choices 1.. (others: (text, finish_reason) pairs) to a finished completion."""
    for index, (text, reason) in enumerate(others, start=1):
        choice = ({"index": index, "message": {"role": "assistant", "content": text}}
                  if kind == "chat.completion" else {"index": index, "text": text,
                                                     "logprobs": None})
        choice["finish_reason"] = _finish(reason)
        completion["choices"].append(choice)
    return completion


def other_chunks(kind: str, model: str, ident: str, others: list) -> list:
    """The streamed chunks of choices 1..: each one's text, then its finishing chunk."""
    chunks = []
    for index, (text, reason) in enumerate(others, start=1):
        for chunk in (chunk_body(kind, model, ident, text),
                      chunk_body(kind, model, ident, None, _finish(reason))):
            chunk["choices"][0]["index"] = index
            chunks.append(chunk)
    return chunks


def _finish(reason: str) -> str:
    # A reply cut short by a client that left is never sent; "stop" as for choice 0.
    return "length" if reason == "length" else "stop"
