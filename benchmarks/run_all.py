"""Runs every benchmark and writes benchmarks/RESULTS.md from their outputs.

    pip install -e '.[bench]' && python benchmarks/run_all.py [--only NAME,...]

Each benchmark is its own script (run one alone to repeat a measurement); this runs them
one after another, never in parallel (they would slow each other down), keeps each output
in benchmarks/results/NAME.md and assembles RESULTS.md from those files. --only reruns
some and reuses the others' last outputs; --assemble only rebuilds RESULTS.md from them.
The first run makes the synthetic 2.7B checkpoints (about 11 GB in benchmarks/work/)
and takes about two hours on 2 cores.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
# name, title, command line after `python benchmarks/`. work/neo27-st-int8-chunk1024 has the
# converter's default prefill chunk (half the context), work/neo27-st-int8 a one-pass prompt
# (--prefill-chunk 0); bench_common.ensure_model makes either (PREFILL_CHUNKS). Every
# measurement script is here (tests/packaging/test_benchmarks.py checks it).
BENCHMARKS = [
    ("bandwidth", "Memory read bandwidth", "memory_bandwidth.py"),
    ("convert", "Conversion", "bench_convert.py --runs 2"),
    ("cpu_knobs", "CTranslate2's CPU knobs", "bench_cpu_knobs.py --runs 3"),
    ("gemm", "pyg-edge's exact int8 GEMM alone", "bench_gemm.py"),
    ("runtime", "Prompt processing, decode and memory against the alternatives",
     "bench_runtime.py --runs 1 "
     "--engines pyg-edge-chunked,pyg-edge,ct2-plain,hf-int8,openvino-int8"),
    ("memory", "Where the memory goes on a 1,920-token prompt", "bench_memory.py"),
    ("chat_turn", "A chat turn on a 1,500-token history",
     "bench_chat_turn.py --new-tokens 64 --model work/neo27-st-int8-chunk1024"),
    ("chat_turn_onednn", "The same chat turn on oneDNN's int8 GEMM",
     "bench_chat_turn.py --new-tokens 64 --model work/neo27-st-int8-chunk1024 --gemm onednn"),
    ("n_replies", "Several replies from one prompt pass",
     "bench_n_replies.py --model work/neo27-st-int8-chunk1024 --prompt-tokens 1000 --runs 2"),
    ("api_replay", "A 32-turn SillyTavern chat through the API: no reuse, prefix reuse, smart "
     "context",
     "bench_api_replay.py"),
    ("int8_agreement", "Quantization against transformers", "int8_agreement.py"),
    ("quality", "Demo model quality", "quality_report.py --baseline-rev bda30bb"),
    ("server", "Server", "bench_server.py --requests 48"),
    ("token_probs", "The cost of token probabilities", "bench_token_probs.py"),
    ("smart_context_sweep", "Tokens read per turn for each smart-context fraction (no model)",
     "smart_context_sweep.py"),
    ("decode_profile", "The decode run the profiles record (at 500 tokens)",
     "decode_profile.py 500"),
    ("embedding", "An app's process against the command, and Stop latency",
     "bench_embedding.py --runs 2"),
    ("compute_types", "What each exact fallback costs: int8, int16 and float32 compute on the "
     "2.7B shape", "bench_compute_types.py --runs 2"),
    ("batch_steps", "Decode steps/s for 1, 2 and 4 sequences at once",
     "bench_batch_steps.py --runs 3"),
    ("concurrent", "Several users' turns one after another or in one batch",
     "bench_concurrent.py --runs 2"),
    ("server_faults", "The server under load and faults (concurrent streams, disconnects, a "
     "client that never reads, malformed bodies)", "bench_server_faults.py --rounds 2"),
    ("lore_placement", "Lorebook placement and the prompt cache (the demo model)",
     "bench_lore_placement.py"),
    ("lore_placement_27b", "Lorebook placement planned at the 2.7B shape",
     "bench_lore_placement.py --shape-27b"),
]
HEADER = """# Benchmark results

Written by `python benchmarks/run_all.py` from the outputs of the scripts named in each
section (kept in benchmarks/results/). Synthetic 2.7B checkpoints have random weights:
the timings are real, the text is noise. Figures from different sections were measured
minutes apart on a shared virtual machine; compare within a table.
"""


def run(name: str, command: str) -> None:
    print(f"== {name}: python benchmarks/{command}", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, *command.split()], cwd=HERE,
                            stdout=subprocess.PIPE, text=True)
    output = result.stdout
    if result.returncode:
        output += f"\n**failed with status {result.returncode}** (see its stderr)\n"
    (RESULTS / f"{name}.md").write_text(output)
    print(f"   {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def assemble() -> str:
    parts = [HEADER]
    for name, title, command in BENCHMARKS:
        path = RESULTS / f"{name}.md"
        body = path.read_text().strip() if path.exists() else "(not run yet)"
        parts.append(f"## {title} (`python benchmarks/{command}`)\n\n{body}\n")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names: " +
                        ", ".join(name for name, _, _ in BENCHMARKS))
    parser.add_argument("--assemble", action="store_true",
                        help="run nothing: rebuild RESULTS.md from benchmarks/results/")
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else {name for name, _, _ in BENCHMARKS}
    if args.assemble:
        chosen = set()
    RESULTS.mkdir(exist_ok=True)
    for name, _, command in BENCHMARKS:
        if name in chosen:
            run(name, command)
    (HERE / "RESULTS.md").write_text(assemble())
    print(f"wrote {HERE / 'RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
