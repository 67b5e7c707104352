"""KoboldAI endpoint throughput and time to first token, 1 client against 4 concurrent ones.

    python benchmarks/bench_server.py [--model DIR] [--requests 24] [--max-length 32]

Starts `pyg-edge serve` on a free loopback port (the tiny test checkpoint converted to int8
unless --model is given), then runs the same requests from 1 client (the baseline) and
from 4 concurrent clients. Requests/s uses /api/v1/generate; time to first token uses
KoboldCpp's streaming endpoint, from sending the request to the first token event.
"""

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_common import describe_machine, free_port, post, wait_until_up
from pyg_edge_convert import convert_checkpoint

ROOT = Path(__file__).parent.parent
BODY = {"prompt": "Aqua's Persona: A goddess of water.\n<START>\nYou: Hello!\nAqua:",
        "temperature": 0.7, "rep_pen": 1.05}


def first_token_seconds(port, max_length):
    """Seconds to the first token event, or None when the reply was empty (an end token)."""
    started = time.monotonic()
    body = {**BODY, "max_length": max_length}
    connection, response = post(port, "/api/extra/generate/stream", body)
    first = None
    for line in response:
        if line.startswith(b"data: "):
            first = time.monotonic() - started
            break
    response.read()
    connection.close()
    return first


def generate(port, max_length) -> None:
    connection, response = post(port, "/api/v1/generate", {**BODY, "max_length": max_length})
    assert response.status == 200, response.read()
    response.read()
    connection.close()


def run_clients(clients, requests, job) -> tuple:
    """Runs `requests` jobs spread over `clients` threads; returns (seconds, job results)."""
    results, lock = [], threading.Lock()

    def client(count):
        for _ in range(count):
            value = job()
            with lock:
                results.append(value)

    threads = [threading.Thread(target=client, args=(requests // clients,))
               for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--max-length", type=int, default=32)
    args = parser.parse_args()
    model = args.model or Path(__file__).parent / "work" / "tiny-int8"
    if args.model is None:
        convert_checkpoint(str(ROOT / "tests/fixtures/checkpoints/neo_w16_safetensors_f32"),
                           str(model), "int8", force=True)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pyg_edge.cli", "serve", str(model),
                                "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_until_up(port, process)
        print(f"machine: {describe_machine()}")
        print(f"settings: {model.name}, {args.requests} requests of max_length "
              f"{args.max_length}, loopback HTTP\n")
        print("| clients | requests/s | first token s (median [min-max]) |")
        print("| --- | --- | --- |")
        rates = {}
        for clients in (1, 4):
            seconds, _ = run_clients(clients, args.requests,
                                     lambda: generate(port, args.max_length))
            _, results = run_clients(clients, args.requests,
                                     lambda: first_token_seconds(port, args.max_length))
            firsts = [r for r in results if r is not None]
            rates[clients] = args.requests / seconds
            print(f"| {clients} | {rates[clients]:.1f} | {statistics.median(firsts):.3f} "
                  f"[{min(firsts):.3f}-{max(firsts):.3f}] ({len(results) - len(firsts)} empty) |")
        print(f"\n4 clients / 1 client throughput: {rates[4] / rates[1]:.2f}x "
              "(one generation at a time: concurrency queues, it does not add speed)")
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
