"""Middleware every request passes: the API key, and client errors as each API's JSON.

Clients show the error they can read: SillyTavern and KoboldAI Lite read KoboldAI's
`detail.msg` on /api routes, OpenAI-style clients read `error.message` everywhere else.
A client's mistake is a 4xx; the server's own fault (CTranslate2 failing, a closed model,
a bug) a 5xx, logged as one line (its traceback at debug level).
"""

import hmac
import logging

from aiohttp import web

from pyg_edge.errors import PygEdgeError
from pyg_edge.server.common import SETTINGS
from pyg_edge.server.error_replies import error_response, status_of
from pyg_edge.server.parsing import BadRequest

_OPEN_PATHS = ("/",)  # the web chat page asks for the key itself
_NO_KEY = "missing or wrong API key (send Authorization: Bearer KEY)"
# SillyTavern's KoboldAI Classic connection sends no key at all.
_KOBOLD_CLASSIC = ("; SillyTavern's KoboldAI Classic connection cannot send one: connect "
                   "with Text Completion, type KoboldCpp, and enter the key there")


logger = logging.getLogger("pyg_edge")
@web.middleware
async def errors_as_json(request, handler):
    """Every error becomes a JSON body in the API's shape: a client's a 4xx, the server's a
    5xx (one log line); the server goes on."""
    try:
        return await handler(request)
    except (BadRequest, PygEdgeError) as error:
        status = status_of(error)
        if status >= 500:
            logger.error("%s %s: %s", request.method, request.path, error)
        return error_response(request.path, status, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(request.path, error.status, error.reason)
        if "Retry-After" in error.headers:
            response.headers["Retry-After"] = error.headers["Retry-After"]
        return response
    except ConnectionResetError:
        raise  # the client left: aiohttp drops the connection quietly
    except Exception as error:  # a bug: one line, not a 3 KB traceback per request
        logger.error("%s %s failed: %s: %s", request.method, request.path,
                     type(error).__name__, str(error)[:200])
        logger.debug("the traceback of that failure", exc_info=True)
        return error_response(request.path, 500, "internal server error (the server's log "
                              "has a line on it)")


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
