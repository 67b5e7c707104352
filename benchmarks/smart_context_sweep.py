"""Tokens each turn reads under smart context, per fraction, for a long SillyTavern chat.

    python benchmarks/smart_context_sweep.py [--turns 60] [--fractions 0.3,0.5,0.7,0.8,0.9]

No model runs: the replay's prompts (bench_api_replay: a real card, SillyTavern's budget and
its pushing out of examples and old messages) go through the server's own planning
(the library's ReadPlanner: smart context and prefix planner) and a stand-in for the model that only
counts what CTranslate2 would read: a turn whose static prefix is cached reads what follows
it, any other turn reads its whole prompt, and a new prefix replaces the cached one. Per
fraction, after the context is full: the median and the total of tokens read, how many
turns cut, and the share of the sent history the model saw (no swipes). Timings come from
bench_api_replay.py, which runs the model; this shows the trade-off behind the default
across more turns and other stretches of the dialogue text (--skip) than a replay affords.
Needs only the tokenizer of work/neo27-st-int8-chunk1024 (bench_common.ensure_model).
"""

import argparse
import statistics

from bench_common import DATA, WORK, chat_script, ensure_model
from pyg_edge.chat.characters import load_character
from pyg_edge.chat.planning import ReadPlanner
from pyg_edge.chat.prompt import Message
from pyg_edge.generation.prefill import exact_cut
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.tokenizer import TextTokenizer
from sillytavern import sillytavern_prompt

RESPONSE = 350  # SillyTavern's default response length at a 2,048 context


class CountingModel:
    """What ReadPlanner plans with, and the tokens a PygModel would read."""

    context_length = 2048
    prefill_chunk = 1024

    def __init__(self, folder):
        self.tokenizer = TextTokenizer.from_model_folder(folder)
        self.cached_prefixes = frozenset()

    def read(self, text: str, static_tokens: int) -> int:
        """Tokens read for text with that static cut; caches the prefix as PygModel does."""
        ids = self.tokenizer.encode(text)
        cut = max(0, min(static_tokens, len(ids) - 1))
        exact = exact_cut(len(ids), cut, self.prefill_chunk)
        static = tuple(ids[:exact])
        if static in self.cached_prefixes:
            return len(ids) - len(static)
        if static and exact == cut:
            self.cached_prefixes = frozenset([static])  # one prefix: a new one replaces it
        return len(ids)


def sweep(folder, fraction: float, turns: int, skip: int) -> dict:
    model = CountingModel(folder)
    planner = ReadPlanner(model.tokenizer, model.context_length, model.prefill_chunk,
                          smart_context=fraction)
    card = load_character(DATA / "cards" / "TavernAI_Aqua.png")
    options = SamplingOptions(stop=("\nYou:", f"\n{card.name}:"), max_new_tokens=RESPONSE)
    chat = [Message(card.name, card.greeting)]
    first_line = chat[0].render() + "\n"
    reads, seen, cuts = [], [], 0
    count = model.tokenizer.count
    for user, reply in chat_script(turns, 2048, count, skip):
        chat.append(Message("You", user, is_user=True))
        text = sillytavern_prompt(card, chat, count, model.context_length, RESPONSE)
        before = planner.smart.last
        read, static_tokens = planner.plan(text, options.stop, model.context_length - RESPONSE,
                                           model.cached_prefixes)
        tokens = model.read(read, static_tokens)
        fitted = planner.smart.last if planner.smart.last is not before else None
        if first_line not in text:  # the context is full: the greeting was dropped
            reads.append(tokens)
            cuts += fitted is not None and fitted.event == "cut"
            seen.append(fitted.kept_tokens / fitted.history_tokens if fitted else 1.0)
        chat.append(Message(card.name, reply))
    return {"turns": len(reads), "median": statistics.median(reads), "total": sum(reads),
            "cuts": cuts, "seen": statistics.mean(seen)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--fractions", default="0.3,0.5,0.6,0.7,0.75,0.8,0.85,0.9")
    parser.add_argument("--skip", default="0,300,600",
                        help="speeches skipped before the script starts, one sweep each")
    args = parser.parse_args()
    folder = ensure_model(WORK / "neo27-st-int8-chunk1024")
    skips = [int(s) for s in args.skip.split(",")]
    print(f"{args.turns} turns, SillyTavern context 2048 and response length {RESPONSE}, "
          f"prefill chunk {CountingModel.prefill_chunk}; per stretch of the text (--skip "
          f"{args.skip}): after the context is full\n")
    print("| fraction | median tokens read per turn | total tokens read | cuts | "
          "history seen, mean share |")
    print("| --- | --- | --- | --- | --- |")
    for fraction in (float(f) for f in args.fractions.split(",")):
        rows = [sweep(folder, fraction, args.turns, skip) for skip in skips]
        print(f"| {fraction:g} | " + " | ".join(
            " / ".join(f"{r[key]:{fmt}}" for r in rows)
            for key, fmt in (("median", ".0f"), ("total", ".0f"), ("cuts", "d"),
                             ("seen", ".2f"))) + " |")


if __name__ == "__main__":
    main()
