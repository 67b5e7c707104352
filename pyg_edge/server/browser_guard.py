"""What a web page in the user's browser cannot make this server do.

- DNS rebinding: a page on evil.example can point its own name at 127.0.0.1 and then read
  replies as same-origin. Bound to loopback, the server answers only requests whose Host
  is a loopback name (127.0.0.1, localhost, [::1], any port) or one the user allowed
  (`serve --allow-host NAME`).
- Cross-site "simple" requests: a page may POST text/plain or a form to any address
  without a CORS preflight, and the request runs even if the page cannot read the reply.
  A POST body must be application/json (what SillyTavern, KoboldAI Lite, the openai SDK
  and the web chat page send), or 415; a page cannot send that without a preflight, which
  only allowed origins pass (pyg_edge.server.cors). The card upload also takes the raw
  file (application/octet-stream, image/png). Body-less POSTs (KoboldCpp's abort as
  several clients send it) pass.
"""

import ipaddress

from aiohttp import web

from pyg_edge.server.common import SETTINGS

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_RAW_BODY_ROUTES = {"/api/pyg-edge/character": ("application/octet-stream", "image/png")}


def is_loopback(host: str) -> bool:
    """Whether a bind address or Host name is this machine only."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:5001" -> "::1")."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


@web.middleware
async def check_host_and_body_type(request, handler):
    settings = request.app[SETTINGS]
    host = request.headers.get("Host")
    if host is not None and is_loopback(settings.host):
        name = host_name(host)
        if not is_loopback(name) and name not in settings.allowed_hosts:
            raise web.HTTPForbidden(reason=f"Host {host!r} is not this server's name (it "
                                    "listens on loopback only); to allow it, start with "
                                    f"--allow-host {name}")
    if request.method == "POST" and request.body_exists:
        allowed = ("application/json", *_RAW_BODY_ROUTES.get(request.path, ()))
        if request.content_type not in allowed:
            raise web.HTTPUnsupportedMediaType(
                reason=f"the body is {request.content_type}: send Content-Type: "
                       "application/json")
    return await handler(request)
