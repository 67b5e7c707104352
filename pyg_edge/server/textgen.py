"""text-generation-webui's /v1/internal routes, which SillyTavern's Default (ooba) type calls.

On connecting it reads /v1/internal/model/info; when that answers, it counts tokens
through /v1/internal/encode instead of guessing them.
"""

from aiohttp import web

from pyg_edge.server.common import NAME, decode_tokens, encode, json_body
from pyg_edge.server.parsing import field

routes = web.RouteTableDef()


@routes.get("/v1/internal/model/info")
async def model_info(request):
    return web.json_response({"model_name": request.app[NAME], "lora_names": []})


@routes.post("/v1/internal/encode")
async def encode_route(request):
    ids = await encode(request, field(await json_body(request), "text", str, required=True))
    return web.json_response({"tokens": ids, "length": len(ids)})


@routes.post("/v1/internal/decode")
async def decode(request):
    return web.json_response({"text": await decode_tokens(request, await json_body(request))})


@routes.post("/v1/internal/token-count")
async def token_count(request):
    text = field(await json_body(request), "text", str, required=True)
    return web.json_response({"length": len(await encode(request, text))})
