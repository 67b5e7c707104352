"""Connections that never finish a request are closed, and a client that leaves early costs
no traceback in the log (issue 29, finding 5)."""

import logging
import socket
import time

import pytest

from pyg_edge.server import app as app_module
from support.server_harness import RunningServer

PARTIAL = b"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl"


@pytest.fixture
def quick_idle_server(tiny_model, monkeypatch):
    monkeypatch.setattr(app_module, "IDLE_TIMEOUT_S", 1.0)
    running = RunningServer(tiny_model, max_length=16)
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
