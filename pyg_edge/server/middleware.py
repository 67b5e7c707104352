"""Middleware every request passes: the API key, and client errors as each API's JSON.

Clients show the error they can read: SillyTavern and KoboldAI Lite read KoboldAI's
`detail.msg` on /api routes, OpenAI-style clients read `error.message` everywhere else.
"""

import hmac

from aiohttp import web

from pyg_edge.errors import PygEdgeError
from pyg_edge.server.common import SETTINGS
from pyg_edge.server.params import BadRequest

_KOBOLD_TYPES = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large",
                 415: "unsupported_media_type"}
_OPEN_PATHS = ("/",)  # the web chat page asks for the key itself
_NO_KEY = "missing or wrong API key (send Authorization: Bearer KEY)"
# SillyTavern's KoboldAI Classic connection sends no key at all.
_KOBOLD_CLASSIC = ("; SillyTavern's KoboldAI Classic connection cannot send one: connect "
                   "with Text Completion, type KoboldCpp, and enter the key there")


@web.middleware
async def errors_as_json(request, handler):
    """Every error a client can cause becomes a 4xx with a JSON body; the server goes on."""
    try:
        return await handler(request)
    except (BadRequest, PygEdgeError) as error:
        return error_response(request.path, 400, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(request.path, error.status, error.reason)


def error_response(path: str, status: int, message: str) -> web.Response:
    """An error in the shape the API of path uses."""
    if path.startswith("/api/") and not path.startswith("/api/pyg-edge/"):
        kind = _KOBOLD_TYPES.get(status, "bad_input" if status < 500 else "server_error")
        # SillyTavern's stream reader shows error.message; KoboldAI clients read detail.msg.
        return web.json_response({"detail": {"msg": message, "type": kind},
                                  "error": {"message": message, "type": kind}}, status=status)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "code": status}},
                             status=status)


@web.middleware
async def require_key(request, handler):
    key = request.app[SETTINGS].api_key
    if key and request.path not in _OPEN_PATHS:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
        given = given or request.headers.get("X-Api-Key", "")
        # A header that is not UTF-8 arrives with surrogate escapes: compared as bytes.
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key.encode()):
            return error_response(request.path, 401, _NO_KEY + (
                _KOBOLD_CLASSIC if request.path.startswith("/api/") else ""))
    return await handler(request)
