"""llama.cpp-style routes: /completion, /props, /tokenize and /detokenize.

SillyTavern's Text Completion "llama.cpp" type generates through /completion and counts
tokens through /tokenize ({"content": ...}); its "vLLM" type tokenizes through the same
route with {"prompt": ...}. Other clients read the context size from /props
(default_generation_settings.n_ctx).
"""

from aiohttp import web

from pyg_edge import __version__
from pyg_edge.server.common import (
    MODEL,
    NAME,
    SETTINGS,
    decode_tokens,
    encode,
    generate,
    json_body,
    limits,
    start_completion,
    stream_sse,
)
from pyg_edge.server.logprobs import llamacpp_probabilities
from pyg_edge.server.parsing import field, parse_completion

routes = web.RouteTableDef()


@routes.get("/props")
async def props(request):
    model, name = request.app[MODEL], request.app[NAME]
    defaults = request.app[SETTINGS].defaults
    return web.json_response({
        "default_generation_settings": {
            "n_ctx": model.context_length, "model": name,
            "n_predict": defaults.max_new_tokens, "temperature": defaults.temperature,
            "top_k": defaults.top_k, "top_p": defaults.top_p,
            "repeat_penalty": defaults.repetition_penalty, "seed": -1},
        "total_slots": 1, "model_path": name, "chat_template": "",
        "build_info": f"pyg-edge {__version__}"})


@routes.post("/tokenize")
async def tokenize(request):
    """llama.cpp's {content, with_pieces} or vLLM's {prompt}; answers both shapes."""
    body = await json_body(request)
    key = "content" if "content" in body else "prompt"
    tokens = await encode(request, field(body, key, str, required=True),
                          pieces=field(body, "with_pieces", bool, False))
    return web.json_response({"tokens": tokens, "count": len(tokens),
                              "max_model_len": request.app[MODEL].context_length})


@routes.post("/detokenize")
async def detokenize(request):
    text = await decode_tokens(request, await json_body(request))
    return web.json_response({"content": text, "prompt": text})


@routes.post("/completion")
async def completion(request):
    """llama.cpp's native completion: {prompt, n_predict, ...} -> {content, stop, timings}."""
    body = await json_body(request)
    parsed = parse_completion(body, request.app[SETTINGS].defaults, limits(request),
                              request.app[SETTINGS].defaults.max_new_tokens)
    stream = await start_completion(request, parsed, single=True)
    seed = parsed.options.seed
    if field(body, "stream", bool, False):
        return await stream_sse(request, stream, lambda chunk: _chunk(chunk, parsed.options),
                                done=lambda stream: [_final(request, "", stream.stats, parsed)],
                                seed=seed)
    text = await generate(request, stream, seed=seed)
    return web.json_response(_final(request, text, stream.stats, parsed))


def _chunk(piece, options) -> dict:
    chunk = {"content": piece.text, "stop": False}
    if options.top_logprobs is not None:
        chunk["completion_probabilities"] = llamacpp_probabilities(piece.logprobs)
    return chunk


def _final(request, text: str, stats, parsed) -> dict:
    """The last (or only) answer of a /completion, with llama.cpp's figures."""
    process = stats.first_token_seconds - stats.queued_seconds  # reading, not waiting
    evaluate = max(stats.seconds - stats.first_token_seconds, 0.0)
    reply = {
        "content": text, "stop": True, "model": request.app[NAME],
        "tokens_predicted": stats.new_tokens, "tokens_evaluated": stats.prompt_tokens,
        "tokens_cached": stats.cached_tokens, "truncated": bool(parsed.notes),
        "stopped_eos": stats.finish_reason == "stop", "stopped_limit":
            stats.finish_reason == "length", "stopped_word": False, "stopping_word": "",
        "timings": {
            "prompt_n": stats.prompt_tokens, "prompt_ms": round(process * 1000, 1),
            "predicted_n": stats.new_tokens, "predicted_ms": round(evaluate * 1000, 1)}}
    if parsed.options.top_logprobs is not None and text:  # the streamed end has none
        reply["completion_probabilities"] = llamacpp_probabilities(stats.token_logprobs)
    if parsed.notes:
        reply["warnings"] = list(parsed.notes)
    return reply
