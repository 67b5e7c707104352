"""The server under load and faults: concurrent streams, a disconnect storm, a client that
never reads, malformed bodies; short-request latency and the server's RSS through it all.

    python benchmarks/bench_server_faults.py [--python PYTHON ...] [--rounds 2]
        [--scale 1.0] [--nofile 256] [--only-attacks]

Each --python (default: this one) starts `python -m pyg_edge.cli serve` on the tiny test
checkpoint converted to int8 (loopback only), so another checkout's environment (an older
pyg-edge) is measured the same way; servers are interleaved across rounds. Phases, each
followed by 20 short requests timed (p50 / p95 / max, seconds): idle; 20 concurrent streams;
60 clients that leave after their first event; one client with a 2 KB receive buffer that
asks for 12 streams with token probabilities and reads nothing (issue 29's finding 1);
200 malformed bodies (the 5xx answers counted). Short requests: /api/v1/generate with
max_length 8. Requests that do not finish within 60 s beside the client that never reads
are shown as 60.

Then issue 37's attacks (benchmarks/server_attacks.py), each with 10 pings (GET
/api/extra/version: the event loop) timed beside it, what it got, and the RSS after it:
stops x bans in a 234 KB body, a PNG card bomb, nested cards and odd token ids (5xx
counted), 250 unfinished bodies (descriptors held, still reachable?), a 1.9 MB text to
tokenize, three clients that never read /tokenize pieces, a full queue (503s). --scale
shrinks them (0.01 to prove the script runs); --nofile is the servers' open-file limit
(the probe's 256).
"""

import argparse
import http.client
import json
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from server_attacks import ATTACKS, during, unfinished_bodies

from bench_common import WORK, describe_machine, free_port, post, wait_until_up
from pyg_edge_convert import convert_checkpoint

ROOT = Path(__file__).parent.parent
MODEL = WORK / "tiny-int8"
PROMPT = "Aqua's Persona: A goddess of water.\n<START>\nYou: Hello!\nAqua:"
SHORT = {"prompt": PROMPT, "max_length": 8, "temperature": 0.7}
LONG = {"prompt": PROMPT, "max_length": 120, "temperature": 0.7}
BAD_BODIES = [b'{"prompt": "\\ud800"}', b"[" * 50_000, b'{"prompt": "x", "max_length": '
              + b"9" * 5000 + b"}", b'{"prompt": 5}', b"not json",
              b'{"prompt": "x", "logit_bias": {"\xc2\xb2": -100}}',
              b'{"prompt": "x", "custom_token_bans": "1,\xc2\xb2"}']


def timed_shorts(port, count=20) -> list:
    seconds = []
    for _ in range(count):
        started = time.monotonic()
        connection, response = post(port, "/api/v1/generate", SHORT)
        response.read()
        connection.close()
        seconds.append(time.monotonic() - started)
    return seconds


STALL_CAP_S = 60.0  # past this, the short requests count as blocked by the stalled client


def capped_shorts(port, count, cap) -> list:
    """timed_shorts, or [cap] when they have not finished within cap seconds."""
    done = []
    worker = threading.Thread(target=lambda: done.extend(timed_shorts(port, count)),
                              daemon=True)
    worker.start()
    worker.join(cap)
    return done if not worker.is_alive() else [cap]


def stream(port, body, leave_after_first=False) -> None:
    connection, response = post(port, "/api/extra/generate/stream", body)
    for line in response:
        if leave_after_first and line.startswith(b"data: "):
            break
    connection.close()


def in_threads(count, target, *args) -> list:
    threads = [threading.Thread(target=target, args=args, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def never_reads(port) -> socket.socket:
    """A client that sends 12 streaming requests with token probabilities, reads nothing."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    client.connect(("127.0.0.1", port))
    body = json.dumps({"prompt": PROMPT, "max_tokens": 200, "stream": True, "logprobs": 20,
                       "min_tokens": 200}).encode()
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)
    client.sendall(request * 12)
    return client


def malformed(port) -> int:
    """How many of the bad bodies got a 5xx."""
    errors = 0
    for raw in BAD_BODIES * (200 // len(BAD_BODIES)):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/api/v1/generate", raw,
                           {"Content-Type": "application/json"})
        errors += connection.getresponse().status >= 500
        connection.close()
    return errors


def rss_mb(pid) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def one_round(python: str, args) -> dict:
    port = free_port()

    def limit_files():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(args.nofile, hard), hard))

    # Started in the models' folder: `python -m` puts the current folder first on the path,
    # and this checkout's pyg_edge must not shadow the one `python` has installed.
    server = subprocess.Popen([python, "-m", "pyg_edge.cli", "serve", str(MODEL), "--port",
                               str(port)], cwd=WORK, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, preexec_fn=limit_files)
    result = {}
    try:
        wait_until_up(port, server)
        result["idle"] = timed_shorts(port)
        result["rss start"] = rss_mb(server.pid)
        if not args.only_attacks:
            basic_phases(port, result)
        for name, attack in ATTACKS.items():
            extra = (server.pid,) if attack is unfinished_bodies else ()
            outcome = during(port, attack, args.scale, *extra)
            result[f"{name}: pings"] = outcome["pings"]
            result[f"{name}: got"] = outcome["report"]
            result[f"{name}: rss after"] = rss_mb(server.pid)
        result["after attacks"] = timed_shorts(port)
        result["rss end"] = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return result


def basic_phases(port, result: dict) -> None:
    """The first round of faults (issue 29): streams, disconnects, a reader that stalls."""
    threads = in_threads(20, stream, port, LONG)
    result["20 streams"] = timed_shorts(port)
    [t.join(120) for t in threads]
    threads = in_threads(60, stream, port, LONG, True)
    [t.join(120) for t in threads]
    result["after 60 disconnects"] = timed_shorts(port)
    stalled = never_reads(port)
    time.sleep(1.0)
    result["beside a client that never reads"] = capped_shorts(port, 8, STALL_CAP_S)
    stalled.close()
    result["5xx of 200 malformed"] = malformed(port)
    result["after malformed"] = timed_shorts(port)


def line(seconds: list) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.3f} / {p95:.3f} / {ordered[-1]:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="a Python with pyg-edge installed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of issue 37's attacks (1: as the probe sent them)")
    parser.add_argument("--nofile", type=int, default=256,
                        help="the servers' open-file limit (soft)")
    parser.add_argument("--only-attacks", action="store_true",
                        help="skip the streams, disconnects, stalled reader, malformed bodies")
    args = parser.parse_args()
    pythons = args.python or [sys.executable]
    convert_checkpoint(str(ROOT / "tests/fixtures/checkpoints/neo_w16_safetensors_f32"),
                       str(MODEL), "int8", force=True)
    print("# python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    print(f"# {describe_machine()}")
    print(f"# {MODEL.name}, short requests max_length 8, streams max_length 120, "
          f"{args.rounds} interleaved rounds per server; p50 / p95 / max seconds\n")
    results = {p: [] for p in pythons}
    for _ in range(args.rounds):
        for python in pythons:
            results[python].append(one_round(python, args))
    phases = [k for k in results[pythons[0]][0] if isinstance(results[pythons[0]][0][k], list)]
    for python in pythons:
        print(f"## {python}\n")
        print("| phase | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " |")
        print("| --- |" + " --- |" * args.rounds)
        for phase in phases:
            print(f"| {phase} | " + " | ".join(line(r[phase]) for r in results[python]) + " |")
        first = results[python][0]
        for key in [k for k in first if not isinstance(first[k], list)]:
            values = [r[key] for r in results[python]]
            print(f"| {key} | " + " | ".join(v if isinstance(v, str) else f"{v:.0f}"
                                              for v in values) + " |")
        print()


if __name__ == "__main__":
    main()
