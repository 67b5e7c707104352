"""Cross-origin access for frontends that run in a browser page of another site (opt-in).

KoboldAI Lite opened from its website, or any web frontend served from another origin,
calls the API from the page itself, so the browser first asks (a CORS preflight) and then
reads replies only if they carry Access-Control-Allow-Origin. SillyTavern calls from its
own server and needs none of this. Off unless `serve --cors-origin` names origins: with it
on, any page from those origins can use the model (with the API key if one is set).
"""

from aiohttp import web

from pyg_edge.server.common import SETTINGS

_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
# What browsers send beyond the CORS-safelisted headers: the JSON body, the API key, and
# KoboldAI Lite's own headers.
_HEADERS = "Content-Type, Authorization, X-Api-Key, apikey, genkey, Client-Agent"
_MAX_AGE = "600"  # seconds a browser may skip the preflight for the same request


def allowed_origin(request: web.Request) -> str | None:
    """The Access-Control-Allow-Origin value for request, or None when not allowed."""
    origins = request.app[SETTINGS].cors_origins
    origin = request.headers.get("Origin")
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin.rstrip("/") in origins else None


@web.middleware
async def answer_preflight(request, handler):
    """Answers a browser's preflight before the API key check (preflights carry no key)."""
    if request.method == "OPTIONS" and allowed_origin(request):
        asked = request.headers.get("Access-Control-Request-Headers")
        headers = {"Access-Control-Allow-Methods": _METHODS,
                   "Access-Control-Allow-Headers": asked or _HEADERS,
                   "Access-Control-Max-Age": _MAX_AGE}
        if request.headers.get("Access-Control-Request-Private-Network") == "true":
            # Chrome asks before a public site's page may call a server on this machine.
            headers["Access-Control-Allow-Private-Network"] = "true"
        return web.Response(status=204, headers=headers)
    return await handler(request)


async def add_allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: every reply to an allowed origin says so, streams too."""
    origin = allowed_origin(request)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        if origin != "*":
            response.headers["Vary"] = "Origin"


def check_origins(origins) -> tuple:
    """The --cors-origin values, normalised; raises ValueError for one that is not an origin.

    An origin is "*" or scheme://host[:port], as browsers send it (no path).
    """
    checked = []
    for origin in origins:
        origin = origin.strip().rstrip("/")
        scheme, _, rest = origin.partition("://")
        if origin != "*" and (scheme not in ("http", "https") or not rest or "/" in rest):
            raise ValueError(f"CORS origin {origin!r} is not '*' or scheme://host[:port], "
                             f"e.g. https://lite.koboldai.net")
        checked.append(origin)
    return tuple(checked)
