"""TextTokenizer.encode_at_most: a text's ids when it is at most `most` tokens, found without
tokenizing all of a text far longer than that (a /tokenize body of 2 MB)."""

import time

import pytest

TEXTS = ["word " * 20_000, "a  b   " * 9_000, "x" * 70_000, "Hello, world! " * 5_000, ""]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("most", [0, 1_000, 40_000, 100_000])
def test_the_ids_are_the_whole_texts_or_none_exactly_when_it_is_longer(gpt2_tokenizer, text,
                                                                       most):
    ids = gpt2_tokenizer.encode(text)
    got = gpt2_tokenizer.encode_at_most(text, most)
    assert got == (ids if len(ids) <= most else None)


def test_a_text_far_past_the_limit_is_dropped_after_its_first_pieces(gpt2_tokenizer,
                                                                     monkeypatch):
    read = []
    encode = gpt2_tokenizer.encode
    monkeypatch.setattr(gpt2_tokenizer, "encode", lambda text: read.append(len(text))
                        or encode(text))
    started = time.monotonic()
    assert gpt2_tokenizer.encode_at_most("word " * 380_000, 1_000) is None  # 1.9 MB
    assert sum(read) < 50_000 and time.monotonic() - started < 1
