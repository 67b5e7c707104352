"""Decode speed with and without token probabilities (10 alternatives), interleaved:

    python benchmarks/bench_token_probs.py [--runs 3]

2.7B shape (work/neo27-st-int8-chunk1024), a 500-token prompt cached after the first run,
64 greedy tokens per run.
"""

import argparse

from bench_common import CHUNKED_MODEL as MODEL
from bench_common import describe_machine, ensure_model, prompt_of, spread
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions

PROMPT_TOKENS, NEW_TOKENS = 500, 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = PygModel(ensure_model(MODEL), device="cpu")
    text = prompt_of(PROMPT_TOKENS)
    base = SamplingOptions(top_k=1, repetition_penalty=1.0, banned=(),
                           max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    model.generate(text, base, static_tokens=PROMPT_TOKENS - 1)  # caches the prompt
    speeds = {None: [], 10: []}
    for _ in range(args.runs):
        for top in speeds:
            model.generate(text, base.with_overrides(top_logprobs=top),
                           static_tokens=PROMPT_TOKENS - 1)
            stats = model.last_generation
            speeds[top].append((stats.new_tokens - 1)
                               / (stats.seconds - stats.first_token_seconds))
    print(f"machine: {describe_machine()}")
    print(f"settings: {PROMPT_TOKENS}-token cached prompt, {NEW_TOKENS} greedy tokens, "
          f"{args.runs} interleaved runs each, medians [min-max]\n")
    for top, values in speeds.items():
        print(f"- top_logprobs {top}: decode {spread(values, 2)} tokens/s")


if __name__ == "__main__":
    main()
