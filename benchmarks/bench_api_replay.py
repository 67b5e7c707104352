"""A SillyTavern chat replayed through the server's generation path: no reuse, reuse, smart context.

    python benchmarks/bench_api_replay.py [--model DIR | --demo] [--turns 32] [--runs 1]

Replays a chat as SillyTavern sends it to a KoboldAI/KoboldCpp backend: each turn's prompt is
the whole text (story string, <START>, example dialogue, history as "Name: text" lines,
ending in "\\n{char}:"), budgeted as SillyTavern does with its context size set to the
model's and its default response length (350 tokens at a 2,048 context, scaled to the
model's), so examples, then the oldest messages, drop once the chat outgrows it. Every
--swipe-every turns a regenerate sends the same prompt again. The card is a real one
(../shared/data/cards), the messages are lines of ../shared/data/text/tinyshakespeare.txt
(the character's replies are scripted, not generated, so both modes send the same
prompts). Each prompt goes through pyg_edge.chat.completions.Completions, as every
KoboldAI, KoboldCpp and /v1/completions request does, with SillyTavern's budget as its
room and its stop strings. Three modes: "no reuse" (serve --no-prefix-cache: every prompt
read in full), "reuse" (the prefix planner alone, --smart-context 0) and "smart" (the
default: cut deep, then match, pyg_edge.chat.smart_context). Each mode runs in its own
process, so its peak RSS (load included) is its own. Greedy decoding: "reuse" must
generate the no-reuse text; "smart" reads less of a full chat, so each of its turns whose
text the model read differs from the client's is checked against an uncached run of that
text, after the replay. Without --model or --demo it uses the
synthetic 2.7B checkpoint converted as `pyg-edge convert` does by default, with a prefill
chunk of 1,024 (work/neo27-st-int8-chunk1024; bench_common.ensure_model), whose text is
noise but timings real; there expect about 40 minutes on 2 cores, most of it the baseline.
`--demo` checks it in seconds.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_common import DATA, WORK, chat_script, describe_machine, ensure_model, spread
from pyg_edge.chat.characters import load_character
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.prompt import Message
from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.demo import demo_model
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions
from scoring import scoring_generator
from sillytavern import sillytavern_prompt

ROOT = Path(__file__).parent.parent

CHILDREN = ("plain", "reuse", "smart")


def modes(fractions) -> list:
    """The modes a replay runs: no reuse, reuse, then smart context at each fraction."""
    return ["no reuse", "reuse"] + [f"smart {f:g}" for f in fractions]


def smart_modes(results: dict) -> list:
    return [m for m in results if m.startswith("smart")]


def common_length(a: list, b: list) -> int:
    return len(os.path.commonprefix([a, b]))


async def timed_request(completions, text: str, options, response: int) -> dict:
    """One request as the server runs it; first token timed from the request's start."""
    pieces, started, first = [], time.monotonic(), None
    # SillyTavern's budget for the prompt is the context less its response length.
    context = completions.model.context_length - response + options.max_new_tokens
    stream = completions.complete_prompt(text, options, context=context)
    async for chunk in stream:
        if chunk.text:
            first = first if first is not None else time.monotonic() - started
            pieces.append(chunk.text)
    first = first if first is not None else time.monotonic() - started
    stats = stream.stats
    return {"first": first, "prompt": stats.prompt_tokens, "cached": stats.cached_tokens,
            "read": stats.read_tokens, "text": "".join(pieces)}


async def replay(model, args, mode: str) -> list:
    card = load_character(args.card)
    context, count = model.context_length, model.tokenizer.count
    response = args.response_tokens or 350 * context // 2048
    options = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(),
                              stop=("\nYou:", f"\n{card.name}:"), max_new_tokens=args.new_tokens)
    completions = Completions(model, reuse_prefixes=mode != "plain",
                              smart_context=float(args.smart_context) if mode == "smart" else 0)
    chat = [Message(card.name, card.greeting)] if card.greeting else []
    first_line = None
    rows, earlier = [], []
    for number, (user, reply) in enumerate(chat_script(args.turns, context, count), 1):
        chat.append(Message("You", user, is_user=True))
        text = sillytavern_prompt(card, chat, count, context, response)
        first_line = first_line or chat[0].render() + "\n"
        labels = [str(number)] + ([f"{number} swipe"] if number % args.swipe_every == 0
                                  else [])
        ids = model.tokenizer.encode(text)
        shared = max((common_length(ids, e) for e in earlier), default=0)
        earlier.append(ids)
        for label in labels:
            row = await timed_request(completions, text, options, response)
            row["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            rows.append(row | {"turn": label, "shared": shared, "sent": len(ids),
                               "full": first_line not in text,
                               "read_text": read if (read := completions.planner.last_read)
                               != text else None})
            shared = len(ids)  # a swipe shares all of it
        chat.append(Message(card.name, reply))
    return rows


def child(args) -> None:
    """Runs one mode and prints its rows as JSON (called in a fresh process)."""
    started = time.monotonic()
    model = PygModel(args.model, device=args.device, cpu_threads=args.threads)
    load = time.monotonic() - started
    rows = asyncio.run(replay(model, args, args.child))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    check_uncached(model, rows, args.new_tokens, load_character(args.card).name)
    print(json.dumps({"rows": rows, "load": load, "device": model.device,
                      "compute_type": model.compute_type, "context": model.context_length,
                      "peak_rss": peak}))


def check_uncached(model, rows: list, new_tokens: int, name: str) -> None:
    """Each turn that read other text than the client sent, generated again uncached; where
    the texts differ, the top-2 logit gap of an uncached pass at the first difference."""
    options = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(),
                              max_new_tokens=new_tokens)
    scorer = None
    for row in rows:
        text = row.pop("read_text")
        if text is None:
            continue
        uncached = model.generate(text, options, stop=("\nYou:", f"\n{name}:"))
        row["uncached_same"] = uncached == row["text"]
        if not row["uncached_same"]:
            scorer = scorer or scoring_generator(model.path, device="cpu",
                                                 compute_type=model.compute_type)
            same = os.path.commonprefix([uncached, row["text"]])
            row["gap"] = top2_gap(scorer, model.tokenizer, text + same)


def top2_gap(scorer, tokenizer, text: str) -> float:
    """The gap between the two best next-token logits after text, read in one pass."""
    ids = tokenizer.encode(text)
    logits = np.asarray(scorer.forward_batch([tokenizer.tokens(ids)]))[0, -1]
    best = np.sort(logits)[-2:]
    return float(best[1] - best[0])


def run_mode(args, mode: str) -> dict:
    kind = {"no reuse": "plain", "reuse": "reuse"}.get(mode, "smart")
    command = [sys.executable, __file__, "--child", kind,
               "--smart-context", mode.split()[-1] if kind == "smart" else "0",
               "--model", str(args.model), "--card", str(args.card), "--device", args.device,
               "--turns", str(args.turns), "--new-tokens", str(args.new_tokens),
               "--threads", str(args.threads), "--swipe-every", str(args.swipe_every),
               "--response-tokens", str(args.response_tokens)]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(args, results: dict) -> None:
    smart = smart_modes(results)
    first = results[smart[0]][0]
    context = first["context"]
    print(f"machine: {describe_machine()}")
    print(f"settings: {Path(args.model).name}, {first['device']} {first['compute_type']}, "
          f"threads {args.threads or 'auto'}, context {context}, SillyTavern context {context} "
          f"and response length {args.response_tokens or 350 * context // 2048}, card "
          f"{Path(args.card).name}, {args.turns} turns, a swipe every {args.swipe_every}, "
          f"{args.new_tokens} new tokens (greedy), smart context {args.smart_context}, "
          f"{args.runs} run(s) per mode, load {first['load']:.1f} s\n")
    every = list(results)
    columns = (["turn", "full", "prompt tokens sent", "shared with an earlier prompt",
                "tokens read: reuse"]
               + [f"model's prompt, tokens read: {m}" for m in smart]
               + [f"first token s: {m}" for m in every] + [f"peak RSS GB so far: {m}"
                                                          for m in every])
    print("| " + " | ".join(columns) + " |")
    print("| --- " * len(columns) + "|")
    reuse = results["reuse"][0]["rows"]
    for i, row in enumerate(first["rows"]):
        cells = [row["turn"], "yes" if row["full"] else "", row["sent"], row["shared"],
                 reuse[i]["read"]]
        cells += [f"{results[m][0]['rows'][i]['prompt']}, {results[m][0]['rows'][i]['read']}"
                  for m in smart]
        cells += [spread([r["rows"][i]["first"] for r in results[m]], 2) for m in every]
        cells += [f"{results[m][0]['rows'][i]['rss'] / 1e9:.2f}" for m in every]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    rss = {m: spread([r["peak_rss"] / 1e9 for r in results[m]], 2) for m in every}
    print("\npeak RSS GB: " + ", ".join(f"{m} {rss[m]}" for m in every))
    summarize(results)


def median_first(results: dict, mode: str, i: int) -> float:
    return statistics.median(run["rows"][i]["first"] for run in results[mode])


def summarize(results: dict) -> None:
    """The targets once the context is full, and the exactness checks."""
    rows = results["reuse"][0]["rows"]
    full = [i for i, r in enumerate(rows) if r["full"]]
    every = range(len(rows))
    for mode in ["reuse"] + smart_modes(results):
        ratios = [median_first(results, mode, i) / median_first(results, "no reuse", i)
                  for i in every]
        if full:
            mine = [median_first(results, mode, i) for i in full]
            plain = [median_first(results, "no reuse", i) for i in full]
            print(f"{mode}, the {len(full)} turns after the context is full: median first "
                  f"token {statistics.median(mine):.2f} s = "
                  f"{statistics.median(mine) / statistics.median(plain):.2f}x no reuse's "
                  f"median (median of per-turn ratios "
                  f"{statistics.median(ratios[i] for i in full):.2f}x); sum {sum(mine):.0f} s "
                  f"against {sum(plain):.0f} s = {sum(mine) / sum(plain):.2f}x")
        worst = max(every, key=lambda i: ratios[i])
        total = sum(median_first(results, mode, i) for i in every)
        plain_total = sum(median_first(results, "no reuse", i) for i in every)
        print(f"{mode}: slowest turn against no reuse {ratios[worst]:.2f}x (turn "
              f"{rows[worst]['turn']}); all turns {total:.0f} s against {plain_total:.0f} s")
    differing = text_differences({m: results[m] for m in ("no reuse", "reuse")})
    print("reuse: same generated text as no reuse: "
          + ("yes" if not differing else "NO: " + "; ".join(differing)))
    for mode in smart_modes(results):
        checked = [r["turn"] for run in results[mode] for r in run["rows"]
                   if "uncached_same" in r]
        wrong = [f"{r['turn']} (top-2 logit gap there {r['gap']:.3f})" for run in results[mode]
                 for r in run["rows"] if r.get("uncached_same") is False]
        print(f"{mode}: {len(checked)} turns read a shorter prompt than sent; greedy text "
              f"equal to an uncached run of that prompt: "
              + ("all" if not wrong else "NOT on turns " + ", ".join(wrong)))


def text_differences(results: dict) -> list:
    """Per turn whose text differs from the first no-reuse run's: where it starts to differ.

    Splitting the prompt elsewhere sums float32 attention in another order, which can flip
    a near-tie of greedy decoding (random weights have many); the turn tells which prompt
    to check.
    """
    reference = results["no reuse"][0]["rows"]
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
    parser.add_argument("--turns", type=int, default=32)
    parser.add_argument("--swipe-every", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--response-tokens", type=int, default=0,
                        help="SillyTavern's response length (default: 350 at 2,048, scaled)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--smart-context", default=str(DEFAULT_FRACTION),
                        help="the smart mode's fraction (serve --smart-context); several, "
                             "comma-separated, run a smart mode each")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.model is None:
        args.model = demo_model() if args.demo else ensure_model(WORK / "neo27-st-int8-chunk1024")
    results = {m: [] for m in modes(float(f) for f in args.smart_context.split(","))}
    for _ in range(args.runs):  # interleaved: each run has every mode
        for mode in results:
            results[mode].append(run_mode(args, mode))
    report(args, results)


if __name__ == "__main__":
    main()
