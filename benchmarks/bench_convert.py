"""Conversion time and peak memory on synthetic gpt-neo-2.7B checkpoints.

    python benchmarks/bench_convert.py [--runs 3] [--quantization int8]

Makes the fp16 checkpoints under benchmarks/work/ if missing (the .bin one only when torch
is installed), then runs `pyg-edge convert --prefill-chunk 0` on each in a child process
and reports the median wall time and peak RSS of that process. The baseline, measured in
the same run, is one plain sequential read of the same checkpoint file: conversion cannot
be faster.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from make_synthetic_checkpoint import write_checkpoint

from bench_common import describe_machine

WORK = Path(__file__).parent / "work"
SOURCES = {
    "safetensors": ("neo27-st", "model.safetensors"),
    "bin": ("neo27-bin", "pytorch_model.bin"),
}


def timed_child(command: list) -> tuple:
    """Runs a command; returns (wall seconds, peak RSS bytes) of that child alone."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {status}")
    return time.monotonic() - started, usage.ru_maxrss * 1024


def read_seconds(path: Path) -> float:
    started = time.monotonic()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    return time.monotonic() - started


def available_formats() -> list:
    formats = ["safetensors"]
    try:
        import torch  # noqa: F401  (only to know whether a .bin can be written)

        formats.append("bin")
    except ImportError:
        pass
    return formats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quantization", default="int8")
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    print(f"settings: gpt-neo-2.7B shape, random fp16 weights, --quantization {args.quantization}, "
          f"{args.runs} runs, medians [min-max]\n")
    print("| checkpoint | read input s | convert s | convert / read | peak RSS GB | output GB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for fmt in available_formats():
        folder, filename = SOURCES[fmt]
        src, dest = WORK / folder, WORK / f"{folder}-{args.quantization}"
        if not (src / filename).exists():
            write_checkpoint(src, fmt)
        read = read_seconds(src / filename)
        # neo27-st-int8 is also the one-pass model the other benchmarks run
        # (bench_chat_turn.PREFILL_CHUNKS): keep it one-pass; the chunk is one scalar and
        # does not change the conversion's cost.
        command = [sys.executable, "-m", "pyg_edge.cli", "convert", str(src), str(dest),
                   "--quantization", args.quantization, "--force", "--prefill-chunk", "0"]
        runs = [timed_child(command) for _ in range(args.runs)]
        seconds, rss = [r[0] for r in runs], [r[1] / 1e9 for r in runs]
        median = statistics.median(seconds)
        output = sum(f.stat().st_size for f in dest.iterdir()) / 1e9
        print(f"| {fmt} fp16 | {read:.1f} | {median:.1f} "
              f"[{min(seconds):.1f}-{max(seconds):.1f}] | {median / read:.1f}x | "
              f"{statistics.median(rss):.2f} [{min(rss):.2f}-{max(rss):.2f}] | {output:.2f} |")


if __name__ == "__main__":
    main()
