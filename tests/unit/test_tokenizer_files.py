"""The tokenizer.json built from vocab.json + merges.txt must encode exactly as GPT-2's."""

import shutil

import pytest
from tokenizers import Tokenizer

from pyg_edge_convert import ConversionError
from pyg_edge_convert.tokenizer_files import load_tokenizer, vocabulary
from support.paths import GPT2_TOKENIZER

TEXTS = [
    "Hello world",
    "<START>",
    "Aqua's Persona: A goddess of water.\n<START>\nYou: hi there!\nAqua: *smiles*  Hello~",
    "  leading spaces, trailing spaces   \n\n\ttabs\r\nCRLF",
    "Unicode: café, naïve, 日本語のテキスト, emoji 🙂👍🏽, math ∑∫, zero-width\u200bjoin",
    "numbers 1234567 3.14159 and contractions: don't, I'll, we've, they're",
    "<|endoftext|>You: after the end",
    "    def f(x):\n        return x ** 2  # code",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_TOKENIZER / name, folder / name)
    return load_tokenizer(str(folder), (50256, 50256))


@pytest.fixture(scope="module")
def hugging_face():
    return Tokenizer.from_file(str(GPT2_TOKENIZER / "tokenizer.json"))


@pytest.mark.parametrize("text", TEXTS)
def test_built_tokenizer_encodes_and_decodes_as_gpt2(built, hugging_face, text):
    ids = built.encode(text).ids
    assert ids == hugging_face.encode(text).ids
    assert built.decode(ids, skip_special_tokens=False) == text


def test_known_ids(built):
    assert built.encode("Hello world").ids == [15496, 995]
    assert built.encode("<START>").ids == [27, 2257, 7227, 29]
    assert built.encode("<|endoftext|>").ids == [50256]


def test_vocabulary_is_in_id_order_and_padded_to_the_model(built):
    tokens = vocabulary(built, 50260)
    assert tokens[15496] == "Hello" and tokens[50256] == "<|endoftext|>"
    assert tokens[50257:] == ["<|unused_50257|>", "<|unused_50258|>", "<|unused_50259|>"]
    with pytest.raises(ConversionError, match="50257 tokens but the model's vocab_size is 50000"):
        vocabulary(built, 50000)
