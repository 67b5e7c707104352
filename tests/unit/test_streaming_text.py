"""Streamed text: stop strings split anyhow across pieces, and UTF-8 split across tokens."""

import itertools

import pytest

from pyg_edge.generation.stopping import StopFilter
from pyg_edge.generation.tokenizer import TextTokenizer

STOPS = ("\nYou:", "\nAqua:", "<START>")


def run_filter(pieces, stops=STOPS):
    stop_filter = StopFilter(stops)
    shown = []
    for piece in pieces:
        out = stop_filter.push(piece)
        shown.append(out)
        if stop_filter.stopped:
            return shown, True
    shown.append(stop_filter.finish())
    return shown, False


def splits(text, parts=3):
    """Every way to cut text into `parts` pieces (some possibly empty)."""
    for cuts in itertools.combinations_with_replacement(range(len(text) + 1), parts - 1):
        bounds = (0, *cuts, len(text))
        yield [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("text, reply, stopped", [
    ("  Hello there!\nYou: what?", "Hello there!", True),
    ("Hi!\nYou said\nAqua: no", "Hi!\nYou said", True),
    ("*smiles* <START>\nmore", "*smiles*", True),
    ("Plain reply \n\n", "Plain reply", False),
    ("Ends on a partial\nYo", "Ends on a partial\nYo", False),
])
def test_every_split_gives_the_same_reply_and_never_part_of_a_stop(text, reply, stopped):
    for pieces in splits(text):
        shown, did_stop = run_filter(pieces)
        assert "".join(shown) == reply and did_stop == stopped
        for piece in shown[:-1]:  # what was shown before the end is final text only
            assert not any(stop[:2] in piece and stop not in reply for stop in ("\nY", "<S"))


def test_nothing_that_may_begin_a_stop_is_shown_early():
    stop_filter = StopFilter(STOPS)
    assert stop_filter.push("Hello\n") == "Hello"
    assert stop_filter.push("Yo") == ""
    assert stop_filter.push("u know") == "\nYou know"


@pytest.fixture(scope="module")
def gpt2():
    import json

    from support.paths import GPT2_TOKENIZER

    vocab = json.loads((GPT2_TOKENIZER / "vocab.json").read_text(encoding="utf-8"))
    vocabulary = [None] * len(vocab)
    for token, i in vocab.items():
        vocabulary[i] = token
    return TextTokenizer(str(GPT2_TOKENIZER / "tokenizer.json"), vocabulary)


@pytest.mark.parametrize("text", ["Héllo 🙂👍🏽 日本語", "emoji only 🧑‍🚀🏳️‍🌈", "ascii"])
def test_streamed_ids_never_yield_a_broken_character(gpt2, text):
    ids = gpt2.encode(text)
    decoder = gpt2.stream_decoder()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    if any(ord(c) > 0xFFFF for c in text):
        assert "" in pieces  # some tokens held only part of a character


def test_invalid_bytes_become_one_replacement_each(gpt2):
    decoder = gpt2.stream_decoder()
    lone_continuation = gpt2.vocabulary.index("©")  # byte 0xA9: the second byte of é alone
    text = decoder.push(gpt2.encode("A")[0]) + decoder.push(lone_continuation) + decoder.flush()
    assert text == "A\ufffd"
