"""The tokenizer that travels with a converted model: tokenizer.json, built if need be.

EleutherAI's gpt-neo checkpoints ship only GPT-2's vocab.json and merges.txt; those are
turned into the byte-level BPE tokenizer.json that Hugging Face's GPT-2 tokenizer is.
tokenizers is imported when a tokenizer is read, not with the converter: `import
pyg_edge_convert` needs numpy alone.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from pyg_edge_convert.errors import ConversionError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def load_tokenizer(src: str, special_ids: tuple) -> Tokenizer:
    """Loads src/tokenizer.json, or builds it from src/vocab.json and src/merges.txt.

    Args:
      src: The checkpoint folder.
      special_ids: Token ids (bos, eos) that must be special, so text never splits them.

    Raises:
      ConversionError: no tokenizer files, or unreadable ones.
    """
    from tokenizers import Tokenizer

    tokenizer_json = os.path.join(src, "tokenizer.json")
    vocab, merges = os.path.join(src, "vocab.json"), os.path.join(src, "merges.txt")
    try:
        if os.path.isfile(tokenizer_json):
            return Tokenizer.from_file(tokenizer_json)
        if os.path.isfile(vocab) and os.path.isfile(merges):
            return _byte_level_bpe(vocab, merges, special_ids)
    except Exception as error:  # tokenizers raises plain Exceptions on bad files
        raise ConversionError(f"cannot read the tokenizer in {src}: {error}") from None
    raise ConversionError(
        f"{src} has no tokenizer: expected tokenizer.json, or vocab.json and merges.txt"
    )


def _byte_level_bpe(vocab_path: str, merges_path: str, special_ids: tuple) -> Tokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    tokenizer = Tokenizer(models.BPE.from_file(vocab_path, merges_path))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    by_id = {token_id: token for token, token_id in vocab.items()}
    specials = [by_id[i] for i in dict.fromkeys(special_ids) if i in by_id]
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in specials])
    return tokenizer


def vocabulary(tokenizer: Tokenizer, vocab_size: int) -> list:
    """The token strings in id order, padded to the model's vocab_size.

    Raises:
      ConversionError: the tokenizer has more tokens than the model, or gaps in its ids.
    """
    by_id = {i: token for token, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    if len(by_id) > vocab_size:
        raise ConversionError(
            f"the tokenizer has {len(by_id)} tokens but the model's vocab_size is {vocab_size}"
        )
    missing = [i for i in range(len(by_id)) if i not in by_id]
    if missing:
        raise ConversionError(f"the tokenizer's ids have gaps, the first at {missing[0]}")
    # Rows past the tokenizer's end exist in padded embeddings; they are never produced
    # by encoding and get placeholder names.
    return [by_id[i] for i in range(len(by_id))] + [
        f"<|unused_{i}|>" for i in range(len(by_id), vocab_size)
    ]
