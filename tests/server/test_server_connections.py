"""Connections that never finish a request are closed, and a client that leaves early costs
no traceback in the log (issue 29, finding 5)."""

import asyncio
import logging
import socket
import time

import pytest

from support.server_harness import RunningServer

PARTIAL = b"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl"


@pytest.fixture
def quick_idle_server(tiny_model):
    running = RunningServer(tiny_model, max_length=16, idle_timeout=1.0, body_timeout=1.0)
    yield running
    running.stop()


def test_a_half_sent_request_is_closed_after_the_idle_timeout(quick_idle_server):
    clients = [socket.create_connection(("127.0.0.1", quick_idle_server.port))
               for _ in range(20)]
    for client in clients:
        client.sendall(PARTIAL)
        client.settimeout(5)
    started = time.monotonic()
    closed = [client.recv(1024) == b"" for client in clients]  # b"": the server closed it
    assert all(closed) and time.monotonic() - started < 4
    for client in clients:
        client.close()
    assert quick_idle_server.request("GET", "/api/v1/model")[0] == 200


def test_a_client_that_leaves_before_its_reply_logs_no_traceback(server, caplog):
    caplog.set_level(logging.DEBUG)
    body = b'{"prompt": "You: Hi!\\nAqua:", "max_length": 40}'
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"POST /api/extra/generate/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)
        client.close()  # before the headers of the reply
    time.sleep(1.0)
    assert server.request("GET", "/api/v1/model")[0] == 200
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


def test_a_body_that_never_finishes_is_a_408_and_the_connection_closes(quick_idle_server):
    """Issue 37, finding 3: the idle timeout covered the headers only."""
    clients = []
    for _ in range(30):
        client = socket.create_connection(("127.0.0.1", quick_idle_server.port))
        client.sendall(b"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"pro")
        client.settimeout(5)
        clients.append(client)
    started = time.monotonic()
    for client in clients:
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"--body-timeout" in reply, reply[:200]
        client.close()
    assert time.monotonic() - started < 4
    assert quick_idle_server.request("GET", "/api/v1/model")[0] == 200


def test_a_finished_reply_nobody_reads_is_dropped_after_the_write_timeout(tiny_model,
                                                                          monkeypatch):
    """Issue 37, finding 5: only streamed replies had a write timeout."""
    from aiohttp import web

    running = RunningServer(tiny_model, max_length=16, write_timeout=0.5)
    original = web.Response.write_eof

    async def write_eof(self, data=b""):
        if self._req is not None and self._req.headers.get("X-Test-Stall") \
                and not getattr(self, "stalled", False):
            self.stalled = True
            await asyncio.sleep(3600)  # a client whose receive window never opens
        return await original(self, data)

    monkeypatch.setattr(web.Response, "write_eof", write_eof)
    try:
        client = socket.create_connection(("127.0.0.1", running.port))
        body = b'{"content": "hello there"}'
        client.sendall(b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Test-Stall: 1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)
        client.settimeout(5)
        started = time.monotonic()
        while client.recv(65536):
            pass
        assert time.monotonic() - started < 3  # closed by the server, not by our timeout
        client.close()
        assert running.request("GET", "/api/v1/model")[0] == 200
    finally:
        running.stop()


def test_running_out_of_descriptors_is_one_log_line_per_minute(caplog):
    from pyg_edge.server.connections import QuietAcceptErrors

    handler, loop = QuietAcceptErrors(), asyncio.new_event_loop()
    caplog.set_level(logging.WARNING, logger="pyg_edge")
    for _ in range(500):
        handler(loop, {"message": "socket.accept() out of system resource",
                       "exception": OSError(24, "Too many open files")})
    loop.close()
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None


def test_the_open_file_limit_is_raised_towards_the_hard_limit(monkeypatch):
    from pyg_edge.server import connections

    limits = {"now": (256, 4096)}
    monkeypatch.setattr(connections.resource, "getrlimit", lambda kind: limits["now"])
    monkeypatch.setattr(connections.resource, "setrlimit",
                        lambda kind, value: limits.update(now=value))
    assert connections.raise_open_file_limit() == 4096 and limits["now"] == (4096, 4096)
