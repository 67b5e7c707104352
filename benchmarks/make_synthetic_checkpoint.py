"""Writes a random checkpoint of the real gpt-neo-2.7B shape, so benchmarks need no download.

    python benchmarks/make_synthetic_checkpoint.py DEST [--format safetensors|bin]

safetensors is written with numpy alone, tensor by tensor; bin (torch zip) needs torch
(the dev extra). Both are fp16 like Pygmalion 2.7B's, with GPT-2's vocab.json and
merges.txt only, like EleutherAI's release, so the converter also builds tokenizer.json.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from pyg_edge_convert.safetensors_file import write_safetensors_streaming

TOKENIZER = Path(__file__).parent.parent / "models" / "gpt2-tokenizer"
CONFIG_2_7B = {
    "model_type": "gpt_neo",
    "architectures": ["GPTNeoForCausalLM"],
    "vocab_size": 50257,
    "max_position_embeddings": 2048,
    "hidden_size": 2560,
    "num_layers": 32,
    "num_heads": 20,
    "attention_types": [[["global", "local"], 16]],
    "window_size": 256,
    "intermediate_size": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "tie_word_embeddings": True,
    "torch_dtype": "float16",
}


def layout(config: dict) -> dict:
    """State-dict key to shape, as GPTNeoForCausalLM names them (lm_head tied, not stored)."""
    h, v, p = config["hidden_size"], config["vocab_size"], config["max_position_embeddings"]
    shapes = {"transformer.wte.weight": (v, h), "transformer.wpe.weight": (p, h)}
    for i in range(config["num_layers"]):
        prefix = f"transformer.h.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{prefix}.attn.attention.{name}.weight"] = (h, h)
        shapes[f"{prefix}.attn.attention.out_proj.bias"] = (h,)
        for norm in ("ln_1", "ln_2"):
            shapes[f"{prefix}.{norm}.weight"] = shapes[f"{prefix}.{norm}.bias"] = (h,)
        shapes[f"{prefix}.mlp.c_fc.weight"] = (4 * h, h)
        shapes[f"{prefix}.mlp.c_fc.bias"] = (4 * h,)
        shapes[f"{prefix}.mlp.c_proj.weight"] = (h, 4 * h)
        shapes[f"{prefix}.mlp.c_proj.bias"] = (h,)
    shapes["transformer.ln_f.weight"] = shapes["transformer.ln_f.bias"] = (h,)
    return shapes


def random_fp16(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)


def write_checkpoint(dest: Path, fmt: str, seed: int = 0) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps(CONFIG_2_7B, indent=2))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TOKENIZER / name, dest / name)
    shapes = layout(CONFIG_2_7B)
    rng = np.random.default_rng(seed)
    if fmt == "safetensors":
        write_safetensors_streaming(
            str(dest / "model.safetensors"),
            {name: ("F16", shape) for name, shape in shapes.items()},
            lambda name: random_fp16(rng, shapes[name]),
        )
    else:
        import torch  # dev extra only: writing the torch zip format needs torch itself

        state = {name: torch.from_numpy(random_fp16(rng, shape)) for name, shape in shapes.items()}
        torch.save(state, dest / "pytorch_model.bin")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--format", choices=("safetensors", "bin"), default="safetensors")
    args = parser.parse_args()
    started = time.monotonic()
    write_checkpoint(args.dest, args.format)
    print(f"wrote {args.dest} ({args.format}, fp16) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
