"""Prompt processing, decode speed and memory of pyg-edge against its CPU alternatives.

    python benchmarks/bench_runtime.py [--runs 2] [--engines pyg-edge,ct2-plain,...]

All engines run the same synthetic gpt-neo-2.7B checkpoint (make_synthetic_checkpoint.py),
each in its own process, so its peak RSS (load included) is its own:

- pyg-edge: the converted int8 model with exact local attention, through PygModel.
- pyg-edge-chunked: the same, converted with --prefill-chunk 1024 (pyg_edge.prefill: a
  long prompt is read exactly in two chunks, the second skipping the first's queries).
- pyg-edge-untuned: the same without pyg_edge.cpu_tuning, to show what it is worth.
- ct2-plain: the same weights with CTranslate2's own sliding window (inexact prefill).
- transformers fp32 / bf16 / torch dynamic int8 (quantize_dynamic on nn.Linear): the
  baselines, from the `bench` extra.

Each engine gets prompts of 500, 1,000 and 1,500 tokens (first token only, --runs times),
then 128 new tokens after a 500-token prompt and after a 1,920-token one (the full 2,048
context). Greedy decoding, end token suppressed. Decode speed is also given as a fraction
of this machine's limit: read bandwidth / bytes of int8 weights read per token.
Writes results/runtime.md, results/runtime.json and results/runtime.png; --engines reruns
some engines and keeps the others' results from the last runtime.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_chat_turn import WORDS, ensure_model
from machine import describe_machine
from median_spread import spread
from memory_bandwidth import read_bandwidth

WORK = Path(__file__).parent / "work"
RESULTS = Path(__file__).parent / "results"
CHECKPOINT = WORK / "neo27-st"
ENGINES = {
    "pyg-edge": "pyg-edge int8, exact",
    "pyg-edge-chunked": "pyg-edge int8, exact, prefill chunk 1024",
    "pyg-edge-untuned": "pyg-edge int8, exact, PYG_EDGE_CPU_TUNING=0",
    "ct2-plain": "CTranslate2 int8, plain prefill (inexact)",
    "hf-fp32": "transformers fp32",
    "hf-bf16": "transformers bf16",
    "hf-int8": "transformers + torch dynamic int8",
}
FIRST_TOKEN_PROMPTS = (500, 1000, 1500)
NEW_TOKENS = 128
FULL_CONTEXT_PROMPT = 2048 - NEW_TOKENS


def prompt_ids(count: int) -> list:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(WORK / "neo27-st-int8" / "tokenizer.json"))
    text = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(2 * count))
    return tokenizer.encode(text).ids[:count]


class PygEdgeEngine:
    def __init__(self, folder: Path):
        from pyg_edge.model import PygModel
        from pyg_edge.sampling import SamplingOptions

        self.model = PygModel(folder, device="cpu")
        self.options = SamplingOptions(top_k=1, repetition_penalty=1.0, banned=())

    def run(self, ids: list, new_tokens: int) -> tuple:
        """(prompt tokens, first token s, total s, new tokens) of one greedy generation."""
        text = self.model.tokenizer.decode(ids)
        for _ in self.model.stream(text, self.options, max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens):
            pass
        stats = self.model.last_generation
        return stats.prompt_tokens, stats.first_token_seconds, stats.seconds, stats.new_tokens


class TransformersEngine:
    def __init__(self, kind: str):
        import torch
        from transformers import GPTNeoForCausalLM

        torch.set_num_threads(os.cpu_count())
        dtype = torch.bfloat16 if kind == "hf-bf16" else torch.float32
        self.model = GPTNeoForCausalLM.from_pretrained(CHECKPOINT, dtype=dtype).eval()
        if kind == "hf-int8":
            # In place: a quantized copy beside the fp32 model ran out of 24 GB.
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        self.torch = torch

    def run(self, ids: list, new_tokens: int) -> tuple:
        times = []

        class Clock:  # transformers calls put() with the prompt, then once per new token
            def put(self, _):
                times.append(time.monotonic())

            def end(self):
                pass

        started = time.monotonic()
        with self.torch.inference_mode():
            out = self.model.generate(self.torch.tensor([ids]), max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False,
                                      streamer=Clock(), pad_token_id=0)
        total = time.monotonic() - started
        return len(ids), times[1] - started, total, out.shape[1] - len(ids)


def child(engine_name: str, runs: int) -> None:
    started = time.monotonic()
    if engine_name == "pyg-edge-untuned":
        os.environ["PYG_EDGE_CPU_TUNING"] = "0"
    if engine_name == "pyg-edge-chunked":
        engine = PygEdgeEngine(WORK / "neo27-st-int8-chunk1024")
    elif engine_name.startswith("pyg-edge"):
        engine = PygEdgeEngine(WORK / "neo27-st-int8")
    elif engine_name == "ct2-plain":
        engine = PygEdgeEngine(WORK / "neo27-st-int8-inexact")
    else:
        engine = TransformersEngine(engine_name)
    result = {"load": time.monotonic() - started, "first": {}, "decode": {}}
    for count in FIRST_TOKEN_PROMPTS:
        ids = prompt_ids(count)
        result["first"][count] = [engine.run(ids, 1)[1] for _ in range(runs)]
    for count in (FIRST_TOKEN_PROMPTS[0], FULL_CONTEXT_PROMPT):
        tokens, first, total, new = engine.run(prompt_ids(count), NEW_TOKENS)
        result["first"].setdefault(count, []).append(first)
        result["decode"][count] = (new - 1) / (total - first)
        result.setdefault("prompt_tokens", {})[count] = tokens
    print(json.dumps(result))


def run_child(engine_name: str, runs: int) -> dict:
    command = [sys.executable, __file__, "--child", engine_name, "--runs", str(runs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        print(f"{engine_name} failed with status {status}", file=sys.stderr)
        return None
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024
    result["measured"] = time.strftime("%Y-%m-%d %H:%M")
    result["first"] = {int(k): v for k, v in result["first"].items()}
    result["decode"] = {int(k): v for k, v in result["decode"].items()}
    return result


def previous_results() -> dict:
    path = RESULTS / "runtime.json"
    if not path.exists():
        return {}
    results = json.loads(path.read_text())["results"]
    for result in results.values():
        for key in ("first", "decode"):
            result[key] = {int(k): v for k, v in result[key].items()}
    return results


def ensure_models() -> None:
    from pyg_edge_convert import convert_checkpoint

    ensure_model(WORK / "neo27-st-int8")
    if not (WORK / "neo27-st-int8-inexact" / "model.bin").exists():
        convert_checkpoint(str(CHECKPOINT), str(WORK / "neo27-st-int8-inexact"), "int8",
                           force=True, exact_local_attention=False)
    if not (WORK / "neo27-st-int8-chunk1024" / "model.bin").exists():
        convert_checkpoint(str(CHECKPOINT), str(WORK / "neo27-st-int8-chunk1024"), "int8",
                           force=True, prefill_chunk=1024)


def write_report(results: dict, bandwidth: float, weight_bytes: int, runs: int,
                 kept: tuple = ()) -> str:
    """The markdown report; kept names the engines whose results come from an earlier run."""
    limit = bandwidth / weight_bytes
    prompts = sorted(next(iter(results.values()))["first"])
    lines = [
        f"machine: {describe_machine()}",
        f"settings: gpt-neo-2.7B shape, random fp16 weights; greedy; first token "
        f"{runs} runs per prompt length (500: {runs + 1}), 1 run of {NEW_TOKENS} new tokens "
        f"after 500 and {FULL_CONTEXT_PROMPT} prompt tokens; medians [min-max]",
        f"memory read bandwidth: {bandwidth / 1e9:.1f} GB/s (memory_bandwidth.py); int8 "
        f"weights read per token: {weight_bytes / 1e9:.2f} GB; decode limit "
        f"{limit:.1f} tokens/s",
        "",
        "| engine | load s | " + " | ".join(f"first token s @{p}" for p in prompts)
        + f" | prompt tok/s @1500 | decode tok/s @500 | decode tok/s @{FULL_CONTEXT_PROMPT} "
        "| decode / int8 limit | peak RSS GB |",
        "| --- " * (len(prompts) + 7) + "|",
    ]
    for name, r in results.items():
        first_1500 = statistics.median(r["first"][1500])
        lines.append(
            f"| {ENGINES[name]} | {r['load']:.1f} | "
            + " | ".join(spread(r["first"][p]) for p in prompts)
            + f" | {1500 / first_1500:.0f} | {r['decode'][500]:.2f} | "
            f"{r['decode'][FULL_CONTEXT_PROMPT]:.2f} | {r['decode'][500] / limit:.0%} | "
            f"{r['peak_rss'] / 1e9:.2f} |")
    if kept:  # --engines reran only some: say which rows are older
        lines += ["", "rows kept from an earlier run: " + "; ".join(
            f"{ENGINES[name]} ({results[name].get('measured', 'unknown')})" for name in kept)]
    if "pyg-edge" in results:
        lines += ["", "pyg-edge against each engine, same run (>1 means pyg-edge is better):", ""]
        ours = results["pyg-edge"]
        for name, r in results.items():
            if name == "pyg-edge":
                continue
            first = statistics.median(r["first"][1500]) / statistics.median(ours["first"][1500])
            decode = ours["decode"][500] / r["decode"][500]
            memory = r["peak_rss"] / ours["peak_rss"]
            lines.append(f"- {ENGINES[name]}: first token @1500 {first:.2f}x, decode @500 "
                         f"{decode:.2f}x, peak RSS {memory:.2f}x")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, r in results.items():
        prompts = sorted(r["first"])
        left.plot(prompts, [statistics.median(r["first"][p]) for p in prompts], "o-",
                  label=ENGINES[name])
        contexts = sorted(r["decode"])
        right.plot(contexts, [r["decode"][c] for c in contexts], "o-", label=ENGINES[name])
    left.set(xlabel="prompt tokens", ylabel="time to first token (s)", yscale="log",
             title="Prompt processing")
    right.set(xlabel="prompt tokens before decoding", ylabel="decode tokens/s",
              title=f"Decode ({NEW_TOKENS} new tokens)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runs)
        return
    ensure_models()
    bandwidth = read_bandwidth()
    weight_bytes = (WORK / "neo27-st-int8" / "model.bin").stat().st_size
    results = previous_results()
    for name in args.engines.split(","):
        print(f"running {name}...", file=sys.stderr, flush=True)
        result = run_child(name, args.runs)
        if result:
            results[name] = result
    results = {name: results[name] for name in ENGINES if name in results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "runtime.json").write_text(json.dumps(
        {"bandwidth": bandwidth, "weight_bytes": weight_bytes, "results": results}, indent=1))
    kept = tuple(name for name in results if name not in args.engines.split(","))
    report = write_report(results, bandwidth, weight_bytes, args.runs, kept)
    if plot(results, RESULTS / "runtime.png"):
        report += "\n![first token and decode speed against prompt length](results/runtime.png)\n"
    (RESULTS / "runtime.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
