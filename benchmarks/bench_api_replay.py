"""A SillyTavern chat replayed through the server's generation path, with and without prefix reuse.

    python benchmarks/bench_api_replay.py [--model DIR | --demo] [--turns 20] [--runs 1]

Replays a chat as SillyTavern sends it to a KoboldAI/KoboldCpp backend: each turn's prompt is
the whole text (story string, <START>, example dialogue, history as "Name: text" lines,
ending in "\\n{char}:"), budgeted as SillyTavern does with its context size set to the
model's and its default response length (350 tokens at a 2,048 context, scaled to the
model's), so examples, then the oldest messages, drop once the chat outgrows it. Every
--swipe-every turns a regenerate sends the same prompt again. The card is a real one
(../shared/data/cards), the messages are lines of ../shared/data/text/tinyshakespeare.txt
(the character's replies are scripted, not generated, so both modes send the same
prompts). Each prompt goes through pyg_edge.server.engine.GenerationQueue, as every
KoboldAI, KoboldCpp and /v1/completions request does; the baseline turns prefix reuse off.
Each mode runs in its own process, so its peak RSS (load included) is its own. Greedy
decoding: both modes must generate the same text. Without --model or --demo it uses the
synthetic 2.7B checkpoint converted as `pyg-edge convert` does by default, with a prefill
chunk of 1,024 (work/neo27-st-int8-chunk1024; bench_chat_turn.ensure_model), whose text is
noise but timings real; there expect about 40 minutes on 2 cores, most of it the baseline.
`--demo` checks it in seconds.
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_chat_turn import WORK, ensure_model
from machine import describe_machine
from median_spread import spread
from pyg_edge.characters import load_character
from pyg_edge.demo import demo_model
from pyg_edge.generation_stats import GenerationStats
from pyg_edge.model import PygModel
from pyg_edge.prompt import Message
from pyg_edge.sampling import SamplingOptions
from pyg_edge.server.engine import GenerationQueue

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the SillyTavern prompt builder the tests use
from sillytavern_prompt import sillytavern_prompt  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
MODES = ("no reuse", "reuse")


def speeches(path: Path) -> list:
    """The play's speeches, each one line of text (its speaker's name left out)."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return [" ".join(b.strip().splitlines()[1:]) for b in blocks if ":" in b.split("\n")[0]]


def chat_script(turns: int, context: int, count) -> list:
    """(user message, scripted reply) per turn, sized to the context (2,048: <= 32, 64-128)."""
    lines = [s for s in speeches(DATA / "text" / "tinyshakespeare.txt") if s][100:]
    script, i = [], 0
    for _ in range(turns):
        user = lines[i]
        reply, i = lines[i + 1], i + 2
        while count(reply) < context // 32:
            reply, i = f"{reply} {lines[i]}", i + 1
        script.append((keep_first(user, context // 64, count),
                       keep_first(reply, context // 16, count)))
    return script


def keep_first(text: str, tokens: int, count) -> str:
    words = text.split()
    while len(words) > 3 and count(" ".join(words)) > tokens:
        words.pop()
    return " ".join(words)


def common_length(a: list, b: list) -> int:
    return len(os.path.commonprefix([a, b]))


async def timed_request(queue, text: str, options) -> dict:
    """One request as the server runs it; first token timed from the request's start."""
    cancel, stats, pieces = threading.Event(), GenerationStats(), []
    started, first = time.monotonic(), None
    async for piece in queue.stream(text, options, cancel, stats):
        first = first if first is not None else time.monotonic() - started
        pieces.append(piece)
    first = first if first is not None else time.monotonic() - started
    return {"first": first, "prompt": stats.prompt_tokens, "cached": stats.cached_tokens,
            "read": stats.read_tokens, "text": "".join(pieces)}


async def replay(model, args, reuse: bool) -> list:
    card = load_character(args.card)
    context, count = model.context_length, model.tokenizer.count
    response = args.response_tokens or 350 * context // 2048
    options = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(), stop=(),
                              max_new_tokens=args.new_tokens)
    queue = GenerationQueue(model, reuse_prefixes=reuse)
    chat = [Message(card.name, card.greeting)] if card.greeting else []
    rows, earlier = [], []
    try:
        for number, (user, reply) in enumerate(chat_script(args.turns, context, count), 1):
            chat.append(Message("You", user, is_user=True))
            text = sillytavern_prompt(card, chat, count, context, response)
            labels = [str(number)] + ([f"{number} swipe"] if number % args.swipe_every == 0
                                      else [])
            ids = model.tokenizer.encode(text)
            shared = max((common_length(ids, e) for e in earlier), default=0)
            earlier.append(ids)
            for label in labels:
                row = await timed_request(queue, text, options)
                rows.append(row | {"turn": label, "shared": shared})
                shared = len(ids)  # a swipe shares all of it
            chat.append(Message(card.name, reply))
    finally:
        queue.close()
    return rows


def child(args) -> None:
    """Runs one mode and prints its rows as JSON (called in a fresh process)."""
    started = time.monotonic()
    model = PygModel(args.model, device=args.device, cpu_threads=args.threads)
    load = time.monotonic() - started
    rows = asyncio.run(replay(model, args, args.child == "reuse"))
    print(json.dumps({"rows": rows, "load": load, "device": model.device,
                      "compute_type": model.compute_type, "context": model.context_length,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_mode(args, mode: str) -> dict:
    command = [sys.executable, __file__, "--child", "reuse" if mode == "reuse" else "plain",
               "--model", str(args.model), "--card", str(args.card), "--device", args.device,
               "--turns", str(args.turns), "--new-tokens", str(args.new_tokens),
               "--threads", str(args.threads), "--swipe-every", str(args.swipe_every),
               "--response-tokens", str(args.response_tokens)]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(args, results: dict) -> None:
    first = results["reuse"][0]
    context = first["context"]
    print(f"machine: {describe_machine()}")
    print(f"settings: {Path(args.model).name}, {first['device']} {first['compute_type']}, "
          f"threads {args.threads or 'auto'}, context {context}, SillyTavern context {context} "
          f"and response length {args.response_tokens or 350 * context // 2048}, card "
          f"{Path(args.card).name}, {args.turns} turns, a swipe every {args.swipe_every}, "
          f"{args.new_tokens} new tokens (greedy), {args.runs} run(s) per mode, load "
          f"{first['load']:.1f} s\n")
    print("| turn | prompt tokens | shared with an earlier prompt | static prefix (reuse) "
          "| tokens read (reuse) | first token s: no reuse | first token s: reuse |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, row in enumerate(first["rows"]):
        times = {m: [r["rows"][i]["first"] for r in results[m]] for m in MODES}
        print(f"| {row['turn']} | {row['prompt']} | {row['shared']} | {row['cached']} | "
              f"{row['read']} | {spread(times['no reuse'], 2)} | {spread(times['reuse'], 2)} |")
    rss = {m: spread([r["peak_rss"] / 1e9 for r in results[m]], 2) for m in MODES}
    print(f"\npeak RSS GB: no reuse {rss['no reuse']}, reuse {rss['reuse']}")
    summarize(results, context)


def summarize(results: dict, context: int) -> None:
    """The target: turns sharing >= 1,000 tokens (scaled to the context) answer in <= 3 s."""
    threshold = 1000 * context // 2048
    runs = results["reuse"]
    rows = [i for i, r in enumerate(runs[0]["rows"]) if i and r["shared"] >= threshold]
    met = [i for i in rows if max(run["rows"][i]["first"] for run in runs) <= 3.0]
    print(f"turns after the first sharing >= {threshold} tokens with an earlier prompt: "
          f"{len(rows)}; first token <= 3 s with reuse: {len(met)} of them")
    differing = text_differences(results)
    print("same generated text in every run and mode: "
          + ("yes" if not differing else "NO: " + "; ".join(differing)))


def text_differences(results: dict) -> list:
    """Per turn whose text differs from the first reuse run's: where it starts to differ.

    Splitting the prompt elsewhere sums float32 attention in another order, which can flip
    a near-tie of greedy decoding (random weights have many); the turn tells which prompt
    to check.
    """
    reference = results["reuse"][0]["rows"]
    differing = {}
    for mode, runs in results.items():
        for run in runs:
            for row, ref in zip(run["rows"], reference, strict=True):
                if row["text"] != ref["text"]:
                    at = len(os.path.commonprefix([row["text"], ref["text"]]))
                    differing.setdefault(ref["turn"], f"turn {ref['turn']} ({mode}) from "
                                                      f"character {at}")
    return list(differing.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--demo", action="store_true", help="use the bundled demo model")
    parser.add_argument("--card", type=Path, default=DATA / "cards" / "TavernAI_Aqua.png")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--swipe-every", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--response-tokens", type=int, default=0,
                        help="SillyTavern's response length (default: 350 at 2,048, scaled)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", choices=("reuse", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.model is None:
        args.model = demo_model() if args.demo else ensure_model(WORK / "neo27-st-int8-chunk1024")
    results = {m: [run_mode(args, m) for _ in range(args.runs)] for m in MODES}
    report(args, results)


if __name__ == "__main__":
    main()
