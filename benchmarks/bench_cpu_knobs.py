"""CTranslate2's CPU knobs on the 2.7B-shape model: speed of each, and that each stays exact.

    python benchmarks/bench_cpu_knobs.py [--runs 3] [--prompt-tokens 500] [--new-tokens 32]

Each configuration runs in its own process (CTranslate2 reads its environment once) and
reports time to the first token for a prompt, decode tokens/s, and two exactness checks
on the window-16 test checkpoint: float32 max |logit diff| against transformers, and int8
top-1 agreement with it. The baseline is CTranslate2's defaults, measured in the same run;
runs of different configurations are interleaved so drift hits all of them alike.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_common import describe_machine, ensure_model, spread

WORK = Path(__file__).parent / "work"
FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
EXACTNESS_CHECKPOINT = "neo_w16_safetensors_f32"
# name: (environment, keep_heap, intra_threads, compute_type)
CONFIGS = {
    "CTranslate2 defaults": ({}, False, 0, "int8"),
    "CT2_FORCE_CPU_ISA=AVX512": ({"CT2_FORCE_CPU_ISA": "AVX512"}, False, 0, "int8"),
    "keep freed heap (mallopt; pyg-edge default)": ({}, True, 0, "int8"),
    "AVX512 + keep heap": ({"CT2_FORCE_CPU_ISA": "AVX512"}, True, 0, "int8"),
    "CT2_USE_EXPERIMENTAL_PACKED_GEMM=1": ({"CT2_USE_EXPERIMENTAL_PACKED_GEMM": "1"}, False, 0,
                                           "int8"),
    "compute int8_float32": ({}, False, 0, "int8_float32"),
    "1 thread": ({}, False, 1, "int8"),
    "CT2_USE_MKL=1": ({"CT2_USE_MKL": "1"}, False, 0, "int8"),
}
# MKL's int8 path crawls on AMD CPUs (0.1 tokens/s here): it gets a short prompt.
SHORT_RUN = {"CT2_USE_MKL=1": (16, 2)}


def child(args) -> None:
    """Measures one configuration in this process; prints a JSON line."""
    import ctranslate2

    from pyg_edge.cpu import tuning as cpu_tuning

    if args.keep_heap:
        cpu_tuning.keep_freed_memory()
    started = time.monotonic()
    generator = ctranslate2.Generator(str(args.model), device="cpu", compute_type=args.compute_type,
                                      intra_threads=args.threads)
    load = time.monotonic() - started
    vocabulary = json.loads((Path(args.model) / "vocabulary.json").read_text(encoding="utf-8"))
    rng = random.Random(0)
    prompt = [vocabulary[rng.randrange(50000)] for _ in range(args.prompt_tokens)]
    started, first = time.monotonic(), None
    steps = generator.generate_tokens(prompt, max_length=args.new_tokens,
                                      min_length=args.new_tokens, sampling_topk=1)
    for _ in steps:
        first = first or time.monotonic() - started
    decode = (args.new_tokens - 1) / (time.monotonic() - started - first)
    print(json.dumps({"load": load, "first": first, "decode": decode,
                      **exactness(args.exact_dir, args.compute_type, args.threads)}))


def exactness(folder: str, compute_type: str, threads: int) -> dict:
    import ctranslate2

    ref = np.load(FIXTURES / f"reference_{EXACTNESS_CHECKPOINT}.npz")
    prompt = [ref["prompt"].tolist()]
    logits = {}
    for quantization, compute in (("float32", "float32"), ("int8", compute_type)):
        model = ctranslate2.Generator(str(Path(folder) / quantization), device="cpu",
                                      compute_type=compute, intra_threads=threads)
        logits[quantization] = np.array(model.forward_batch(prompt))[0]
    return {
        "float32_diff": float(np.abs(logits["float32"] - ref["logits"]).max()),
        "int8_agreement": float((logits["int8"].argmax(-1) == ref["logits"].argmax(-1)).mean()),
    }


def run_config(name, args, model, exact_dir) -> dict:
    environment, keep_heap, threads, compute_type = CONFIGS[name]
    prompt_tokens, new_tokens = SHORT_RUN.get(name, (args.prompt_tokens, args.new_tokens))
    command = [sys.executable, __file__, "--child", "--model", str(model),
               "--exact-dir", exact_dir, "--threads", str(threads),
               "--compute-type", compute_type, "--prompt-tokens", str(prompt_tokens),
               "--new-tokens", str(new_tokens)] + (["--keep-heap"] if keep_heap else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT2_")}
    result = subprocess.run(command, env={**env, **environment}, capture_output=True, text=True)
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def convert_exactness_models(folder: str) -> None:
    from pyg_edge_convert import convert_checkpoint

    for quantization in ("float32", "int8"):
        convert_checkpoint(str(FIXTURES / "checkpoints" / EXACTNESS_CHECKPOINT),
                           str(Path(folder) / quantization), quantization,
                           prefill_chunk=0)  # forward_batch reads the whole prompt


def report(args, results: dict) -> None:
    import ctranslate2

    print(f"machine: {describe_machine()}")
    print(f"settings: {args.model.name} (2.7B shape, int8 weights), prompt "
          f"{args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, {args.runs} runs "
          f"interleaved, medians [min-max]; CTranslate2 {ctranslate2.__version__}, CPU compute "
          f"types offered: {', '.join(sorted(ctranslate2.get_supported_compute_types('cpu')))}\n")
    print("| configuration | first token s | decode tok/s | vs defaults (first token, decode) "
          "| float32 max logit diff | int8 top-1 agreement |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = results["CTranslate2 defaults"]
    base_first = statistics.median(r["first"] for r in base)
    base_decode = statistics.median(r["decode"] for r in base)
    for name, runs in results.items():
        if "error" in runs[0]:
            print(f"| {name} | refused: {runs[0]['error']} | | | | |")
            continue
        first, decode = [r["first"] for r in runs], [r["decode"] for r in runs]
        short = SHORT_RUN.get(name)
        note = f" (prompt {short[0]}, {short[1]} new)" if short else ""
        ratio = ("" if short else
                 f"{base_first / statistics.median(first):.2f}x, "
                 f"{statistics.median(decode) / base_decode:.2f}x")
        print(f"| {name}{note} | {spread(first, 2)} | {spread(decode, 2)} | {ratio} | "
              f"{max(r['float32_diff'] for r in runs):.1e} | "
              f"{min(r['int8_agreement'] for r in runs):.1%} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--model", type=Path, default=WORK / "neo27-st-int8")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exact-dir", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--compute-type", default="int8", help=argparse.SUPPRESS)
    parser.add_argument("--keep-heap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    model = ensure_model(args.model)
    results = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as exact_dir:
        convert_exactness_models(exact_dir)
        for _ in range(args.runs):
            for name in CONFIGS:
                runs = 1 if name in SHORT_RUN else args.runs
                if len(results[name]) < runs:
                    results[name].append(run_config(name, args, model, exact_dir))
    report(args, results)


if __name__ == "__main__":
    main()
