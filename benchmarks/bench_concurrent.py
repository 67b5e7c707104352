"""Several users' requests at once: one after another (the server now) or in one batch.

    python benchmarks/bench_concurrent.py [--runs 2] [--users 1,2,4] [--prompt-tokens 500]

k users each send a chat turn at the same moment: different prompts of --prompt-tokens
tokens (none cached: pyg-edge keeps one cached prefix, which k users alternating would
evict every turn), 64 new tokens each, greedy, on the 2.7B shape (the synthetic int8
checkpoint, default prefill chunk). "one after another" runs one generate_batch per user
in arrival order, as the server's turn queue does; "one batch" runs all k prompts in a
single generate_batch (padded to the longest), which is what batching concurrent requests
would do. For each: every user's first token (from the moment all k arrived), the last
user's reply end, and tokens/s over all users. One process started as the `pyg-edge`
command starts itself; the modes interleaved across runs; median [min-max].
"""

import argparse
import json
import statistics
import time

from bench_common import WORK, describe_machine, ensure_model, prompt_ids, run_child, spread

MODEL = WORK / "neo27-st-int8-chunk1024"
NEW_TOKENS = 64
MODES = ("one after another", "one batch")


def user_prompts(users: int, tokens: int, vocabulary: list) -> list:
    """Different prompts of the same length: each user's text starts elsewhere."""
    ids = prompt_ids(tokens + 97 * users)
    return [[vocabulary[i] for i in ids[97 * u: 97 * u + tokens]] for u in range(users)]


def run(generator, prompts: list, batched: bool) -> dict:
    started = time.perf_counter()
    first = [None] * len(prompts)

    def on_token(step, offset=0):
        index = step.batch_id + offset
        if first[index] is None:
            first[index] = time.perf_counter() - started

    groups = [(prompts, 0)] if batched else [([p], i) for i, p in enumerate(prompts)]
    for group, offset in groups:
        generator.generate_batch(group, max_length=NEW_TOKENS, min_length=NEW_TOKENS,
                                 sampling_topk=1, include_prompt_in_result=False,
                                 callback=lambda step, o=offset: on_token(step, o))
    total = time.perf_counter() - started
    return {"first": first, "total": total, "rate": NEW_TOKENS * len(prompts) / total}


def child(users: list, runs: int, prompt_tokens: int) -> None:
    from pyg_edge.cpu.setup import ctranslate2_module

    ctranslate2 = ctranslate2_module()
    generator = ctranslate2.Generator(str(MODEL), device="cpu", compute_type="int8")
    vocabulary = json.loads((MODEL / "vocabulary.json").read_text(encoding="utf-8"))
    generator.generate_batch([vocabulary[:8]], max_length=4)  # warm: pages faulted in
    results = {f"{k}|{mode}": [] for k in users for mode in MODES}
    for _ in range(runs):
        for k in users:
            prompts = user_prompts(k, prompt_tokens, vocabulary)
            for mode in MODES if k > 1 else MODES[:1]:
                results[f"{k}|{mode}"].append(run(generator, prompts, mode == "one batch"))
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--users", default="1,2,4")
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    users = [int(k) for k in args.users.split(",")]
    if args.child:
        return child(users, args.runs, args.prompt_tokens)
    ensure_model(MODEL)
    results = run_child(__file__, ["--child", "--runs", args.runs, "--users", args.users,
                                   "--prompt-tokens", args.prompt_tokens], timeout=7200)
    print(f"# {describe_machine()}")
    print(f"# {MODEL.name}, {args.prompt_tokens}-token prompts (none cached), {NEW_TOKENS} new "
          f"tokens each, greedy, {args.runs} interleaved runs\n")
    print("| users | mode | first token s, each user in arrival order | last reply done s | "
          "tokens/s, all users | vs one after another |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in users:
        base = statistics.median(r["rate"] for r in results[f"{k}|{MODES[0]}"])
        for mode in MODES if k > 1 else MODES[:1]:
            rows = results[f"{k}|{mode}"]
            firsts = ", ".join(spread([r["first"][u] for r in rows], 1) for u in range(k))
            rate = statistics.median(r["rate"] for r in rows)
            print(f"| {k} | {mode} | {firsts} | {spread([r['total'] for r in rows], 1)} | "
                  f"{spread([r['rate'] for r in rows], 2)} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
