"""Prompt processing, decode speed and memory of pyg-edge against its CPU alternatives.

    python benchmarks/bench_runtime.py [--runs 2] [--engines pyg-edge-chunked,openvino-int8,...]

All engines run the same synthetic gpt-neo-2.7B checkpoint (make_synthetic_checkpoint.py),
each in a process of its own, so its peak RSS (load included) is its own
(runtime_engines.py):

- pyg-edge: the converted int8 model with exact local attention and a one-pass prompt
  (--prefill-chunk 0, the converter's default before the chunk), through PygModel, on the
  GEMM backend pyg-edge picks for this CPU (pyg_edge.cpu.gemm_backend; named in the table).
- pyg-edge-onednn: the same on CTranslate2's oneDNN int8 GEMM (PYG_EDGE_GEMM=onednn),
  what pyg-edge ran before it chose backends.
- pyg-edge-chunked: the same, converted with --prefill-chunk 1024, the converter's default
  (half the context; pyg_edge.generation.prefill: a long prompt is read exactly in two chunks, the
  second skipping the first's queries). What a user runs: the reference of the ratios.
- pyg-edge-packed: the same on oneMKL's packed VNNI kernels (mkl-vnni), the choice on
  AVX-512 VNNI CPUs before exact-vnni.
- ct2-plain: the same weights with CTranslate2's own sliding window (inexact prefill).
- hf-int8 (torch dynamic int8 on nn.Linear), openvino-int8 (optimum-intel, int8 weights),
  ort-int8 (optimum's ONNX export, dynamic int8 by its ORTQuantizer), hf-fp32, hf-bf16: the
  baselines, from the `bench` extra plus onnxruntime and optimum-onnx.

Load time includes a first 8-token generation (OpenVINO compiles its model then). Each
round runs every engine once, one after another (rounds interleave the engines, so
a slow spell of this shared machine hits them alike): first token after 1,000 and 1,556
prompt tokens, then 128 new tokens after 500 and after 1,920 prompt tokens (the full 2,048
context), whose first tokens give the 500 and 1,920 columns. The report ends with issue
19's targets, checked against the best peer of the same run. Greedy, end token suppressed.
Decode speed is also given as a fraction of this machine's limit: read bandwidth / bytes
of int8 weights read per token. Beside each phase the kernel's share of the process's CPU
time (getrusage: system / (user + system)), so page-fault storms (pages zeroed for fresh
allocations) show in every run. Writes results/runtime.md, .json and .png; --engines
reruns some engines and keeps the others' results from the last runtime.json when that
was measured on this machine.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from runtime_engines import (
    CHECKPOINT,
    ENGINES,
    WORK,
    ensure_onnx_int8_model,
    ensure_openvino_model,
    make_engine,
)

from bench_common import describe_machine, ensure_model, prompt_ids, read_bandwidth, spread
from pyg_edge.cpu.copy_tuning import tuned_environment

RESULTS = Path(__file__).parent / "results"
# The engine the ratios compare with: what `pyg-edge convert` makes by default, if run.
REFERENCES = ("pyg-edge-chunked", "pyg-edge")
# ort-int8 is left out by default: onnxruntime's quantize_dynamic of the float32 export
# went past 24 GB of RSS and was killed on the project's machine (2026-12-05).
DEFAULT_ENGINES = "pyg-edge-chunked,pyg-edge-packed,openvino-int8,hf-int8"
PEERS = ("openvino-int8", "ort-int8", "hf-int8")
FIRST_TOKEN_PROMPTS = (1000, 1556)
NEW_TOKENS = 128
FULL_CONTEXT_PROMPT = 2048 - NEW_TOKENS
DECODE_PROMPTS = (500, FULL_CONTEXT_PROMPT)


def child(engine_name: str) -> None:
    """One round of one engine, printed as a JSON line."""
    started = time.monotonic()
    engine = make_engine(engine_name)
    engine.run(prompt_ids(8), 2)  # OpenVINO compiles on its first call: count it as load
    result = {"load": time.monotonic() - started, "first": {}, "decode": {},
              "backend": engine.backend}
    result["kernel"] = {}
    for count in FIRST_TOKEN_PROMPTS:
        before = cpu_times()
        result["first"][count] = engine.run(prompt_ids(count), 1)[1]
        result["kernel"][f"first {count}"] = kernel_share(before, cpu_times())
    # The memory target is at 1,556 tokens: the peak so far, before the 1,920 runs.
    result["peak_rss_1556"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for count in DECODE_PROMPTS:
        before = cpu_times()
        tokens, first, total, new = engine.run(prompt_ids(count), NEW_TOKENS)
        result["kernel"][f"run {count}"] = kernel_share(before, cpu_times())
        result["first"][count] = first
        result["decode"][count] = (new - 1) / (total - first)
    print(json.dumps(result))


def cpu_times() -> tuple:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def kernel_share(before: tuple, after: tuple) -> float:
    """The kernel's share of the CPU time spent between two cpu_times()."""
    user, system = after[0] - before[0], after[1] - before[1]
    return system / (user + system) if user + system else 0.0


def run_child(engine_name: str) -> dict | None:
    command = [sys.executable, __file__, "--child", engine_name]
    # pyg-edge's engines start as the `pyg-edge` command starts itself (pyg_edge.launcher).
    environment = tuned_environment(os.environ) if engine_name.startswith("pyg-edge") else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        print(f"{engine_name} failed with status {status}", file=sys.stderr)
        return None
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024
    return result


def merge_rounds(rounds: list) -> dict:
    """One engine's rounds as lists per figure (first[p], decode[p], load, peak_rss)."""
    merged = {"first": {}, "decode": {}, "load": [], "peak_rss": [], "peak_rss_1556": [],
              "kernel": {},
              "backend": rounds[0]["backend"], "measured": time.strftime("%Y-%m-%d %H:%M")}
    for result in rounds:
        for key in ("first", "decode"):
            for count, value in result[key].items():
                merged[key].setdefault(int(count), []).append(value)
        for phase, share in result.get("kernel", {}).items():
            merged["kernel"].setdefault(phase, []).append(share)
        merged["load"].append(result["load"])
        merged["peak_rss"].append(result["peak_rss"])
        merged["peak_rss_1556"].append(result["peak_rss_1556"])
    return merged


def previous_results() -> dict:
    """The last run's results, if it ran on this machine (else nothing is kept)."""
    path = RESULTS / "runtime.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if saved.get("machine") != describe_machine():
        return {}
    results = saved["results"]
    for result in results.values():
        for key in ("first", "decode"):
            result[key] = {int(k): v for k, v in result[key].items()}
    return results if all(isinstance(r["load"], list) for r in results.values()) else {}


def ensure_models(names: list) -> None:
    from pyg_edge_convert import convert_checkpoint

    ensure_model(WORK / "neo27-st-int8-chunk1024")  # the converter's default chunk
    if {"pyg-edge", "pyg-edge-onednn"} & set(names):
        ensure_model(WORK / "neo27-st-int8")  # one-pass prompt (prefill chunk 0)
    if "openvino-int8" in names:
        ensure_openvino_model()
    if "ort-int8" in names:
        ensure_onnx_int8_model()
    if "ct2-plain" in names and not (WORK / "neo27-st-int8-inexact" / "model.bin").exists():
        convert_checkpoint(str(CHECKPOINT), str(WORK / "neo27-st-int8-inexact"), "int8",
                           force=True, exact_local_attention=False, prefill_chunk=0)


def write_report(results: dict, bandwidth: float, weight_bytes: int, runs: int,
                 kept: tuple = ()) -> str:
    """The markdown report; kept names the engines whose results come from an earlier run."""
    limit = bandwidth / weight_bytes
    prompts = sorted(next(iter(results.values()))["first"])
    median = statistics.median
    lines = [
        f"machine: {describe_machine()}",
        f"settings: gpt-neo-2.7B shape, random fp16 weights; greedy; {runs} rounds, each "
        f"running every engine once in turn; {NEW_TOKENS} new tokens after 500 and "
        f"{FULL_CONTEXT_PROMPT} prompt tokens; medians [min-max] over rounds",
        f"memory read bandwidth: {bandwidth / 1e9:.1f} GB/s (memory_bandwidth.py); int8 "
        f"weights read per token: {weight_bytes / 1e9:.2f} GB; decode limit "
        f"{limit:.1f} tokens/s",
        "",
        "| engine | GEMM | load s | " + " | ".join(f"first token s @{p}" for p in prompts)
        + " | prompt tok/s @1556 | " + " | ".join(f"decode tok/s @{p}" for p in DECODE_PROMPTS)
        + " | decode @500 / int8 limit | peak RSS GB |",
        "| --- " * (len(prompts) + 8) + "|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {ENGINES[name]} | {r['backend']} | {median(r['load']):.1f} | "
            + " | ".join(spread(r["first"][p]) for p in prompts)
            + f" | {1556 / median(r['first'][1556]):.0f} | "
            + " | ".join(spread(r["decode"][p], 2) for p in DECODE_PROMPTS)
            + f" | {median(r['decode'][500]) / limit:.0%} | "
            f"{spread([v / 1e9 for v in r['peak_rss']], 2)} |")
    lines += ["", "Kernel share of CPU time per phase (system / (user + system), median): "
              "prompt passes of 1,000 and 1,556 tokens, then each 128-token run after 500 "
              "and 1,920", ""]
    for name, r in results.items():
        shares = r.get("kernel") or {}
        if shares:
            lines.append(f"- {ENGINES[name]}: " + ", ".join(
                f"{phase} {median(values):.0%}" for phase, values in shares.items()))
    if kept:  # --engines reran only some: say which rows are older
        lines += ["", "rows kept from an earlier run: " + "; ".join(
            f"{ENGINES[name]} ({results[name].get('measured', 'unknown')})" for name in kept)]
    ours = next((name for name in REFERENCES if name in results), None)
    if ours:
        lines += ["", f"{ENGINES[ours]} against each engine, same run unless kept (>1 means "
                  "it is better):", ""]
        lines += [ratio_line(results[ours], name, r)
                  for name, r in results.items() if name != ours]
        lines += target_lines(results, ours)
    return "\n".join(lines) + "\n"


def target_lines(results: dict, ours: str) -> list:
    """Issue 19's targets for ours against the peers measured in this run."""
    median = statistics.median
    peers = {name: results[name] for name in PEERS if name in results}
    if not peers:
        return []
    mine = results[ours]
    lines = ["", f"Targets (issue 19) for {ENGINES[ours]}:", ""]
    if "openvino-int8" in peers:
        ratio = median(mine["first"][1556]) / median(peers["openvino-int8"]["first"][1556])
        lines.append(f"- first token @1556 at most 1.1x OpenVINO's: {ratio:.2f}x "
                     + ("met" if ratio <= 1.1 else "NOT met"))
    for prompt, wanted in ((500, 1.1), (FULL_CONTEXT_PROMPT, 0.8)):
        best = max(peers, key=lambda name: median(peers[name]["decode"][prompt]))
        ratio = median(mine["decode"][prompt]) / median(peers[best]["decode"][prompt])
        lines.append(f"- decode @{prompt} at least {wanted}x the best peer ({ENGINES[best]}): "
                     f"{ratio:.2f}x " + ("met" if ratio >= wanted else "NOT met"))
    rss = median(mine["peak_rss_1556"]) / 1e9
    lines.append(f"- peak RSS at 1,556 tokens at most 5 GB (load, then prompts of 8, 1,000 and "
                 f"1,556 tokens): {rss:.2f} GB " + ("met" if rss <= 5 else "NOT met"))
    return lines


def ratio_line(ours: dict, name: str, theirs: dict) -> str:
    median = statistics.median
    first = {p: median(theirs["first"][p]) / median(ours["first"][p]) for p in (500, 1556)}
    decode = {p: median(ours["decode"][p]) / median(theirs["decode"][p]) for p in DECODE_PROMPTS}
    memory = median(theirs["peak_rss"]) / median(ours["peak_rss"])
    return (f"- {ENGINES[name]}: first token @500 {first[500]:.2f}x, @1556 {first[1556]:.2f}x; "
            f"decode @500 {decode[500]:.2f}x, @{FULL_CONTEXT_PROMPT} "
            f"{decode[FULL_CONTEXT_PROMPT]:.2f}x; peak RSS {memory:.2f}x")


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
        right.plot(contexts, [statistics.median(r["decode"][c]) for c in contexts], "o-",
                   label=ENGINES[name])
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
    parser.add_argument("--runs", type=int, default=2, help="rounds over every engine")
    parser.add_argument("--engines", default=DEFAULT_ENGINES,
                        help="comma-separated, of: " + ", ".join(ENGINES))
    parser.add_argument("--report-only", action="store_true",
                        help="write the report again from results/runtime.json, measuring nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.report_only:
        saved, results = json.loads((RESULTS / "runtime.json").read_text()), previous_results()
        measured = args.engines.split(",")  # the engines of the run being reported
        return report(results, saved["bandwidth"], saved["weight_bytes"], args.runs,
                      tuple(name for name in results if name not in measured))
    names = args.engines.split(",")
    ensure_models(names)
    bandwidth = read_bandwidth()
    weight_bytes = (WORK / "neo27-st-int8-chunk1024" / "model.bin").stat().st_size
    rounds = {name: [] for name in names}
    for round_number in range(args.runs):
        for name in names:
            print(f"round {round_number + 1}: {name}...", file=sys.stderr, flush=True)
            result = run_child(name)
            if result:
                rounds[name].append(result)
    results = previous_results()
    results.update({name: merge_rounds(r) for name, r in rounds.items() if r})
    results = {name: results[name] for name in ENGINES if name in results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "runtime.json").write_text(json.dumps(
        {"machine": describe_machine(), "bandwidth": bandwidth, "weight_bytes": weight_bytes,
         "results": results}, indent=1))
    report(results, bandwidth, weight_bytes, args.runs,
           tuple(name for name in results if name not in names))


def report(results: dict, bandwidth: float, weight_bytes: int, runs: int, kept: tuple) -> None:
    """Writes results/runtime.md (and its plot) and prints it."""
    text = write_report(results, bandwidth, weight_bytes, runs, kept)
    if plot(results, RESULTS / "runtime.png"):
        text += "\n![first token and decode speed against prompt length](results/runtime.png)\n"
    (RESULTS / "runtime.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
