"""The KoboldAI API (/api/v1, also as /api/latest): routes and the generate body.

KoboldAI Lite, SillyTavern (KoboldAI Classic) and Agnaistic send this body; fields that do
not apply here (typical, tfs, top_a, min_p, sampler order, mirostat, ...) are ignored.
rep_pen_range is ignored too: CTranslate2 penalises every earlier token.
"""

from aiohttp import web

from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server.client_settings import apply_client_settings
from pyg_edge.server.common import (
    MODEL,
    NAME,
    SETTINGS,
    completions,
    encode,
    generate,
    json_body,
    limits,
    off_loop,
)
from pyg_edge.server.options import (
    Completion,
    Limits,
    fit_context,
    sampling_options,
    single_reply,
)
from pyg_edge.server.params import Notes, field, first_field, string_list

API_VERSION = "1.2.5"  # >= 1.2.2 makes frontends send stop_sequence
# text-generation-webui's legacy API posts its own body to the same /api/v1/generate
# (SillyTavern's "Legacy API" box): its names for the length, context and stops too.
_MAX_LENGTH = ("max_length", "max_new_tokens", "max_tokens")
_CONTEXT = ("max_context_length", "truncation_length")
routes = web.RouteTableDef()
_PREFIXES = ("/api/v1", "/api/latest")  # KoboldCpp answers both


def parse_generate(body: dict, defaults: SamplingOptions, limits: Limits) -> Completion:
    """Reads a KoboldAI generate body; numbers out of range are clamped and noted.

    Raises:
      BadRequest: a field has the wrong type, or the prompt is missing.
    """
    notes = Notes()
    context = fit_context(first_field(body, _CONTEXT, int), limits, notes,
                          "max_context_length")
    options = sampling_options(
        defaults, limits, context, notes,
        max_new_tokens=first_field(body, _MAX_LENGTH, int),
        temperature=field(body, "temperature", float),
        top_k=field(body, "top_k", int),
        top_p=field(body, "top_p", float),
        repetition_penalty=first_field(body, ("rep_pen", "repetition_penalty"), float),
        seed=first_field(body, ("sampler_seed", "seed"), int),  # -1 or absent: random
        stop=string_list(body, "stop_sequence") + string_list(body, "stopping_strings"),
    )
    options = apply_client_settings(body, options, limits, notes)
    return Completion(
        prompt=field(body, "prompt", str, required=True),
        options=options,
        context=context,
        key=field(body, "genkey", str, ""),
        n=field(body, "n", int, 1),
        memory=field(body, "memory", str, ""),  # KoboldCpp: kept in front of the prompt
        notes=notes,
    )


async def start_generate(request, body) -> tuple:
    """(Completion, its CompletionStream) for a generate body: the prompt fitted to its
    context, planned as every completion is (pyg_edge.chat.completions)."""
    completion = parse_generate(body, request.app[SETTINGS].defaults, limits(request))
    single_reply(completion.n)
    stream = await off_loop(completions(request).create_completion, completion.prompt,
                            completion.options, memory=completion.memory,
                            context=completion.context)
    completion.notes.extend(stream.notes)
    return completion, stream


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
    completion, stream = await start_generate(request, await json_body(request))
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
