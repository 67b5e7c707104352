"""The engines bench_runtime.py compares, each answering run(ids, new_tokens) the same way.

run() returns (prompt tokens, first token s, total s, new tokens) of one greedy generation
that produces exactly new_tokens tokens (end token suppressed).
"""

import os
import time
from pathlib import Path

WORK = Path(__file__).parent / "work"
CHECKPOINT = WORK / "neo27-st"
OPENVINO_FOLDER = WORK / "neo27-ov-int8"
ENGINES = {
    "pyg-edge": "pyg-edge int8, exact, one-pass prompt (--prefill-chunk 0)",
    "pyg-edge-onednn": "pyg-edge int8, exact, one-pass prompt, oneDNN GEMM (before)",
    "pyg-edge-chunked": "pyg-edge int8, exact, prefill chunk 1024 (the default)",
    "ct2-plain": "CTranslate2 int8, plain prefill (inexact)",
    "hf-fp32": "transformers fp32",
    "hf-bf16": "transformers bf16",
    "hf-int8": "transformers + torch dynamic int8",
    "openvino-int8": "OpenVINO int8 weights (optimum-intel)",
}


class PygEdgeEngine:
    def __init__(self, folder: Path):
        from pyg_edge.gemm_backend import current_choice
        from pyg_edge.model import PygModel
        from pyg_edge.sampling import SamplingOptions

        self.model = PygModel(folder, device="cpu")
        self.options = SamplingOptions(top_k=1, repetition_penalty=1.0, banned=())
        self.backend = current_choice().backend

    def run(self, ids: list, new_tokens: int) -> tuple:
        text = self.model.tokenizer.decode(ids)
        for _ in self.model.stream(text, self.options, max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens):
            pass
        stats = self.model.last_generation
        return stats.prompt_tokens, stats.first_token_seconds, stats.seconds, stats.new_tokens


class _Clock:
    """A transformers streamer: put() is called with the prompt, then once per new token."""

    def __init__(self):
        self.times = []

    def put(self, _):
        self.times.append(time.monotonic())

    def end(self):
        pass


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
        self.backend = kind

    def run(self, ids: list, new_tokens: int) -> tuple:
        clock = _Clock()
        started = time.monotonic()
        with self.torch.inference_mode():
            out = self.model.generate(self.torch.tensor([ids]), max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False,
                                      streamer=clock, pad_token_id=0)
        total = time.monotonic() - started
        return len(ids), clock.times[1] - started, total, out.shape[1] - len(ids)


class OpenVinoEngine:
    """optimum-intel's OVModelForCausalLM on the folder `optimum-cli export openvino
    --weight-format int8` wrote (ensure_openvino_model), as its documentation shows."""

    def __init__(self):
        import torch
        from optimum.intel import OVModelForCausalLM

        self.model = OVModelForCausalLM.from_pretrained(OPENVINO_FOLDER, device="CPU")
        self.torch = torch
        self.backend = "openvino"

    def run(self, ids: list, new_tokens: int) -> tuple:
        clock = _Clock()
        started = time.monotonic()
        out = self.model.generate(self.torch.tensor([ids]), max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, streamer=clock,
                                  pad_token_id=0)
        total = time.monotonic() - started
        return len(ids), clock.times[1] - started, total, out.shape[1] - len(ids)


def make_engine(name: str):
    if name == "pyg-edge-onednn":
        os.environ["PYG_EDGE_GEMM"] = "onednn"
    if name == "pyg-edge-chunked":
        return PygEdgeEngine(WORK / "neo27-st-int8-chunk1024")
    if name.startswith("pyg-edge"):
        return PygEdgeEngine(WORK / "neo27-st-int8")
    if name == "ct2-plain":
        return PygEdgeEngine(WORK / "neo27-st-int8-inexact")
    if name == "openvino-int8":
        return OpenVinoEngine()
    return TransformersEngine(name)


def ensure_openvino_model() -> None:
    """Exports the synthetic checkpoint with int8 weights (about 2 minutes, 8 GB)."""
    import subprocess

    if (OPENVINO_FOLDER / "openvino_model.xml").exists():
        return
    subprocess.run(["optimum-cli", "export", "openvino", "-m", str(CHECKPOINT), "--task",
                    "text-generation-with-past", "--weight-format", "int8",
                    str(OPENVINO_FOLDER)], check=True)
