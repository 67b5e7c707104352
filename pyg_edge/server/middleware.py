"""Middleware every request passes: the API key, and client errors turned into JSON."""

import hmac

from aiohttp import web

from pyg_edge.errors import PygEdgeError
from pyg_edge.server.common import SETTINGS
from pyg_edge.server.params import BadRequest


@web.middleware
async def errors_as_json(request, handler):
    """Every error a client can cause becomes a 4xx with a JSON body; the server goes on."""
    try:
        return await handler(request)
    except (BadRequest, PygEdgeError) as error:
        return error_response(400, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, error.reason)


def error_response(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


@web.middleware
async def require_key(request, handler):
    key = request.app[SETTINGS]["api_key"]
    if key and request.path.startswith(("/api/", "/v1/")):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = given or request.headers.get("X-Api-Key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            return error_response(401, "missing or wrong API key (send Authorization: Bearer KEY)")
    return await handler(request)
