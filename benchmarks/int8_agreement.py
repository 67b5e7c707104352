"""How far each quantization strays from transformers on the tiny reference checkpoints.

    python benchmarks/int8_agreement.py [--gemm onednn,auto]

For every checkpoint in tests/fixtures and every quantization, converts it, runs the
reference prompt (several times the local-attention window) through ctranslate2 in one
pass, and compares with transformers' float32 logits stored by make_reference.py: the
share of positions whose top-1 token agrees, and the largest logit difference. The
float32 row is the baseline: it must agree everywhere. The trained demo model adds a row
of its own int8 against its float32 on real text. Each GEMM backend (pyg_edge.cpu.gemm_backend)
runs in a process of its own, since CTranslate2 fixes it when it loads.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_common import describe_machine
from pyg_edge.cpu import backend_choice
from pyg_edge_convert import QUANTIZATIONS, convert_checkpoint
from scoring import scoring_generator

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
TEXT = Path(__file__).parent.parent / "README.md"  # English, as the demo was trained on
# CPU compute types: 16-bit float weights are widened to float32, int8_* run as int8.
COMPUTE_TYPE = {"float32": "float32", "float16": "float32", "bfloat16": "float32"}


def logits(ctranslate2, folder: Path, compute_type: str, prompt) -> np.ndarray:
    model = scoring_generator(folder, ctranslate2, device="cpu", compute_type=compute_type)
    return np.array(model.forward_batch([prompt]))[0]


def cell(found: np.ndarray, expected: np.ndarray) -> str:
    agree = (found.argmax(-1) == expected.argmax(-1)).mean()
    return f"{agree:.1%} [{np.abs(found - expected).max():.1e}]"


def fixture_rows(ctranslate2, work: Path, order: list) -> list:
    rows = []
    for name in sorted(p.name for p in (FIXTURES / "checkpoints").iterdir()):
        with np.load(FIXTURES / f"reference_{name}.npz") as data:
            prompt, expected = data["prompt"].tolist(), data["logits"]
        cells = []
        for quantization in order:
            dest = work / f"{name}-{quantization}"
            if not dest.exists():
                convert_checkpoint(str(FIXTURES / "checkpoints" / name), str(dest), quantization)
            compute_type = COMPUTE_TYPE.get(quantization, "int8")
            cells.append(cell(logits(ctranslate2, dest, compute_type, prompt), expected))
        window = json.loads((dest / "pyg_edge.json").read_text())["window_size"]
        rows.append(f"| {name} | {len(prompt)} / {window} | " + " | ".join(cells) + " |")
    return rows


def demo_row(ctranslate2, work: Path) -> str:
    from pyg_edge import demo
    from pyg_edge.generation.tokenizer import TextTokenizer

    int8_folder = demo.demo_model()
    tokenizer = TextTokenizer.from_model_folder(str(int8_folder))
    prompt = tokenizer.tokens(tokenizer.encode(TEXT.read_text(encoding="utf-8"))[:400])
    f32 = work / "demo-float32"
    if not f32.exists():
        convert_checkpoint(str(demo.DEMO_CHECKPOINT), str(f32), "float32")
    expected = logits(ctranslate2, f32, "float32", prompt)
    return (f"| demo model (trained), int8 against its own float32 | {len(prompt)} tokens | "
            + cell(logits(ctranslate2, int8_folder, "int8", prompt), expected) + " |")


def child(gemm: str, work: Path) -> None:
    ctranslate2 = backend_choice.load_ctranslate2(gemm)
    choice = backend_choice.current_choice()
    order = ["float32"] + [q for q in QUANTIZATIONS if q != "float32"]
    print(f"### GEMM backend {choice.backend} (asked: {gemm}; {choice.reason})\n")
    print("| checkpoint | prompt / window | " + " | ".join(order) + " |")
    print("| --- | --- |" + " --- |" * len(order))
    print("\n".join(fixture_rows(ctranslate2, work, order)))
    print(demo_row(ctranslate2, work) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemm", default="onednn,auto", help="comma-separated backends")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work)
        return
    print(f"machine: {describe_machine()}")
    print("settings: one-pass prompt, CPU, top-1 agreement with transformers float32 "
          "[max |logit diff|]\n")
    with tempfile.TemporaryDirectory() as work:
        for gemm in args.gemm.split(","):
            done = subprocess.run([sys.executable, __file__, "--child", gemm, "--work", work],
                                  stdout=subprocess.PIPE, text=True)
            print(done.stdout if done.returncode == 0 else f"{gemm}: failed\n")


if __name__ == "__main__":
    main()
