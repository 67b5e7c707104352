"""The model-free lane: nothing here loads a model or imports CTranslate2."""

import pytest

from support.paths import GPT2_TOKENIZER


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """GPT-2's tokenizer (Pygmalion's and the demo's), as a model folder's TextTokenizer."""
    import json

    from pyg_edge.generation.tokenizer import TextTokenizer

    vocabulary = json.loads((GPT2_TOKENIZER / "vocab.json").read_text(encoding="utf-8"))
    ordered = sorted(vocabulary, key=vocabulary.get)
    return TextTokenizer(str(GPT2_TOKENIZER / "tokenizer.json"), ordered)
