"""The engines bench_runtime.py compares, each answering run(ids, new_tokens) the same way.

run() returns (prompt tokens, first token s, total s, new tokens) of one greedy generation
that produces exactly new_tokens tokens (end token suppressed).
"""

import os
import shutil
import sys
import time
from pathlib import Path

WORK = Path(__file__).parent / "work"
CHECKPOINT = WORK / "neo27-st"
OPENVINO_FOLDER = WORK / "neo27-ov-int8"
ONNX_FOLDER = WORK / "neo27-onnx-fp32"
ONNX_INT8_FOLDER = WORK / "neo27-onnx-int8"
ENGINES = {
    "pyg-edge": "pyg-edge int8, exact, one-pass prompt (--prefill-chunk 0)",
    "pyg-edge-onednn": "pyg-edge int8, exact, one-pass prompt, oneDNN GEMM (before)",
    "pyg-edge-chunked": "pyg-edge int8, exact, prefill chunk 1024 (the default)",
    "pyg-edge-packed": "pyg-edge int8, exact, prefill chunk 1024, oneMKL packed weights "
                       "(mkl-vnni)",
    "ct2-plain": "CTranslate2 int8, plain prefill (inexact)",
    "hf-fp32": "transformers fp32",
    "hf-bf16": "transformers bf16",
    "hf-int8": "transformers + torch dynamic int8",
    "openvino-int8": "OpenVINO int8 weights (optimum-intel)",
    "ort-int8": "ONNX Runtime dynamic int8 (optimum)",
}


class PygEdgeEngine:
    def __init__(self, folder: Path):
        from pyg_edge.cpu.backend_choice import current_choice
        from pyg_edge.generation.model import PygModel
        from pyg_edge.generation.sampling import SamplingOptions

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


class OnnxRuntimeEngine(OpenVinoEngine):
    """optimum's ORTModelForCausalLM on the export quantized by ensure_onnx_int8_model."""

    def __init__(self):
        import torch
        from optimum.onnxruntime import ORTModelForCausalLM

        self.model = ORTModelForCausalLM.from_pretrained(ONNX_INT8_FOLDER,
                                                         file_name="model_quantized.onnx")
        self.torch = torch
        self.backend = "onnxruntime"


def make_engine(name: str):
    if name == "pyg-edge-onednn":
        os.environ["PYG_EDGE_GEMM"] = "onednn"
    if name == "pyg-edge-packed":
        os.environ["PYG_EDGE_GEMM"] = "mkl-vnni"
    if name in ("pyg-edge-chunked", "pyg-edge-packed"):
        return PygEdgeEngine(WORK / "neo27-st-int8-chunk1024")
    if name.startswith("pyg-edge"):
        return PygEdgeEngine(WORK / "neo27-st-int8")
    if name == "ct2-plain":
        return PygEdgeEngine(WORK / "neo27-st-int8-inexact")
    if name == "openvino-int8":
        return OpenVinoEngine()
    if name == "ort-int8":
        return OnnxRuntimeEngine()
    return TransformersEngine(name)


def ensure_openvino_model() -> None:
    """Exports the synthetic checkpoint with int8 weights (about 2 minutes, 8 GB)."""
    import subprocess

    if (OPENVINO_FOLDER / "openvino_model.xml").exists():
        return
    subprocess.run([sys.executable, "-m", "optimum.commands.optimum_cli", "export", "openvino",
                    "-m", str(CHECKPOINT), "--task", "text-generation-with-past",
                    "--weight-format", "int8", str(OPENVINO_FOLDER)], check=True)


def ensure_onnx_int8_model() -> None:
    """Exports the synthetic checkpoint to ONNX (float32), then quantizes its weights to
    int8 with dynamic activations, as optimum's documentation shows (the AVX-512 VNNI
    configuration where the CPU has it, else AVX2). About 10 minutes and 20 GB."""
    import subprocess

    if (ONNX_INT8_FOLDER / "config.json").exists():
        return
    if not (ONNX_FOLDER / "model.onnx").exists():
        subprocess.run([sys.executable, "-m", "optimum.commands.optimum_cli", "export", "onnx",
                        "-m", str(CHECKPOINT), "--task", "text-generation-with-past",
                        str(ONNX_FOLDER)], check=True)
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    with open("/proc/cpuinfo", encoding="utf-8") as f:
        vnni = "avx512_vnni" in f.read()
    config = (AutoQuantizationConfig.avx512_vnni if vnni else AutoQuantizationConfig.avx2)(
        is_static=False, per_channel=False)
    quantizer = ORTQuantizer.from_pretrained(ONNX_FOLDER)
    quantizer.quantize(save_dir=ONNX_INT8_FOLDER, quantization_config=config,
                       use_external_data_format=True)
    for name in ("config.json", "generation_config.json"):  # what from_pretrained reads
        shutil.copy(ONNX_FOLDER / name, ONNX_INT8_FOLDER / name)
