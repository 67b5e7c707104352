"""What one request may ask of the server, read without a model (issue 37, findings 1 and
6): stops and bans are counted and measured, token ids and logit_bias are read as OpenAI
reads them, and each bad one is a BadRequest (a 400), never a crash (a 500)."""

import pytest

from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server.parsing import BadRequest, Limits, parse_completion, parse_generate

LIMITS = Limits(context_length=512, max_new_tokens=100, vocab_size=50257, max_stops=4,
                max_bans=8, max_phrase_chars=20)


def openai(**body):
    return parse_completion({"prompt": "Hi", **body}, SamplingOptions(), LIMITS, 16)


def kobold(**body):
    return parse_generate({"prompt": "Hi", **body}, SamplingOptions(), LIMITS)


@pytest.mark.parametrize("parse, body, message", [
    (openai, {"stop": ["a", "b", "c", "d", "e"]}, "5 stop strings sent: at most 4"),
    (kobold, {"stop_sequence": ["x"] * 3, "stopping_strings": ["y"] * 2}, "at most 4"),
    (openai, {"stop": "x" * 21}, "21 characters long: at most 20"),
    (kobold, {"banned_strings": [f"b{i}" for i in range(9)]}, "9 banned strings and token"),
    (kobold, {"custom_token_bans": ",".join(map(str, range(9)))}, "at most 8"),
    (openai, {"logit_bias": {str(i): -100 for i in range(9)}}, "at most 8"),
    (kobold, {"banned_tokens": ["y" * 21]}, "21 characters long"),
])
def test_too_many_or_too_long_stops_and_bans_are_refused(parse, body, message):
    with pytest.raises(BadRequest, match=message):
        parse(**body)


def test_stops_and_bans_within_the_limits_pass():
    got = kobold(stop_sequence=["\nA:"] * 4, banned_strings=["x" * 20],
                 custom_token_bans="1,2,3").options
    assert "\nA:" in got.stop and got.banned[-1] == "x" * 20 and got.banned_ids[-3:] == (1, 2, 3)


@pytest.mark.parametrize("value", ["--5", "-", "5-", "1e3", "\u00b2", "9" * 5000, "0x10"])
def test_a_token_id_that_is_not_digits_is_no_crash(value):
    notes = kobold(custom_token_bans=f"1,{value}").notes
    assert any("not token ids" in note for note in notes)
    with pytest.raises(BadRequest, match="not a token id"):
        openai(logit_bias={value: -100})


@pytest.mark.parametrize("bias, message", [
    ({"hello": -100}, "not a token id"), ({"50": -101}, "from -100 to 100"),
    ({"50": 100.5}, "from -100 to 100"), ({"50": "x"}, "from -100 to 100"),
    ({"50": True}, "from -100 to 100"), ("50", "must map token ids"), (5, "must map"),
    ([[1, 2, 3]], "must map"), ([[None, False]], "neither a token id nor text"),
])
def test_logit_bias_is_refused_as_openai_refuses_it(bias, message):
    with pytest.raises(BadRequest, match=message):
        openai(logit_bias=bias)


def test_logit_bias_bans_ids_and_llamacpp_text_pieces():
    got = openai(logit_bias=[[15, False], ["Hello", False], [16, -100], [17, 5]])
    assert got.options.banned_ids[-2:] == (15, 16) and got.options.banned[-1] == "Hello"
    assert any("other than a ban" in note for note in got.notes)
    assert openai(logit_bias={"15": -100, "16": 0}).options.banned_ids[-1] == 15


def test_banning_every_token_is_refused():
    limits = Limits(512, 100, vocab_size=5, max_bans=10)
    with pytest.raises(BadRequest, match="every token"):
        parse_generate({"prompt": "Hi", "custom_token_bans": "0,1,2,3,4"}, SamplingOptions(),
                       limits)
