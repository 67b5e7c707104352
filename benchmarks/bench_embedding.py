"""An app's process against the pyg-edge command, how fast Stop stops (issue 28), and what
the host-heap default costs an app's prompt pass (issue 36).

    python benchmarks/bench_embedding.py [--runs 2] [--new-tokens 64]
    python benchmarks/bench_embedding.py --heap-only [--runs 3] [--passes 3]

Decode: the 2.7B shape (the synthetic int8 checkpoint with the default prefill chunk), a
500- and a 1,556-token prompt, greedy, new_tokens tokens, in fresh processes started
(a) as a plain `python` process that calls pyg_edge.cpu.prepare(), as an app would, and
(b) as the `pyg-edge` command starts itself (glibc's copy threshold set at exec,
pyg_edge.launcher); interleaved, median [min-max]. Target: (a) >= 0.97x (b).

Stop: in one process started as the command, a reply to a 512 / 1,536 / 2,047-token prompt
is cancelled 2 s into its prompt pass (CTranslate2 cannot interrupt it); the latency is
from cancel() to the reader's loop ending. Target: <= 1 s. "engine busy" is how long the
pass went on in the background before the next call could start.

Heap: a 1,556-token prompt pass (one new token) in a plain `python` process (an app's),
with each way of keeping CTranslate2's freed memory: pyg_edge.cpu.prepare(keep_heap=True)
(glibc's heap kept for the whole process: the default before issue 36), the default
(CTranslate2's own block cache, pyg_edge.cpu.block_cache; the host's malloc untouched), and
neither (glibc as the host has it). A fresh process each, interleaved; after a warm-up
reply, `passes` passes: the first, and the median of the others; kernel (system) CPU
seconds per pass, where page zeroing shows; peak RSS; and what stays resident of 400 MB the
host allocates, touches and frees after the passes. --model demo --heap-tokens 200 runs it
in seconds on the bundled demo model (a check that it works, not a figure).
"""

import argparse
import json
import resource
import statistics
import threading
import time

from bench_common import (
    WORK,
    describe_machine,
    ensure_model,
    prompt_ids,
    prompt_text,
    run_child,
    spread,
)

MODEL = WORK / "neo27-st-int8-chunk1024"
DECODE_AT = (500, 1556)
STOP_AT = (512, 1536, 2047)
STOP_AFTER_S = 2.0
MODES = {"app process (plain python + prepare())": "app",
         "pyg-edge command (copy threshold at exec)": "command"}


def decode_child(new_tokens: int) -> None:
    import pyg_edge
    from pyg_edge import PygModel, SamplingOptions

    pyg_edge.cpu.prepare()
    options = SamplingOptions(top_k=1, repetition_penalty=1.0, banned=(),
                              max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    result = {}
    with PygModel(MODEL, device="cpu") as model:
        for count in DECODE_AT:
            stream = model.stream(model.tokenizer.decode(prompt_ids(count)), options)
            for _ in stream:
                pass
            stats = stream.stats
            result[count] = (stats.new_tokens - 1) / (stats.seconds - stats.first_token_seconds)
    print(json.dumps(result))


def stop_child() -> None:
    from pyg_edge import PygModel, SamplingOptions

    options = SamplingOptions(top_k=1, banned=(), max_new_tokens=1)
    result = {}
    with PygModel(MODEL, device="cpu") as model:
        model.generate("Hello there", options)  # warm: the first pass faults pages in
        for count in STOP_AT:
            stream = model.stream(model.tokenizer.decode(prompt_ids(count)), options)
            reader = threading.Thread(target=lambda s=stream: [None for _ in s])
            reader.start()
            while stream.state != "running":
                time.sleep(0.01)
            time.sleep(STOP_AFTER_S)
            pressed = time.monotonic()
            stream.cancel()
            reader.join()
            latency = time.monotonic() - pressed
            model.generate("Next", options)  # waits for the pass in the background
            busy = time.monotonic() - pressed
            result[count] = {"latency": latency, "busy": busy,
                             "reason": stream.stats.finish_reason}
    print(json.dumps(result))


HEAP_MODES = {"keep_heap=True (glibc's heap, process-wide; the old default)": "keep_heap",
              "default (CTranslate2's block cache; the host's malloc untouched)": "default",
              "neither (glibc as the host has it)": "neither"}
HOST_BLOCK_MB = 400


def heap_child(mode: str, model_path: str, tokens: int, passes: int) -> None:
    import pyg_edge
    from pyg_edge import PygModel, SamplingOptions
    from pyg_edge.cpu import block_cache

    if mode == "neither":  # the default without its cache: what the cache buys
        block_cache.install_block_cache = lambda environ, cap=0: "off (benchmark)"
    prepared = pyg_edge.cpu.prepare(keep_heap=mode == "keep_heap")
    path = pyg_edge.demo_model() if model_path == "demo" else model_path
    options = SamplingOptions(top_k=1, banned=(), max_new_tokens=1)
    seconds, kernel, faults = [], [], []
    with PygModel(path, device="cpu") as model:
        model.generate("Hello there", options)  # warm: the load's own pages are in
        prompt = prompt_text(model, tokens)
        for _ in range(passes):
            before = resource.getrusage(resource.RUSAGE_SELF)
            stream = model.stream(prompt, options)
            for _ in stream:
                pass
            after = resource.getrusage(resource.RUSAGE_SELF)
            seconds.append(stream.stats.first_token_seconds)
            kernel.append(after.ru_stime - before.ru_stime)
            faults.append(after.ru_minflt - before.ru_minflt)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "kernel": kernel, "faults": faults, "peak_gb": peak_gb,
                      "host_kept_mb": host_block_kept_mb(), "blocks": prepared.blocks,
                      "keep_heap": prepared.keep_heap}))


def host_block_kept_mb() -> float:
    """MB of a freed HOST_BLOCK_MB block that stay resident: the host's own memory."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    before = rss_mb()
    block = libc.malloc(HOST_BLOCK_MB << 20)
    libc.memset(block, 1, HOST_BLOCK_MB << 20)
    libc.free(block)
    return rss_mb() - before


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def heap_section(args) -> None:
    """The prompt pass by heap setting: fresh app processes, interleaved."""
    model = args.model if args.model == "demo" else ensure_model(WORK / args.model)
    print(f"# {args.model}, a {args.heap_tokens:,}-token prompt pass, {args.passes} passes "
          f"per process, {args.runs} interleaved runs, each in a fresh app process\n")
    runs = {mode: [] for mode in HEAP_MODES.values()}
    child = ["--child", "heap", "--model", model, "--heap-tokens", args.heap_tokens,
             "--passes", args.passes]
    for _ in range(args.runs):
        for mode in HEAP_MODES.values():
            runs[mode].append(run_child(__file__, [*child, "--mode", mode], as_command=False,
                                        timeout=3600))
    print("| in an app's process | first pass, s | later passes, s | kernel s per pass | "
          "page faults per later pass | peak RSS, GB | "
          f"of the host's freed {HOST_BLOCK_MB} MB, resident MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, mode in HEAP_MODES.items():
        rows = runs[mode]
        later = [statistics.median(r["seconds"][1:] or r["seconds"]) for r in rows]
        print(f"| {label} | {spread([r['seconds'][0] for r in rows], 2)} | "
              f"{spread(later, 2)} | {spread([statistics.median(r['kernel']) for r in rows], 2)}"
              f" | {spread([statistics.median(r['faults'][1:] or r['faults']) for r in rows], 0)}"
              f" | {spread([r['peak_gb'] for r in rows], 2)} | "
              f"{spread([r['host_kept_mb'] for r in rows], 0)} |")
    base = statistics.median(statistics.median(r["seconds"][1:] or r["seconds"])
                             for r in runs["keep_heap"])
    for mode in ("default", "neither"):
        pass_s = statistics.median(statistics.median(r["seconds"][1:] or r["seconds"])
                                   for r in runs[mode])
        print(f"\n{mode} / keep_heap=True, later passes: {pass_s / base:.3f}x", end="")
    print(f"\n\nblock cache: {runs['default'][0]['blocks']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--heap-only", action="store_true",
                        help="only the prompt pass by heap setting")
    parser.add_argument("--model", default=MODEL.name,
                        help="heap: a folder under benchmarks/work, or demo")
    parser.add_argument("--heap-tokens", type=int, default=1556)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--mode", choices=tuple(HEAP_MODES.values()))
    parser.add_argument("--child", choices=("decode", "stop", "heap"))
    args = parser.parse_args()
    if args.child == "decode":
        return decode_child(args.new_tokens)
    if args.child == "stop":
        return stop_child()
    if args.child == "heap":
        return heap_child(args.mode, args.model, args.heap_tokens, args.passes)
    print(f"# {describe_machine()}")
    if args.heap_only:
        return heap_section(args)
    ensure_model(MODEL)
    print(f"# {MODEL.name}, greedy, {args.new_tokens} new tokens, {args.runs} interleaved "
          "runs, each in a fresh process\n")
    decode = {mode: {n: [] for n in DECODE_AT} for mode in MODES.values()}
    child = ["--child", "decode", "--new-tokens", args.new_tokens]
    for _ in range(args.runs):
        for mode in MODES.values():
            rates = run_child(__file__, child, as_command=mode == "command", timeout=1800)
            for count, rate in rates.items():
                decode[mode][int(count)].append(rate)
    print("| process | " + " | ".join(f"decode tok/s @{n}" for n in DECODE_AT) + " |")
    print("| --- |" + " --- |" * len(DECODE_AT))
    for label, mode in MODES.items():
        print(f"| {label} | " + " | ".join(spread(decode[mode][n], 2) for n in DECODE_AT)
              + " |")
    ratios = [statistics.median(decode["app"][n]) / statistics.median(decode["command"][n])
              for n in DECODE_AT]
    print("| app / command | " + " | ".join(f"{r:.3f}x" for r in ratios) + " |")
    print("\nTarget >= 0.97x: " + ("met" if min(ratios) >= 0.97 else "NOT met") + "\n")
    stops = [run_child(__file__, ["--child", "stop"], timeout=1800) for _ in range(args.runs)]
    print(f"| prompt tokens | Stop {STOP_AFTER_S:.0f} s into the pass: control back after s "
          "| engine busy after Stop, s | finish reason |")
    print("| --- | --- | --- | --- |")
    for count in STOP_AT:
        rows = [run[str(count)] for run in stops]
        print(f"| {count:,} | {spread([r['latency'] for r in rows], 3)} | "
              f"{spread([r['busy'] for r in rows], 1)} | {rows[0]['reason']} |")
    worst = max(run[str(n)]["latency"] for run in stops for n in STOP_AT)
    print(f"\nTarget <= 1 s: {'met' if worst <= 1.0 else 'NOT met'} (worst {worst:.3f} s)\n")
    heap_section(args)


if __name__ == "__main__":
    main()
