"""What a web page in the user's browser cannot make this server do.

- DNS rebinding: a page on evil.example can point its own name at 127.0.0.1 and then read
  replies as same-origin. Bound to loopback, the server answers only requests whose Host
  is a loopback name (127.0.0.1, localhost, [::1], any port) or one the user allowed
  (`serve --allow-host NAME`). Bound to another address, it answers those names and the
  address itself once any is allowed; with none allowed, any name (the machine's LAN
  names are not known here), and it says so at start (exposure_warnings).
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


def checks_host(settings) -> bool:
    """Whether the Host header is checked: on loopback, or once a name is allowed."""
    return is_loopback(settings.host) or bool(settings.allowed_hosts)


def exposure_warnings(settings) -> list:
    """What a bind beyond loopback exposes, as lines to log at start."""
    if is_loopback(settings.host):
        return []
    warnings = []
    if not settings.api_key:
        warnings.append(f"serving on {settings.host} without an API key: anyone who reaches "
                        "it can use it")
    else:
        warnings.append(f"serving on {settings.host} over plain HTTP: the API key and every "
                        "chat travel unencrypted; put a TLS proxy in front beyond a trusted "
                        "network")
    if not settings.allowed_hosts:
        warnings.append("any Host name is answered: a web page can point its own name at "
                        "this server (DNS rebinding); --allow-host NAME answers only the "
                        "names you list")
    return warnings


@web.middleware
async def check_host_and_body_type(request, handler):
    settings = request.app[SETTINGS]
    host = request.headers.get("Host")
    if host is not None and checks_host(settings):
        name = host_name(host)
        if not is_loopback(name) and name not in settings.allowed_hosts \
                and name != settings.host.strip("[]").lower():
            raise web.HTTPForbidden(reason=f"Host {host!r} is not this server's name; to "
                                    f"allow it, start with --allow-host {name}")
    if request.method == "POST" and request.body_exists:
        allowed = ("application/json", *_RAW_BODY_ROUTES.get(request.path, ()))
        if request.content_type not in allowed:
            raise web.HTTPUnsupportedMediaType(
                reason=f"the body is {request.content_type}: send Content-Type: "
                       "application/json")
    return await handler(request)
