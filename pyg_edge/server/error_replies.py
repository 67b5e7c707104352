"""Errors as each API's clients read them, and which status each library error gets.

SillyTavern and KoboldAI Lite read KoboldAI's `detail.msg` on /api routes, OpenAI-style
clients read `error.message` everywhere else.
"""

from aiohttp import web

from pyg_edge.errors import GenerationError, ModelLoadError, PygEdgeError, ReentryError

_KOBOLD_TYPES = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large",
                 415: "unsupported_media_type"}
# The library's errors that are the server's fault, not the request's: their statuses.
_SERVER_FAULTS = ((ModelLoadError, 503), (GenerationError, 500), (ReentryError, 500))


def status_of(error: PygEdgeError) -> int:
    """The HTTP status of a library error: 400 for a bad request, 5xx for the server's."""
    for kind, status in _SERVER_FAULTS:
        if isinstance(error, kind):
            return status
    return 400


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
