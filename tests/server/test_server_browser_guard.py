"""A web page cannot use the server through DNS rebinding or a cross-site "simple" POST
(issue 29, finding 2); every client's own requests still work."""

import pytest

from support.cards import TAVERN_V1, b64, png_with_text
from support.server_harness import RunningServer

GENERATE = b'{"prompt": "You: Hi!\\nAqua:", "max_length": 2}'


def error_text(reply) -> str:
    return (reply.get("detail") or {}).get("msg") or reply["error"]["message"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5001", "192.168.1.7:5001"])
def test_a_foreign_host_name_is_refused_on_loopback(server, host):
    for method, path, raw in [("GET", "/", None), ("GET", "/api/v1/model", None),
                              ("POST", "/api/v1/generate", GENERATE)]:
        status, reply = server.request(method, path, raw=raw, headers={
            "Host": host, "Content-Type": "application/json"})
        assert status == 403 and "--allow-host" in error_text(reply), (path, reply)


@pytest.mark.parametrize("host", ["127.0.0.1:5001", "localhost:5001", "LOCALHOST", "[::1]:5001",
                                  "127.0.0.1"])
def test_loopback_names_are_answered(server, host):
    assert server.request("GET", "/api/v1/model", headers={"Host": host})[0] == 200


def test_named_hosts_are_answered_and_a_public_bind_checks_no_names(demo_pyg_model):
    named = RunningServer(demo_pyg_model, allowed_hosts=("MyBox.lan",))
    public = RunningServer(demo_pyg_model, host="0.0.0.0", api_key="k")
    try:
        assert named.request("GET", "/api/v1/model", headers={"Host": "mybox.lan:5001"})[0] == 200
        assert named.request("GET", "/api/v1/model", headers={"Host": "other.lan"})[0] == 403
        assert public.request("GET", "/api/v1/model", headers={
            "Host": "evil.example", "Authorization": "Bearer k"})[0] == 200
    finally:
        named.stop()
        public.stop()


def test_a_wildcard_bind_still_checks_the_names_it_is_given(demo_pyg_model):
    """Issue 37, finding 8: --host 0.0.0.0 ignored --allow-host."""
    public = RunningServer(demo_pyg_model, host="0.0.0.0", allowed_hosts=("mybox.lan",))
    try:
        for host, status in [("evil.example", 403), ("mybox.lan:5001", 200),
                             ("127.0.0.1:5001", 200), ("0.0.0.0:5001", 200)]:
            assert public.request("GET", "/api/v1/model", headers={"Host": host})[0] == status
    finally:
        public.stop()


def test_a_bind_beyond_loopback_says_what_it_exposes():
    from pyg_edge.server import ServerSettings
    from pyg_edge.server.browser_guard import exposure_warnings

    assert exposure_warnings(ServerSettings()) == []
    keyless = " ".join(exposure_warnings(ServerSettings(host="0.0.0.0")))
    assert "without an API key" in keyless and "DNS rebinding" in keyless
    keyed = exposure_warnings(ServerSettings(host="0.0.0.0", api_key="k",
                                             allowed_hosts=("mybox.lan",)))
    assert len(keyed) == 1 and "plain HTTP" in keyed[0]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
@pytest.mark.parametrize("path", ["/api/v1/generate", "/api/extra/abort", "/v1/completions",
                                  "/api/pyg-edge/chat/stream"])
def test_a_body_that_is_not_json_is_a_415(server, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, reply = server.request("POST", path, raw=GENERATE, headers=headers)
    assert status == 415 and "application/json" in error_text(reply)


def test_what_clients_send_still_works(server):
    # JSON with a charset (openai SDK, aiohttp, fetch), and KoboldCpp's body-less abort.
    status, _ = server.request("POST", "/api/v1/generate", raw=GENERATE,
                               headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200
    assert server.request("POST", "/api/extra/abort")[0] == 200
    card = png_with_text({"chara": b64(TAVERN_V1)})  # the web page's card upload
    for kind in ("application/octet-stream", "image/png"):
        status, character = server.request("POST", "/api/pyg-edge/character?name=a.png",
                                           raw=card, headers={"Content-Type": kind})
        assert status == 200 and character["name"] == "Aqua"
    assert server.request("POST", "/api/pyg-edge/character", raw=card,
                          headers={"Content-Type": "text/plain"})[0] == 415
