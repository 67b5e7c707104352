"""What one connection may hold: its body must arrive in time, its reply must be read in
time, and a process out of file descriptors says so once rather than flooding the log.

The idle timeout (aiohttp's keep-alive) covers a connection with no request under way or
with half its headers; body_timeout covers the body, write_timeout the reply (streamed
replies time each event in pyg_edge.server.common).
"""

import asyncio
import contextlib
import logging
import time

try:
    import resource
except ImportError:  # Windows: no such limit to raise
    resource = None

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from pyg_edge.server.common import SETTINGS
from pyg_edge.server.error_replies import error_response

logger = logging.getLogger("pyg_edge")
# asyncio pauses accept() for a second when the process is out of descriptors, and logs
# each pause with a traceback; one line per this many seconds says the same.
ACCEPT_ERROR_EVERY_S = 60.0
_OUT_OF_RESOURCES = "socket.accept() out of system resource"


@web.middleware
async def bounded_io(request, handler):
    """Reads the body within body_timeout (408 and close past it), and sends a finished
    reply within write_timeout (the connection is closed past it)."""
    settings = request.app[SETTINGS]
    if request.body_exists:
        try:
            await asyncio.wait_for(request.read(), settings.body_timeout)
        except asyncio.TimeoutError:
            response = error_response(request.path, 408, f"the body did not arrive within "
                                      f"{settings.body_timeout:g} s (serve --body-timeout)")
            # Sent now and the connection closed: aiohttp would otherwise linger, reading
            # the rest of the body for another 10 s.
            await _send_then_close(request, response, settings.write_timeout)
            return response
        except ConnectionResetError:  # the client left: nobody reads an answer
            return await _send_then_close(request, web.Response(status=400), 0)
    response = await handler(request)
    if isinstance(response, web.Response) and not response.prepared:
        try:
            await asyncio.wait_for(_send(request, response), settings.write_timeout)
        except (asyncio.TimeoutError, ConnectionResetError):
            if request.transport is not None:  # a client that reads nothing holds nothing
                request.transport.abort()
    return response


async def _send_then_close(request, response, timeout: float):
    if timeout:
        with contextlib.suppress(asyncio.TimeoutError, ConnectionResetError):
            await asyncio.wait_for(_send(request, response), timeout)
    if request.transport is not None:
        request.transport.close()
    return response


async def _send(request, response) -> None:
    await response.prepare(request)
    await response.write_eof()


def runner_options(settings) -> dict:
    """aiohttp's server options (web.run_app, web.AppRunner) for these settings."""
    return {"keepalive_timeout": settings.idle_timeout}


class QuietAcceptErrors:
    """An event loop exception handler: running out of file descriptors is one warning
    line per ACCEPT_ERROR_EVERY_S (with how many pauses it stands for); everything else
    goes to the loop's default handler."""

    def __init__(self):
        self._logged_at, self._unlogged = float("-inf"), 0

    def __call__(self, loop, context) -> None:
        if context.get("message") != _OUT_OF_RESOURCES:
            loop.default_exception_handler(context)
            return
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= ACCEPT_ERROR_EVERY_S:
            logger.warning("out of file descriptors: new connections wait (%d time(s) since "
                           "the last warning; %s)", self._unlogged, context.get("exception"))
            self._logged_at, self._unlogged = now, 0


def raise_open_file_limit(wanted: int = 65536) -> int:
    """Raises this process's soft limit on open files towards wanted (at most the hard
    limit): each connection holds one, and 256 or 1024 is soon reached. Returns it."""
    if resource is None:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        logger.info("open file limit raised from %d to %d", soft, target)
        return target
    return soft


class OneLinePerBadRequest(logging.Filter):
    """For aiohttp.server's log: a request that is not HTTP, or a client that left, is one
    warning line; aiohttp logs each with its traceback (a 19-byte request, 521 bytes)."""

    def filter(self, record) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (HttpProcessingError, ConnectionError)):
            first = (getattr(error, "message", "") or str(error)).strip().splitlines()
            record.msg, record.args = "%s: %s", (record.getMessage(),
                                                  first[0][:120] if first else type(error).__name__)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_bad_request_logs() -> None:
    """Installs OneLinePerBadRequest on aiohttp.server's logger (once)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLinePerBadRequest) for f in server_log.filters):
        server_log.addFilter(OneLinePerBadRequest())
