"""Errors to statuses, and what a bad request costs the log (issue 37): a client's mistake
is a 4xx, the server's own fault a 5xx in the API's shape, each one line in the log."""

import logging
import socket
import time

import pytest

from pyg_edge.errors import GenerationError, InvalidRequestError, ModelLoadError
from pyg_edge.server.connections import quiet_bad_request_logs
from pyg_edge.server.error_replies import status_of
from support.server_harness import RunningServer


@pytest.fixture(scope="module")
def faults_server(tiny_model):
    running = RunningServer(tiny_model, max_length=8)
    yield running
    running.stop()


def test_library_errors_get_the_status_of_whose_fault_they_are():
    assert status_of(InvalidRequestError("x")) == 400
    assert status_of(GenerationError("generation failed: out of memory")) == 500
    assert status_of(ModelLoadError("/m was closed: load the model again")) == 503


@pytest.mark.parametrize("path, body, message", [
    ("/api/v1/generate", {"prompt": "Hi", "max_length": 2}, lambda r: r["detail"]["msg"]),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 2}, lambda r: r["error"]["message"]),
])
def test_a_ctranslate2_failure_is_a_500_in_the_apis_shape(faults_server, monkeypatch, path,
                                                           body, message):
    import ctranslate2

    def failing(self, *args, **kwargs):
        raise RuntimeError("out of memory")
        yield

    monkeypatch.setattr(ctranslate2.Generator, "generate_tokens", failing)
    status, reply = faults_server.request("POST", path, body)
    assert status == 500 and message(reply).startswith("generation failed: out of memory")
    monkeypatch.undo()
    assert faults_server.request("POST", path, body)[0] == 200


def test_a_bug_is_a_500_with_one_log_line(faults_server, monkeypatch, caplog):
    from pyg_edge.server import openai

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(openai, "parse_completion", broken)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="pyg_edge")
    status, reply = faults_server.request("POST", "/v1/completions", {"prompt": "Hi"})
    assert status == 500 and reply["error"]["type"] == "server_error"
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is None, errors
    assert "KeyError" in errors[0].getMessage()


def test_a_request_that_is_not_http_is_one_short_log_line(faults_server, caplog):
    quiet_bad_request_logs()
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for raw in (b"GET / HTTP/1.1\r\nHost\r\n\r\n", b"\x00\x01garbage\r\n\r\n"):
        client = socket.create_connection(("127.0.0.1", faults_server.port))
        client.sendall(raw)
        client.settimeout(5)
        assert client.recv(100).startswith(b"HTTP/1.0 400")
        client.close()
    time.sleep(0.3)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 2
    for record in records:
        assert record.exc_info is None and record.exc_text is None
        assert "\n" not in record.getMessage() and len(record.getMessage()) < 200
