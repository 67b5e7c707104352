"""Hostile character cards: a compressed text chunk that inflates to gigabytes, and cards
nested too deep, are a CharacterError, quickly and without the memory (issue 37, 2 and 6)."""

import base64
import json
import struct
import time
import zlib

import pytest

from pyg_edge.chat.characters import MAX_CARD_TEXT_BYTES, character_from_bytes
from pyg_edge.errors import CharacterError


def png(kind: bytes, data: bytes) -> bytes:
    def chunk(name: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + name + payload
                + struct.pack(">I", zlib.crc32(name + payload)))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(kind, data)
            + chunk(b"IEND", b""))


def bomb(size: int) -> bytes:
    inflater = zlib.compressobj(9)
    block = b"A" * (1 << 20)
    out = b"".join(inflater.compress(block) for _ in range(size >> 20))
    return out + inflater.flush()


@pytest.mark.parametrize("kind, prefix", [(b"zTXt", b"chara\0\0"),
                                          (b"iTXt", b"chara\0\1\0\0\0")])
def test_a_text_chunk_that_inflates_past_the_limit_is_refused_quickly(kind, prefix):
    card = png(kind, prefix + bomb(512 << 20))  # 512 MB inflated, about 0.5 MB sent
    started = time.monotonic()
    with pytest.raises(CharacterError, match="over 1048576 bytes"):
        character_from_bytes(card, "bomb.png")
    assert time.monotonic() - started < 1.0


def test_a_compressed_card_under_the_limit_is_read():
    text = base64.b64encode(json.dumps({"name": "Aqua", "description": "x" * 1000}).encode())
    assert len(text) < MAX_CARD_TEXT_BYTES
    card = png(b"zTXt", b"chara\0\0" + zlib.compress(text))
    assert character_from_bytes(card, "aqua.png").name == "Aqua"


@pytest.mark.parametrize("make", [
    lambda deep: deep.encode(),  # a JSON card
    lambda deep: png(b"tEXt", b"chara\0" + base64.b64encode(deep.encode())),
    lambda deep: png(b"zTXt", b"chara\0\0" + zlib.compress(base64.b64encode(deep.encode()))),
])
def test_a_card_nested_too_deep_is_a_character_error(make):
    deep = '{"name": "A", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(CharacterError, match="nested too deep"):
        character_from_bytes(make(deep), "deep.png")
