"""Byte-level BPE text <-> token ids, and decoding a stream of ids without breaking characters."""

import codecs
import functools
import json
import os

from tokenizers import Tokenizer


@functools.lru_cache(maxsize=1)
def _unicode_to_byte() -> dict:
    """GPT-2's byte-level alphabet: printable bytes map to themselves, the rest above 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[chr(byte)] = byte
        else:
            mapping[chr(256 + extra)] = byte
            extra += 1
    return mapping


def token_bytes(token: str) -> bytes:
    """The bytes a byte-level token stands for; added tokens (e.g. <|endoftext|>) as UTF-8."""
    table = _unicode_to_byte()
    if all(c in table for c in token):
        return bytes(table[c] for c in token)
    return token.encode("utf-8")


# encode_at_most reads a long text in pieces of about this many characters.
ENCODE_PIECE_CHARS = 16384


class TextTokenizer:
    """Encodes text to ids and back, and gives CTranslate2 the token strings it expects.

    Args:
      tokenizer_file: Path to tokenizer.json.
      vocabulary: The CTranslate2 vocabulary (token string per id).
    """

    def __init__(self, tokenizer_file: str, vocabulary: list):
        self._tokenizer = Tokenizer.from_file(tokenizer_file)
        self.vocabulary = vocabulary
        self._bytes = [token_bytes(t) for t in vocabulary]

    @classmethod
    def from_model_folder(cls, path: str) -> "TextTokenizer":
        """The tokenizer of a converted model folder (tokenizer.json, vocabulary.json)."""
        with open(os.path.join(path, "vocabulary.json"), encoding="utf-8") as f:
            vocabulary = json.load(f)
        return cls(os.path.join(path, "tokenizer.json"), vocabulary)

    def encode(self, text: str) -> list:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def encode_at_most(self, text: str, most: int) -> list | None:
        """text's ids, or None when it is more than most tokens: a long text is read a
        piece at a time (cut before a space) and dropped as soon as the pieces pass most,
        so a 2 MB text costs what `most` tokens cost, not what 2 MB cost (time, memory, and
        the GIL other threads wait for)."""
        counted, start, cuts = 0, 0, 0
        while len(text) - start > ENCODE_PIECE_CHARS:
            cut = text.rfind(" ", start + 1, start + ENCODE_PIECE_CHARS)
            end = cut if cut > start else start + ENCODE_PIECE_CHARS
            counted, start, cuts = counted + len(self.encode(text[start:end])), end, cuts + 1
            if counted > most + cuts:  # a cut splits at most one token in two
                return None
        ids = self.encode(text)
        return ids if len(ids) <= most else None

    def keep_last(self, text: str, max_tokens: int) -> str:
        """text cut from the left to its last max_tokens tokens (a cut character is dropped)."""
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        return self.decode(ids[len(ids) - max_tokens:]).lstrip("\ufffd")

    def decode(self, ids: list) -> str:
        return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def prefix_length(self, ids: list, prefix: str) -> int:
        """How many leading ids spell at most prefix (ids encode a text starting with it).

        Cutting the token list of the whole text (never tokenizing the parts apart) keeps
        the model input identical to an uncached run.
        """
        decoded, cut, limit = 0, 0, len(prefix.encode("utf-8"))
        for i, token_id in enumerate(ids):
            decoded += len(self._bytes[token_id])
            if decoded > limit:
                break
            cut = i + 1
        return cut

    def tokens(self, ids: list) -> list:
        return [self.vocabulary[i] for i in ids]

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self._bytes)


class StreamDecoder:
    """Turns ids into text as they arrive, holding back bytes of an unfinished character."""

    def __init__(self, token_bytes_by_id: list):
        self._bytes = token_bytes_by_id
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._bytes[token_id])

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
