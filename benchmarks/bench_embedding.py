"""An app's process against the pyg-edge command, and how fast Stop stops (issue 28).

    python benchmarks/bench_embedding.py [--runs 2] [--new-tokens 64]

Decode: the 2.7B shape (the synthetic int8 checkpoint with the default prefill chunk), a
500- and a 1,556-token prompt, greedy, new_tokens tokens, in fresh processes started
(a) as a plain `python` process that calls pyg_edge.cpu.prepare(), as an app would, and
(b) as the `pyg-edge` command starts itself (glibc's copy threshold set at exec,
pyg_edge.launcher); interleaved, median [min-max]. Target: (a) >= 0.97x (b).

Stop: in one process started as the command, a reply to a 512 / 1,536 / 2,047-token prompt
is cancelled 2 s into its prompt pass (CTranslate2 cannot interrupt it); the latency is
from cancel() to the reader's loop ending. Target: <= 1 s. "engine busy" is how long the
pass went on in the background before the next call could start.
"""

import argparse
import json
import statistics
import threading
import time

from bench_common import WORK, describe_machine, ensure_model, prompt_ids, run_child, spread

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--child", choices=("decode", "stop"))
    args = parser.parse_args()
    if args.child == "decode":
        return decode_child(args.new_tokens)
    if args.child == "stop":
        return stop_child()
    ensure_model(MODEL)
    print(f"# {describe_machine()}")
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
    print(f"\nTarget <= 1 s: {'met' if worst <= 1.0 else 'NOT met'} (worst {worst:.3f} s)")


if __name__ == "__main__":
    main()
