"""The KoboldAI API (/api/v1, also as /api/latest): routes and the generate body.

KoboldAI Lite, SillyTavern (KoboldAI Classic) and Agnaistic send this body; fields that do
not apply here (typical, tfs, top_a, min_p, sampler order, mirostat, ...) are ignored.
rep_pen_range is ignored too: CTranslate2 penalises every earlier token.
"""

from aiohttp import web

from pyg_edge.server.common import (
    MODEL,
    NAME,
    SETTINGS,
    encode,
    generate,
    json_body,
    limits,
    start_completion,
)
from pyg_edge.server.parsing import field, parse_generate

API_VERSION = "1.2.5"  # >= 1.2.2 makes frontends send stop_sequence
routes = web.RouteTableDef()
_PREFIXES = ("/api/v1", "/api/latest")  # KoboldCpp answers both


def _get(path: str):
    """Registers a GET handler under every KoboldAI prefix."""
    def register(handler):
        for prefix in _PREFIXES:
            routes.get(prefix + path)(handler)
        return handler
    return register


@_get("/model")
async def model_name(request):
    return web.json_response({"result": request.app[NAME]})


@_get("/info/version")
async def version(request):
    return web.json_response({"result": API_VERSION})


@_get("/config/max_context_length")
async def max_context(request):
    return web.json_response({"value": request.app[MODEL].context_length})


@_get("/config/max_length")
async def max_length(request):
    return web.json_response({"value": request.app[SETTINGS].defaults.max_new_tokens})


@_get("/config/soft_prompts_list")
async def soft_prompts(request):
    return web.json_response({"values": []})


@_get("/config/soft_prompt")
async def soft_prompt(request):
    return web.json_response({"value": ""})


async def generate_text(request):
    completion = parse_generate(await json_body(request), request.app[SETTINGS].defaults,
                                limits(request))
    stream = await start_completion(request, completion, single=True)
    text = await generate(request, stream, completion.key, completion.options.seed,
                          kobold=True)
    reply = {"results": [{"text": text, "finish_reason": stream.stats.finish_reason}]}
    if completion.notes:
        reply["warnings"] = list(completion.notes)
    return web.json_response(reply)


async def legacy_token_count(request):
    """text-generation-webui's legacy token count: {prompt} -> {results: [{tokens}]}."""
    text = field(await json_body(request), "prompt", str, required=True)
    return web.json_response({"results": [{"tokens": len(await encode(request, text))}]})


for _prefix in _PREFIXES:
    routes.post(_prefix + "/generate")(generate_text)
    routes.post(_prefix + "/token-count")(legacy_token_count)
