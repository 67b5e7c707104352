"""What a decode step costs for several sequences at once (issue 32).

    python benchmarks/bench_batch_steps.py [--runs 3] [--batches 1,2,4]

The 2.7B shape (the synthetic int8 checkpoint, default prefill chunk), a 13-token prompt
repeated in each sequence of a batch, greedy, through ctranslate2.Generator.generate_batch
with pyg-edge's process settings (pyg_edge.cpu.setup.prepare: the GEMM backend, the heap);
a step's time is the difference of a 72- and an 8-token run divided by 64, so the prompt
pass and the load drop out. One process started as the `pyg-edge` command starts itself
(glibc's copy threshold at exec); batch sizes interleaved across runs; median [min-max].
Decoding reads every weight once per step, so a batch of k should cost little more than
one sequence when the int8 product reads the weights once for all k rows
(pyg_edge/cpu/native/mkl_shim.c).
"""

import argparse
import json
import statistics
import time

from bench_common import WORK, describe_machine, ensure_model, prompt_ids, run_child, spread

MODEL = WORK / "neo27-st-int8-chunk1024"
PROMPT_TOKENS = 13
SHORT, LONG = 8, 72


def child(batches: list, runs: int) -> None:
    from pyg_edge.cpu.backend_choice import current_choice
    from pyg_edge.cpu.setup import ctranslate2_module

    ctranslate2 = ctranslate2_module()  # pyg-edge's settings (heap, copies), as PygModel
    generator = ctranslate2.Generator(str(MODEL), device="cpu", compute_type="int8")
    vocabulary = json.loads((MODEL / "vocabulary.json").read_text(encoding="utf-8"))
    prompt = [vocabulary[i] for i in prompt_ids(PROMPT_TOKENS)]

    def seconds(batch: int, length: int) -> float:
        started = time.perf_counter()
        generator.generate_batch([prompt] * batch, max_length=length, min_length=length,
                                 sampling_topk=1, include_prompt_in_result=False)
        return time.perf_counter() - started

    seconds(1, SHORT)  # warm: the first pass faults pages in
    steps = {batch: [] for batch in batches}
    for _ in range(runs):
        for batch in batches:
            steps[batch].append((LONG - SHORT) / (seconds(batch, LONG) - seconds(batch, SHORT)))
    print(json.dumps({"backend": current_choice().backend, "steps": steps}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        return child(batches, args.runs)
    ensure_model(MODEL)
    result = run_child(__file__, ["--child", "--runs", args.runs, "--batches", args.batches])
    print(f"# {describe_machine()}")
    print(f"# {MODEL.name}, backend {result['backend']}, {PROMPT_TOKENS}-token prompt, greedy, "
          f"step = ({LONG}-token run - {SHORT}-token run) / {LONG - SHORT}, {args.runs} "
          "interleaved runs\n")
    print("| batch | steps/s | tokens/s, all sequences | steps/s vs batch 1 |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(result["steps"][str(batches[0])])
    for batch in batches:
        rates = result["steps"][str(batch)]
        print(f"| {batch} | {spread(rates, 2)} | {spread([r * batch for r in rates], 1)} | "
              f"{statistics.median(rates) / base:.2f}x |")


if __name__ == "__main__":
    main()
