"""A chat turn on a 1,500-token history at the gpt-neo-2.7B shape, with and without prefix caching.

    python benchmarks/bench_chat_turn.py [--model benchmarks/work/neo27-st-int8] [--new-tokens 32]

--gemm onednn (or another pyg_edge.cpu.gemm_backend choice) measures it on that GEMM backend.

Converts the synthetic 2.7B checkpoint (bench_convert.py makes it) if needed (ensure_model:
work/neo27-st-int8 with a one-pass prompt, --prefill-chunk 0; work/neo27-st-int8-chunk1024
with the converter's default chunk, half the 2,048 context). The baseline,
in the same run, is the same prompt sent as plain text: the whole prompt processed every
turn. The cached runs go through ChatSession, whose static prefix (persona, examples and a
frozen block of older messages) CTranslate2 keeps: the first turn fills the cache, the next
turn and a regenerate reuse it. Random weights: the text is noise, the timings are real.
"""

import argparse
import time
from pathlib import Path

from bench_common import WORDS, WORK, describe_machine, ensure_model
from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import Message
from pyg_edge.chat.session import ChatSession
from pyg_edge.cpu.backend_choice import current_choice
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions


def sentence(i: int, length: int = 24) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(length)).capitalize() + "."


def chat_history(target_tokens: int, count) -> list:
    history, i = [], 0
    while count("\n".join(m.render() for m in history)) < target_tokens:
        history.append(Message("You", sentence(i, 12), is_user=True))
        history.append(Message("Aqua", sentence(i + 1) + " " + sentence(i + 2, 10)))
        i += 3
    return history


def timed(model, pieces) -> tuple:
    """Consumes a stream; returns (first token s, decode tokens/s, new tokens)."""
    for _ in pieces:
        pass
    stats = model.last_generation
    decode = (stats.new_tokens - 1) / max(stats.seconds - stats.first_token_seconds, 1e-9)
    return stats.first_token_seconds, decode, stats.new_tokens, stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=WORK / "neo27-st-int8")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--gemm", help="GEMM backend (default: pyg-edge's choice)")
    args = parser.parse_args()
    started = time.monotonic()
    model = PygModel(ensure_model(args.model), device="cpu", cpu_threads=args.threads,
                     gemm=args.gemm)
    load = time.monotonic() - started
    # Random weights rarely stop early; no stop strings or bans, so every run decodes fully.
    options = SamplingOptions(max_new_tokens=args.new_tokens, banned=())
    character = Character("Aqua", persona=sentence(0, 80), example_dialogue=(
        "You: " + sentence(5, 20) + "\nAqua: " + sentence(6, 40),))
    history = chat_history(1500, model.tokenizer.count)
    session = ChatSession(model, character, options, history)
    session.history.append(Message("You", "What happened to the ships last winter?", True))

    print(f"machine: {describe_machine()}")
    print(f"settings: {args.model.name}, {model.device} {model.compute_type}, GEMM "
          f"{current_choice().backend}, threads {args.threads or 'auto'}, load {load:.1f} s, "
          f"{args.new_tokens} new tokens\n")
    print("| run | prompt tokens | cached tokens | first token s | decode tok/s |")
    print("| --- | --- | --- | --- | --- |")
    prompt = session.prompt()
    rows = [("no caching (whole prompt every turn)",
             timed(model, model.stream(prompt.text, options, stop=prompt.stop_strings)))]
    rows.append(("caching: first turn (fills the cache)", timed(model, session.reply())))
    rows.append(("caching: next turn", timed(model, session.send("And the lighthouse keeper?"))))
    rows.append(("caching: regenerate", timed(model, session.regenerate())))
    for label, (first, decode, _, stats) in rows:
        print(f"| {label} | {stats.prompt_tokens} | {stats.cached_tokens} | {first:.2f} | "
              f"{decode:.2f} |")
    baseline = rows[0][1][0]
    print(f"\nfirst-token speed-up over no caching: next turn {baseline / rows[2][1][0]:.1f}x, "
          f"regenerate {baseline / rows[3][1][0]:.1f}x")


if __name__ == "__main__":
    main()
