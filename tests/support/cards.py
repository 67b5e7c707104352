"""Character cards as clients upload them: a TavernAI V1 card, and PNG cards built in memory."""

import base64
import json
import struct
import zlib

EXAMPLES = (
    "<START>\r\n{{user}}: Hi <BOT>!  \r\n{{char}}: *waves* Hello, {{User}}.\r\n"
    "<START>\n<USER>: Bye\n<BOT>: Bye!"
)
TAVERN_V1 = {
    "name": "Aqua", "description": "A goddess of water.  ", "personality": "Cheerful, carefree.",
    "scenario": " Aqua stands in the square of Axel.",
    "first_mes": "*waves at {{user}}* Are you new here?",
    "mes_example": EXAMPLES, "create_date": "2023-1-1",
}


def png_with_text(chunks: dict) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    for keyword, value in chunks.items():
        body += chunk(b"tEXt", keyword.encode() + b"\0" + value)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def b64(card: dict) -> bytes:
    return base64.b64encode(json.dumps(card).encode())


def png_picture(chunks: dict, size: int = 64) -> bytes:
    """A real RGB picture (a colour gradient, size x size) carrying text chunks, as a card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes(v for x in range(size)
                                   for v in (x * 255 // size, y * 255 // size, 160))
                    for y in range(size))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
    for keyword, value in chunks.items():
        body += chunk(b"tEXt", keyword.encode() + b"\0" + value)
    body += chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")
