"""What each exact fallback costs: int8 against int16 and float32 compute (issue 30).

    python benchmarks/bench_compute_types.py [--runs 2] [--prompt 500] [--new-tokens 32]

Where no int8 path of a machine passes pyg-edge's check (pyg_edge.cpu.path_check), the
runtime falls back to another compute type of the same int8 model folder: int16 (where
CTranslate2 has oneMKL) or float32. This loads the 2.7B shape (the synthetic int8
checkpoint, default prefill chunk) in each compute type, in fresh processes started as the
`pyg-edge` command starts itself, interleaved: load seconds, the prompt pass, decode
tokens/s (greedy) and peak RSS; median [min-max], and ratios against int8 from the same run.
"""

import argparse
import json
import resource
import statistics
import time

from bench_common import WORK, describe_machine, ensure_model, prompt_ids, run_child, spread

MODEL = WORK / "neo27-st-int8-chunk1024"
COMPUTE_TYPES = ("int8", "int16", "float32")


def child(compute_type: str, prompt: int, new_tokens: int) -> None:
    from pyg_edge import PygModel, SamplingOptions

    options = SamplingOptions(top_k=1, repetition_penalty=1.0, banned=(),
                              max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    started = time.monotonic()
    with PygModel(MODEL, device="cpu", compute_type=compute_type) as model:
        loaded = time.monotonic() - started
        stream = model.stream(model.tokenizer.decode(prompt_ids(prompt)), options)
        for _ in stream:
            pass
        stats = stream.stats
        result = {"load": loaded, "prompt": stats.first_token_seconds,
                  "decode": (stats.new_tokens - 1) / (stats.seconds - stats.first_token_seconds),
                  "compute_type": model.compute_type}
    result["rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps(result))


def measure(compute_type: str, prompt: int, new_tokens: int) -> dict:
    result = run_child(__file__, ["--child", compute_type, "--prompt", prompt,
                                  "--new-tokens", new_tokens])
    if result["compute_type"] != compute_type:
        raise SystemExit(f"asked for {compute_type}, ran {result['compute_type']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=500)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--child", choices=COMPUTE_TYPES)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.prompt, args.new_tokens)
    ensure_model(MODEL)
    print(f"# {describe_machine()}")
    print(f"# {MODEL.name}, {args.prompt}-token prompt, greedy, {args.new_tokens} new tokens, "
          f"{args.runs} interleaved runs, each in a fresh process\n")
    runs = {ct: [] for ct in COMPUTE_TYPES}
    for _ in range(args.runs):
        for compute_type in COMPUTE_TYPES:
            runs[compute_type].append(measure(compute_type, args.prompt, args.new_tokens))
    columns = (("load", "load s", 1), ("prompt", f"prompt pass s ({args.prompt} tokens)", 2),
               ("decode", "decode tok/s", 2), ("rss_gb", "peak RSS GB", 2))
    print("| compute type | " + " | ".join(title for _, title, _ in columns)
          + " | decode vs int8 | RSS vs int8 |")
    print("| --- |" + " --- |" * (len(columns) + 2))
    base = {key: statistics.median(r[key] for r in runs["int8"]) for key, _, _ in columns}
    for compute_type in COMPUTE_TYPES:
        cells = [spread([r[key] for r in runs[compute_type]], digits)
                 for key, _, digits in columns]
        median = {key: statistics.median(r[key] for r in runs[compute_type])
                  for key, _, _ in columns}
        print(f"| {compute_type} | " + " | ".join(cells)
              + f" | {median['decode'] / base['decode']:.2f}x"
              + f" | {median['rss_gb'] / base['rss_gb']:.2f}x |")


if __name__ == "__main__":
    main()
