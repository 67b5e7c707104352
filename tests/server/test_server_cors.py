"""Browser pages from another origin (KoboldAI Lite's website) reach the API only when allowed."""

import http.client
import json

import pytest
from click.testing import CliRunner

import pyg_edge.server
from pyg_edge.cli import main
from pyg_edge.server.cors import check_origins
from support.client_payloads import lite_generate
from support.server_harness import RunningServer

LITE = "https://lite.koboldai.net"
# What a browser sends before KoboldAI Lite's POST with its JSON body and an API key.
PREFLIGHT = {"Origin": LITE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


def exchange(server, method, path, headers, body=None):
    """(status, headers, body text) of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = connection.getresponse()
    text = response.read().decode("utf-8")
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, text


@pytest.fixture(scope="module")
def lite_server(tiny_model):
    server = RunningServer(tiny_model, max_length=16, api_key="sesame", cors_origins=[LITE])
    yield server
    server.stop()


def test_kobold_lite_from_its_website_gets_a_reply(lite_server):
    status, headers, _ = exchange(lite_server, "OPTIONS", "/api/v1/generate",
                                  PREFLIGHT | {"Access-Control-Request-Private-Network": "true"})
    assert status == 204  # answered although a preflight carries no API key
    assert headers["access-control-allow-origin"] == LITE
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "authorization,content-type"
    assert headers["access-control-allow-private-network"] == "true"
    body = lite_generate("You: Hi there.\nAqua:", memory="Aqua is a goddess.\n")
    status, headers, text = exchange(
        lite_server, "POST", "/api/v1/generate",
        {"Origin": LITE, "Content-Type": "application/json", "Authorization": "Bearer sesame"},
        body)
    assert status == 200, text
    assert headers["access-control-allow-origin"] == LITE and headers["vary"] == "Origin"
    assert isinstance(json.loads(text)["results"][0]["text"], str)


def test_streams_and_errors_carry_the_header_too(lite_server):
    body = lite_generate("You: Hi.\nAqua:", memory="")
    status, headers, text = exchange(
        lite_server, "POST", "/api/extra/generate/stream",
        {"Origin": LITE, "Content-Type": "application/json", "Authorization": "Bearer sesame"},
        body)
    assert status == 200 and "event: message" in text
    assert headers["access-control-allow-origin"] == LITE
    # Without the key: a 401 the page can read (else the browser hides it as a network error).
    status, headers, text = exchange(lite_server, "GET", "/api/v1/model", {"Origin": LITE})
    assert status == 401 and json.loads(text)["detail"]["type"] == "unauthorized"
    assert headers["access-control-allow-origin"] == LITE


def test_other_origins_and_the_default_server_allow_nothing(lite_server, tiny_model):
    status, headers, _ = exchange(lite_server, "OPTIONS", "/api/v1/generate",
                                  PREFLIGHT | {"Origin": "https://evil.example"})
    assert status != 204 and "access-control-allow-origin" not in headers
    status, headers, _ = exchange(lite_server, "GET", "/api/v1/model",
                                  {"Origin": "https://evil.example",
                                   "Authorization": "Bearer sesame"})
    assert status == 200 and "access-control-allow-origin" not in headers
    server = RunningServer(tiny_model, max_length=16)
    try:
        status, headers, _ = exchange(server, "OPTIONS", "/api/v1/generate", PREFLIGHT)
        assert status == 405 and "access-control-allow-origin" not in headers
        status, headers, _ = exchange(server, "GET", "/api/v1/model", {"Origin": LITE})
        assert status == 200 and "access-control-allow-origin" not in headers
    finally:
        server.stop()


def test_any_origin_with_a_star(tiny_model):
    server = RunningServer(tiny_model, max_length=16, cors_origins=["*"])
    try:
        status, headers, _ = exchange(server, "GET", "/api/extra/version",
                                      {"Origin": "http://localhost:8000"})
        assert status == 200 and headers["access-control-allow-origin"] == "*"
    finally:
        server.stop()


def test_bad_origins_are_refused_clearly():
    assert check_origins(["https://lite.koboldai.net/", "*"]) == (LITE, "*")
    for bad in ("lite.koboldai.net", "https://lite.koboldai.net/page", "ftp://x"):
        with pytest.raises(ValueError, match="scheme://host"):
            check_origins([bad])


def test_serve_passes_its_cors_origins_and_refuses_bad_ones(monkeypatch, tiny_model):
    served = []
    monkeypatch.setattr(pyg_edge.server, "serve", lambda *args, **kw: served.append(args))
    result = CliRunner().invoke(main, ["serve", str(tiny_model.path), "--cors-origin",
                                       LITE + "/", "--cors-origin", "http://127.0.0.1:8000"])
    assert result.exit_code == 0, result.output
    settings = served[0][1]
    assert settings.cors_origins == (LITE, "http://127.0.0.1:8000")
    assert settings.prefix_cache is True
    result = CliRunner().invoke(main, ["serve", str(tiny_model.path), "--cors-origin", "lite"])
    assert result.exit_code == 2 and "--cors-origin" in result.output and not served[1:]
