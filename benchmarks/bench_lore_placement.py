"""Where lore goes and what it costs: a 10-turn chat whose lorebook entry activates at turn 5.

    python benchmarks/bench_lore_placement.py [--model PATH] [--turns 10] [--activate-at 5]

Without --model it runs on the bundled demo model (pyg_edge.demo, 512-token context). For
each placement (pyg_edge.chat.lore_placement: "depth", "persona") the same chat runs through
ChatSession on a fresh model load: greedy replies, the user's message at --activate-at names
the entry's key, and the book scans the last 4 messages, so the entry is active for a few
turns and then drops out. Per turn: the prompt's tokens, the tokens the prompt pass read (not
found in CTranslate2's cached prefix) and the time to the first token.

--shape-27b plans the same kind of chat at Pygmalion 2.7B's shape without running a model:
2,048-token context, prefill chunk 1,024, a history of --history-tokens, the demo's
tokenizer (Pygmalion's GPT-2 BPE), fixed replies; a prompt reads all of itself except the
longest static prefix an earlier turn gave the cache (as CTranslate2's prefix cache does).
"""

import argparse
import time
from dataclasses import replace

from bench_common import WORDS, describe_machine
from pyg_edge import demo
from pyg_edge.chat.characters import Character
from pyg_edge.chat.chat_planner import ChatPlanner
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.lore_placement import PLACEMENTS
from pyg_edge.chat.lorebook import Lorebook, LoreEntry
from pyg_edge.chat.session import ChatSession
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions

LORE = ("[The old lighthouse stands on the northern cliff. Its keeper vanished ten years "
        "ago, and on stormy nights its lamp still turns by itself.]")
CARD = Character(
    "Robin", persona="Robin is a cheerful sailor who tells stories about the sea.",
    scenario="Robin and You sit in a harbour tavern.", greeting="Ahoy! Sit down, friend.",
    book=Lorebook((LoreEntry(LORE, ("lighthouse",), name="Lighthouse"),), scan_depth=4))


def message(turn: int, activate_at: int) -> str:
    if turn == activate_at:
        return "What about the lighthouse on the cliff?"
    return " ".join(WORDS[(turn * 5 + k) % len(WORDS)] for k in range(10)).capitalize() + "?"


def run(model_path: str, placement: str, turns: int, activate_at: int) -> list:
    """Per turn: (placement, turn, prompt tokens, read tokens, first token s, turn s);
    placement "none" is the same chat with a card without a book (the baseline)."""
    card = replace(CARD, book=None) if placement == "none" else CARD
    rows = []
    with PygModel(model_path, device="cpu") as model:
        completions = Completions(model)
        completions.chats = ChatPlanner(model.tokenizer.count, model.prefill_chunk,
                                        lore_placement="depth" if placement == "none"
                                        else placement)
        options = SamplingOptions(temperature=0, max_new_tokens=24)
        session = ChatSession(model, card, options, completions=completions)
        for turn in range(1, turns + 1):
            start = time.perf_counter()
            stream = session.send(message(turn, activate_at))
            stream.text()
            stats = stream.stats
            rows.append((placement, turn, stats.prompt_tokens, stats.read_tokens,
                         stats.first_token_seconds, time.perf_counter() - start))
    return rows


def simulate(placement: str, turns: int, activate_at: int, history_tokens: int) -> list:
    """Per turn at the 2.7B shape: (placement, turn, prompt tokens, read tokens)."""
    from pyg_edge.chat.messages import ChatParts
    from pyg_edge.chat.prompt import Message
    from pyg_edge.generation.tokenizer import TextTokenizer

    count = TextTokenizer.from_model_folder(str(demo.demo_model())).count
    card = replace(CARD, book=None) if placement == "none" else CARD
    planner = ChatPlanner(count, 1024, lore_placement="depth" if placement == "none"
                          else placement)
    history, i = [Message("Robin", CARD.greeting)], 0
    while count("\n".join(m.render() for m in history)) < history_tokens:
        history += [Message("You", message(i + 100, -1), is_user=True),
                    Message("Robin", " ".join(WORDS[(i + k) % len(WORDS)] for k in range(30)))]
        i += 1
    cached, rows = [], []
    for turn in range(1, turns + 1):
        text = message(turn, activate_at)
        prompt = planner.plan(ChatParts(card, list(history), text, ()), 2048, 196)
        hit = max((p for p in cached if prompt.text.startswith(p)), key=len, default="")
        rows.append((placement, turn, prompt.token_count,
                     prompt.token_count - (count(hit) if hit else 0)))
        cached.append(prompt.static_prefix)
        reply = " ".join(WORDS[(turn * 3 + k) % len(WORDS)] for k in range(30))
        history += [Message("You", text, is_user=True), Message("Robin", reply)]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A converted model folder (default: the demo).")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--activate-at", type=int, default=5)
    parser.add_argument("--shape-27b", action="store_true",
                        help="Plan at the 2.7B shape (no model run): tokens read per turn.")
    parser.add_argument("--history-tokens", type=int, default=1500)
    args = parser.parse_args()
    if args.shape_27b:
        print_simulation(args)
        return
    model_path = args.model or str(demo.demo_model())
    print(f"Machine: {describe_machine()}; model: {args.model or 'the bundled demo'}\n")
    print("| placement | turn | prompt tokens | read tokens | read beyond no lore | "
          "first token (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    baseline = run(model_path, "none", args.turns, args.activate_at)
    totals = {}
    for placement in ("none", *PLACEMENTS):
        rows = baseline if placement == "none" else run(model_path, placement, args.turns,
                                                         args.activate_at)
        for row, base in zip(rows, baseline, strict=True):
            mark = " (key)" if row[1] == args.activate_at else ""
            print(f"| {row[0]} | {row[1]}{mark} | {row[2]} | {row[3]} | {row[3] - base[3]:+d} "
                  f"| {row[4]:.3f} |")
        after = rows[args.activate_at - 1:]
        totals[placement] = (sum(r[3] for r in after), sum(r[4] for r in after))
    print(f"\nFrom turn {args.activate_at} on, in all:")
    for placement, (read, first) in totals.items():
        print(f"- {placement}: {read} tokens read, {first:.3f} s to first tokens")


def print_simulation(args) -> None:
    print(f"Planned at the 2.7B shape (2,048 context, prefill chunk 1,024), history "
          f"{args.history_tokens} tokens; no model run\n")
    print("| placement | turn | prompt tokens | read tokens | read beyond no lore |")
    print("|---|---:|---:|---:|---:|")
    baseline = simulate("none", args.turns, args.activate_at, args.history_tokens)
    for placement in ("none", *PLACEMENTS):
        rows = baseline if placement == "none" else simulate(
            placement, args.turns, args.activate_at, args.history_tokens)
        for row, base in zip(rows, baseline, strict=True):
            mark = " (key)" if row[1] == args.activate_at else ""
            print(f"| {row[0]} | {row[1]}{mark} | {row[2]} | {row[3]} | {row[3] - base[3]:+d} |")
        after = sum(r[3] for r in rows[args.activate_at - 1:])
        print(f"| {placement}: from turn {args.activate_at} on | | | {after} | |")


if __name__ == "__main__":
    main()
