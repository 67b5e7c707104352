"""The KoboldAI API (/api/v1) and KoboldCpp's extras (/api/extra): routes and request parsing.

Frontends send many fields that do not apply here (typical, tfs, top_a, min_p, sampler
order, ...); they are ignored. rep_pen_range is ignored too: CTranslate2 penalises every
earlier token.
"""

from dataclasses import dataclass

from aiohttp import web

from pyg_edge import __version__
from pyg_edge.sampling import SamplingOptions
from pyg_edge.server.common import MODEL, QUEUE, SETTINGS, generate, json_body, stream_sse
from pyg_edge.server.params import BadRequest, field, string_list

API_VERSION = "1.2.5"  # >= 1.2.2 makes frontends send stop_sequence
# SillyTavern turns on streaming and token counting for KoboldCpp backends.
KOBOLDCPP_VERSION = "1.60.1"
routes = web.RouteTableDef()


@dataclass(frozen=True)
class KoboldRequest:
    """A parsed generate request.

    Attributes:
      prompt: The text to continue.
      options: Sampling options.
      max_context: Tokens of context the client allows (prompt plus reply).
      key: KoboldCpp's genkey, for /api/extra/abort.
    """

    prompt: str
    options: SamplingOptions
    max_context: int
    key: str


def parse_generate(body: dict, defaults: SamplingOptions, max_length: int,
                   context_length: int) -> KoboldRequest:
    """Reads a KoboldAI generate body.

    Raises:
      BadRequest: a field has the wrong type or is out of bounds.
    """
    top_p = field(body, "top_p", float, defaults.top_p, 0.0, 1.0)
    seed = field(body, "sampler_seed", int, -1)
    options = defaults.with_overrides(
        max_new_tokens=field(body, "max_length", int, defaults.max_new_tokens, 1, max_length),
        temperature=field(body, "temperature", float, defaults.temperature, 0.0, 10.0),
        top_k=field(body, "top_k", int, defaults.top_k, 0, 100_000),
        top_p=top_p or 1.0,  # KoboldAI clients send 0 for "off"
        repetition_penalty=field(body, "rep_pen", float, defaults.repetition_penalty, 0.01, 10.0),
        stop=string_list(body, "stop_sequence"),
        seed=seed if seed >= 0 else None,  # -1: random, as in KoboldAI
    )
    return KoboldRequest(
        prompt=field(body, "prompt", str, required=True),
        options=options,
        max_context=field(body, "max_context_length", int, context_length, 1, 1 << 20),
        key=field(body, "genkey", str, ""),
    )


def fit_left(model, prompt: str, options: SamplingOptions, max_context: int) -> str:
    """Cuts the prompt from the left to fit the context, as KoboldAI does."""
    room = min(max_context, model.context_length) - options.max_new_tokens
    if room < 1:
        raise BadRequest(f"max_length {options.max_new_tokens} leaves no room for the prompt "
                         f"in a context of {min(max_context, model.context_length)}")
    return model.tokenizer.keep_last(prompt, room)


def _parsed(request, body) -> tuple:
    """(KoboldRequest, the prompt fitted to the context) for a generate body."""
    settings, model = request.app[SETTINGS], request.app[MODEL]
    parsed = parse_generate(body, settings["defaults"], settings["max_length"],
                            model.context_length)
    return parsed, fit_left(model, parsed.prompt, parsed.options, parsed.max_context)


# KoboldAI ------------------------------------------------------------------------------

@routes.get("/api/v1/model")
async def model_name(request):
    return web.json_response({"result": request.app[SETTINGS]["name"]})


@routes.get("/api/v1/info/version")
async def version(request):
    return web.json_response({"result": API_VERSION})


@routes.get("/api/v1/config/max_context_length")
async def max_context(request):
    return web.json_response({"value": request.app[MODEL].context_length})


@routes.get("/api/v1/config/max_length")
async def max_length(request):
    return web.json_response({"value": request.app[SETTINGS]["defaults"].max_new_tokens})


@routes.post("/api/v1/generate")
async def generate_text(request):
    parsed, prompt = _parsed(request, await json_body(request))
    text, stats = await generate(request, prompt, parsed.options, parsed.key)
    return web.json_response({"results": [{"text": text, "finish_reason": stats.finish_reason}]})


# KoboldCpp -----------------------------------------------------------------------------

@routes.get("/api/extra/version")
async def koboldcpp_version(request):
    return web.json_response({"result": "KoboldCpp", "version": KOBOLDCPP_VERSION,
                              "backend": f"pyg-edge {__version__}"})


@routes.post("/api/extra/generate/stream")
async def koboldcpp_stream(request):
    parsed, prompt = _parsed(request, await json_body(request))
    return await stream_sse(request, prompt, parsed.options, lambda p: {"token": p},
                            parsed.key)


@routes.post("/api/extra/abort")
async def koboldcpp_abort(request):
    body = await json_body(request) if request.can_read_body else {}
    aborted = request.app[QUEUE].abort(field(body, "genkey", str, ""))
    return web.json_response({"success": "true" if aborted else "false"})


@routes.post("/api/extra/tokencount")
async def koboldcpp_tokencount(request):
    text = field(await json_body(request), "prompt", str, required=True)
    ids = request.app[MODEL].tokenizer.encode(text)
    return web.json_response({"value": len(ids), "ids": ids})
