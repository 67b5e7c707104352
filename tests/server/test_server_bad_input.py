"""Every malformed body gets a 400 with a JSON message, never a 500, and the server goes on
serving (issue 29's findings 4 and 5); a property-based fuzz over every route's body."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.server_harness import RunningServer

JSON = {"Content-Type": "application/json"}
ROUTES = ["/api/v1/generate", "/api/extra/generate/stream", "/api/extra/tokencount",
          "/api/extra/abort", "/api/extra/generate/check", "/v1/completions",
          "/v1/chat/completions", "/completion", "/tokenize", "/detokenize",
          "/v1/internal/encode", "/v1/internal/decode", "/v1/internal/token-count",
          "/api/v1/token-count", "/api/pyg-edge/chat/stream"]
LONE = '"\\ud800 hello"'  # a JSON string with a lone surrogate: valid JSON, not Unicode


def post_raw(server, path, raw: bytes, headers=JSON):
    return server.request("POST", path, raw=raw, headers=headers)


def assert_clear_400(status, reply):
    assert status == 400, (status, reply)
    message = reply.get("error", {}).get("message") or reply["detail"]["msg"]
    assert message and "\n" not in message


@pytest.mark.parametrize("path, raw", [
    ("/api/v1/generate", '{"prompt": ' + LONE + '}'),
    ("/api/extra/tokencount", '{"prompt": ' + LONE + '}'),
    ("/v1/completions", '{"prompt": ' + LONE + '}'),
    ("/api/pyg-edge/chat/stream", '{"character": {"name": "A"}, "message": ' + LONE + '}'),
    ("/api/v1/generate", "[" * 100_000 + "]" * 100_000),
    ("/api/v1/generate", '{"prompt": "hi", "max_length": ' + "9" * 5000 + '}'),
    ("/api/v1/generate", '{"prompt": "hi", "temperature": ' + "9" * 400 + '}'),
    ("/api/pyg-edge/chat/stream", '{"character": {"name": "A"}, "history": 5}'),
])
def test_malformed_bodies_are_a_400_with_a_message(server, path, raw):
    assert_clear_400(*post_raw(server, path, raw.encode("utf-8", "surrogatepass")))
    assert server.request("GET", "/api/v1/model")[0] == 200  # still serving


def test_an_unknown_charset_is_a_400(server):
    status, reply = post_raw(server, "/api/v1/generate", b'{"prompt": "hi"}',
                             {"Content-Type": "application/json; charset=bogus"})
    assert_clear_400(status, reply)


@pytest.mark.parametrize("field, value", [
    ("logit_bias", {"\u00b2": -100}), ("logit_bias", {"50256": 10**400}),
    ("custom_token_bans", "1,\u00b2"), ("no_repeat_ngram_size", 10**30),
    ("custom_token_bans", "--5"), ("custom_token_bans", ["--5"]), ("logit_bias", {"--5": -100}),
    ("logit_bias", [["--5", False]]), ("stop", ["x"] * 100), ("banned_strings", ["b"] * 5000)])
def test_odd_token_ids_and_huge_numbers_never_break_a_reply(server, field, value):
    for path, body in [("/api/v1/generate", {"prompt": "You: Hi!\nAqua:", "max_length": 4}),
                       ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "stream": True})]:
        status, reply = server.request("POST", path, {**body, field: value}, headers=JSON)
        if status == 400:
            assert_clear_400(status, reply)
        else:  # a reply, streamed to its end marker
            assert status == 200 and ("results" in reply or reply.rstrip().endswith("[DONE]"))


@pytest.fixture(scope="module")
def keyed(demo_pyg_model):
    running = RunningServer(demo_pyg_model, api_key="s3cret")
    yield running
    running.stop()


def test_the_auth_scheme_is_case_insensitive_and_a_non_utf8_header_is_refused(keyed):
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert keyed.request("GET", "/v1/models",
                             headers={"Authorization": f"{scheme} s3cret"})[0] == 200
    status, reply = keyed.request("GET", "/v1/models",
                                  headers={"Authorization": b"Bearer \xff\xfe"})
    assert status == 401 and reply["error"]["message"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
FIELDS = ["prompt", "max_length", "max_tokens", "max_new_tokens", "n_predict", "temperature",
          "top_k", "top_p", "rep_pen", "seed", "stop", "stop_sequence", "n", "stream",
          "messages", "logit_bias", "custom_token_bans", "banned_tokens", "logprobs",
          "top_logprobs", "n_probs", "max_context_length", "truncation_length", "genkey",
          "memory", "tokens", "content", "text", "character", "history", "message",
          "no_repeat_ngram_size", "min_length", "ban_eos_token", "with_pieces"]
SMALL = {"max_length": 4, "max_tokens": 4, "max_new_tokens": 4, "n_predict": 4}
BODIES = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(ROUTES), body=BODIES)
def test_no_body_makes_any_route_fail_with_a_500(server, path, body):
    body = {**body, **{k: v for k, v in SMALL.items() if k not in body}}  # short replies
    raw = json.dumps(body).encode()
    status, reply = post_raw(server, path, raw)
    assert status < 500, (path, body, reply)
    if status == 400:
        assert_clear_400(status, reply)
    assert server.request("GET", "/api/v1/model")[0] == 200


def test_a_stream_that_fails_before_its_first_token_sends_an_error_and_ends(server,
                                                                           monkeypatch):
    import ctranslate2

    def failing(self, *args, **kwargs):
        raise RuntimeError("out of memory")
        yield

    monkeypatch.setattr(ctranslate2.Generator, "generate_tokens", failing)
    for path, body in [("/api/extra/generate/stream", {"prompt": "You: Hi!\nAqua:"}),
                       ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "stream": True})]:
        events = server.events(path, body)
        assert events[-1]["error"]["message"].startswith("generation failed: out of memory")
    monkeypatch.undo()
    assert server.request("POST", "/api/v1/generate", {"prompt": "Hi", "max_length": 2})[0] == 200


# Issue 37: the fuzz reaches uploaded cards (PNG chunks and JSON) and list-valued fields.
CARD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "char_name", "description", "first_mes", "mes_example",
                         "spec", "data", "char_persona", "x"]), inner, max_size=5),
    max_leaves=10)


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


@st.composite
def png_cards(draw):
    import base64
    import zlib

    chunks = []
    for _ in range(draw(st.integers(0, 3))):
        keyword = draw(st.sampled_from([b"chara", b"ccv3", b"other"]))
        card = json.dumps(draw(CARD_VALUES)).encode()
        text = draw(st.sampled_from([base64.b64encode(card), card, draw(st.binary(max_size=40))]))
        kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt"]))
        if kind == b"tEXt":
            chunks.append(_chunk(kind, keyword + b"\0" + text))
        elif kind == b"zTXt":
            chunks.append(_chunk(kind, keyword + b"\0\0" + draw(st.sampled_from(
                [zlib.compress(text), text]))))
        else:
            flag = draw(st.sampled_from([b"\0", b"\1"]))
            body = zlib.compress(text) if flag == b"\1" and draw(st.booleans()) else text
            chunks.append(_chunk(kind, keyword + b"\0" + flag + b"\0en\0\0" + body))
    end = _chunk(b"IEND", b"") if draw(st.booleans()) else b""
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + end


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(card=png_cards() | CARD_VALUES.map(lambda v: json.dumps(v).encode()))
def test_no_uploaded_card_makes_a_500(server, card):
    status, reply = post_raw(server, "/api/pyg-edge/character", card,
                             {"Content-Type": "application/octet-stream"})
    assert status < 500, (card[:200], reply)
    if status == 400:
        assert_clear_400(status, reply)


LIST_FIELDS = ["stop", "stop_sequence", "stopping_strings", "banned_strings", "banned_tokens",
               "custom_token_bans", "logit_bias", "tokens", "messages", "history"]
LIST_ITEMS = (st.text(max_size=12) | st.integers(-(2**40), 2**40) | st.booleans() | st.none()
              | st.lists(st.integers(-5, 60000) | st.text(max_size=4) | st.booleans(),
                         max_size=3)
              | st.dictionaries(st.sampled_from(["role", "content", "text", "is_user"]),
                                st.text(max_size=8) | st.booleans(), max_size=3))
LIST_BODIES = st.dictionaries(st.sampled_from(LIST_FIELDS),
                              st.lists(LIST_ITEMS, max_size=40), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(ROUTES), body=LIST_BODIES)
def test_no_list_valued_field_makes_a_500(server, path, body):
    body = {"prompt": "Hi", "character": {"name": "A"}, "message": "Hi", **SMALL, **body}
    status, reply = post_raw(server, path, json.dumps(body).encode())
    assert status < 500, (path, body, reply)
    if status == 400:
        assert_clear_400(status, reply)
