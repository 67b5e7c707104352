"""Decode speed with and without token probabilities (10 alternatives), interleaved:

    python benchmarks/bench_token_probs.py [--runs 3]

2.7B shape (work/neo27-st-int8-chunk1024), a 500-token prompt cached after the first run,
64 greedy tokens per run.
"""

import argparse

from bench_chat_turn import WORK, ensure_model
from bench_runtime import prompt_ids
from machine import describe_machine
from median_spread import spread

from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions

MODEL = WORK / "neo27-st-int8-chunk1024"
PROMPT_TOKENS, NEW_TOKENS = 500, 64


def prompt_text(count: int) -> str:
    """count tokens of the benchmarks' word list, as text (bench_runtime's prompts)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    return tokenizer.decode(prompt_ids(count))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = PygModel(ensure_model(MODEL), device="cpu")
    text = prompt_text(PROMPT_TOKENS)
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
