"""KoboldCpp's extras (/api/extra): streaming, abort, tokens, and the status routes clients probe.

SillyTavern turns on streaming and token counting when /api/extra/version reports
KoboldCpp; KoboldAI Lite also reads the true context, the latest generation's figures
(perf) and the text generated so far (generate/check), and loads a preloaded story.
"""

import time

from aiohttp import web

from pyg_edge import __version__
from pyg_edge.server.common import (
    COMPLETIONS,
    GENERATIONS,
    MODEL,
    SETTINGS,
    encode,
    json_body,
    limits,
    optional_json_body,
    start_completion,
    stream_sse,
)
from pyg_edge.server.parsing import field, ignored_settings, parse_generate

# Lite sends `memory` apart from the prompt from 1.49, SillyTavern streams from 1.30.
KOBOLDCPP_VERSION = "1.60.1"
# KoboldCpp's stop_reason codes: out of tokens, end token, stop string (or abort).
_STOP_REASONS = {"length": 0, "stop": 1, "cancelled": 2}
routes = web.RouteTableDef()


@routes.get("/api/extra/version")
async def version(request):
    return web.json_response({
        "result": "KoboldCpp", "version": KOBOLDCPP_VERSION,
        "protected": bool(request.app[SETTINGS].api_key), "txt2img": False,
        "vision": False, "transcribe": False, "backend": f"pyg-edge {__version__}"})


@routes.get("/api/extra/true_max_context_length")
async def true_max_context(request):
    return web.json_response({"value": request.app[MODEL].context_length})


@routes.get("/api/extra/preloadstory")
async def preloaded_story(request):
    return web.json_response({})  # no story is preloaded


@routes.post("/api/extra/generate/stream")
async def stream(request):
    completion = parse_generate(await json_body(request), request.app[SETTINGS].defaults,
                                limits(request))
    stream = await start_completion(request, completion, single=True)
    return await stream_sse(
        request, stream, lambda chunk: {"token": chunk.text, "finish_reason": None},
        completion.key,
        done=lambda stream: [{"token": "", "finish_reason": _finish(stream.stats.finish_reason)}],
        name="message", seed=completion.options.seed,  # Lite reads only events named "message"
        kobold=True)


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


@routes.post("/api/extra/abort")
async def abort(request):
    body = await optional_json_body(request)
    aborted = request.app[GENERATIONS].abort(field(body, "genkey", str, ""))
    return web.json_response({"success": "true" if aborted else "false", "done": "true"})


@routes.post("/api/extra/tokencount")
async def tokencount(request):
    ids = await encode(request, field(await json_body(request), "prompt", str, required=True))
    return web.json_response({"value": len(ids), "ids": ids})


@routes.get("/api/extra/generate/check")
@routes.post("/api/extra/generate/check")
async def check(request):
    """The text so far of the current or latest generation, if it was started with genkey.

    Without a genkey only a generation started without one is shown, so one client
    never reads another's text.
    """
    body = await optional_json_body(request) if request.method == "POST" else {}
    text = request.app[GENERATIONS].text_for(field(body, "genkey", str, ""))
    return web.json_response({"results": [{"text": text}]})


@routes.get("/api/extra/perf")
async def perf(request):
    """The latest generation's figures, with KoboldCpp's names (seconds, tokens, tokens/s)."""
    queue = request.app[GENERATIONS]
    record, now = queue.last, time.time()
    stats = record.stats
    process = stats.first_token_seconds - stats.queued_seconds  # reading, not waiting
    evaluate = max(stats.seconds - stats.first_token_seconds, 0.0)
    processed = stats.prompt_tokens - stats.cached_tokens
    return web.json_response({
        "last_process": round(process, 3), "last_eval": round(evaluate, 3),
        "last_token_count": stats.new_tokens, "last_input_count": stats.prompt_tokens,
        "last_cached_count": stats.cached_tokens,
        "last_process_speed": round(processed / process, 2) if process else 0.0,
        "last_eval_speed": (round((stats.new_tokens - 1) / evaluate, 2)
                            if evaluate and stats.new_tokens > 1 else 0.0),
        "last_seed": -1 if record.seed is None else record.seed,
        "total_gens": queue.generations, "queue": queue.waiting,
        "stop_reason": _STOP_REASONS.get(stats.finish_reason, -1) if queue.generations else -1,
        "finish_reason": stats.finish_reason if queue.generations else "",
        "idle": 0 if record.running else 1, "uptime": round(now - queue.started_at, 1),
        "idletime": round(now - (record.ended_at or queue.started_at), 1), "quiet": False,
        "smart_context": _smart_context(request.app[COMPLETIONS].planner.smart),
        "int8_path": request.app[MODEL].int8_path,
        "ignored_settings": ignored_settings()})


def _smart_context(smart) -> dict:
    """pyg-edge's own: the latest change of what the model sees of a full chat."""
    latest = smart.last
    return ({"fraction": smart.fraction, "event": latest.event,
             "kept_tokens": latest.kept_tokens, "history_tokens": latest.history_tokens}
            if latest else {"fraction": smart.fraction, "event": ""})
