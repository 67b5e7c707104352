"""How far each quantization strays from transformers on the tiny reference checkpoints.

    python benchmarks/int8_agreement.py

For every checkpoint in tests/fixtures and every quantization, converts it, runs the
reference prompt (several times the local-attention window) through ctranslate2 in one
pass, and compares with transformers' float32 logits stored by make_reference.py: the
share of positions whose top-1 token agrees, and the largest logit difference. The
float32 row is the baseline: it must agree everywhere.
"""

import json
import tempfile
from pathlib import Path

import numpy as np

from machine import describe_machine
from pyg_edge.scoring import scoring_generator
from pyg_edge_convert import QUANTIZATIONS, convert_checkpoint

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
# CPU compute types: 16-bit float weights are widened to float32, int8_* run as int8.
COMPUTE_TYPE = {"float32": "float32", "float16": "float32", "bfloat16": "float32"}


def main():
    print(f"machine: {describe_machine()}")
    print("settings: one-pass prompt, CPU, top-1 agreement with transformers float32 "
          "[max |logit diff|]\n")
    names = sorted(p.name for p in (FIXTURES / "checkpoints").iterdir())
    order = ["float32"] + [q for q in QUANTIZATIONS if q != "float32"]
    print("| checkpoint | prompt / window | " + " | ".join(order) + " |")
    print("| --- | --- |" + " --- |" * len(order))
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            with np.load(FIXTURES / f"reference_{name}.npz") as data:
                prompt, expected = data["prompt"].tolist(), data["logits"]
            cells = []
            for quantization in order:
                dest = Path(work) / f"{name}-{quantization}"
                convert_checkpoint(str(FIXTURES / "checkpoints" / name), str(dest), quantization)
                compute_type = COMPUTE_TYPE.get(quantization, "int8")
                model = scoring_generator(dest, compute_type=compute_type)
                logits = np.array(model.forward_batch([prompt]))[0]
                agree = (logits.argmax(-1) == expected.argmax(-1)).mean()
                cells.append(f"{agree:.1%} [{np.abs(logits - expected).max():.1e}]")
            window = json.loads((dest / "pyg_edge.json").read_text())["window_size"]
            print(f"| {name} | {len(prompt)} / {window} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
