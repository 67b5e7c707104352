"""Replies per second and memory for n replies sampled from one prompt pass (n = 1, 2, 3).

    python benchmarks/bench_n_replies.py [--model benchmarks/work/neo27-st-int8 | demo]
        [--prompt-tokens 1500] [--new-tokens 64] [--counts 1,2,3] [--runs 3]

Each n runs in its own process, so its peak RSS (load included) is its own. A run is one
request as a regenerate without spares would make it: the whole prompt processed, then n
replies sampled side by side (PygModel.stream with n, PygmalionAI's sampling defaults).
Every reply decodes exactly --new-tokens tokens (min_new_tokens = max_new_tokens, no stop
strings), so the replies of one batch end together and runs compare. "demo" uses the
bundled demo model (pyg_edge.demo), whose context is 512: the prompt is then shortened to
fit. The default model is the synthetic 2.7B checkpoint (bench_chat_turn.py makes it);
random weights: the text is noise, the timings are real.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_common import describe_machine, ensure_model, prompt_text, spread

WORK = Path(__file__).parent / "work"


def model_folder(name: str) -> Path:
    if name == "demo":
        from pyg_edge import demo

        return demo.demo_model()
    return ensure_model(Path(name))


def child(args) -> None:
    """Measures one n in this process; prints one JSON line."""
    from pyg_edge.generation.model import PygModel
    from pyg_edge.generation.sampling import SamplingOptions

    started = time.monotonic()
    model = PygModel(model_folder(args.model), device="cpu", cpu_threads=args.threads)
    load = time.monotonic() - started
    tokens = min(args.prompt_tokens, model.context_length - args.new_tokens)
    prompt = prompt_text(model, tokens)
    options = SamplingOptions(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                              banned=())
    runs = []
    for _ in range(args.runs):
        replies = model.stream(prompt, options, n=args.child)
        replies.wait()
        stats = model.last_generation
        runs.append({"first": stats.first_token_seconds, "seconds": stats.seconds,
                     "new_tokens": replies.new_tokens})
    print(json.dumps({"load": load, "prompt_tokens": stats.prompt_tokens, "runs": runs,
                      "device": f"{model.device} {model.compute_type}"}))


def run_child(n: int, args) -> dict:
    command = [sys.executable, __file__, "--child", str(n), "--model", args.model,
               "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
               "--runs", str(args.runs), "--threads", str(args.threads)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"n={n} failed with status {status}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024  # Linux reports kilobytes
    return result


def report(results: dict, args) -> str:
    any_result = next(iter(results.values()))
    lines = [
        f"machine: {describe_machine()}",
        f"settings: {args.model}, {any_result['device']}, threads {args.threads or 'auto'}, "
        f"{any_result['prompt_tokens']} prompt tokens, {args.new_tokens} new tokens per reply, "
        f"temperature 0.5 top-p 0.9, {args.runs} runs each: median [min-max]",
        "",
        "| n | first token s | request s | replies/s | request time vs n=1 "
        "| peak RSS GB | RSS over n=1 GB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = results[min(results)]
    base_seconds = sorted(r["seconds"] for r in base["runs"])[len(base["runs"]) // 2]
    for n, result in sorted(results.items()):
        seconds = [r["seconds"] for r in result["runs"]]
        rates = [n / s for s in seconds]
        ratio = [s / base_seconds for s in seconds]
        lines.append(
            f"| {n} | {spread([r['first'] for r in result['runs']], 2)} | {spread(seconds, 2)} "
            f"| {spread(rates, 2)} | {spread(ratio, 2)} | {result['peak_rss'] / 1e9:.2f} "
            f"| {(result['peak_rss'] - base['peak_rss']) / 1e9:+.2f} |")
    lines.append("")
    lines.append("replies/s counts every reply of a request (prompt pass included); a spare is "
                 "worth it when regenerates are frequent enough to use it.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(WORK / "neo27-st-int8"),
                        help="a converted model folder, or 'demo' for the bundled demo")
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--counts", default="1,2,3", help="comma-separated values of n")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    model_folder(args.model)  # convert once, before the children race to it
    counts = [int(c) for c in args.counts.split(",")]
    print(report({n: run_child(n, args) for n in counts}, args))


if __name__ == "__main__":
    main()
