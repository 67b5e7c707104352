"""A check of the int8 path CTranslate2 will run, at its own level, against numpy.

gemm_selftest proves pyg-edge's extension; nothing proves what CTranslate2 runs where the
extension is not in charge (Windows, macOS, ARM, no C compiler at install, ctranslate2
imported first, oneDNN asked for): on AVX2 CPUs without VNNI its int8 kernels add u8 x s8
pairs in 16 bits and saturate. This check builds a tiny GPT-Neo model in memory, as the
converter writes one, whose int8 products saturate such kernels: its one layer adds
exact zeros, so each position's logits are the final layer norm of its token's embedding
times the output matrix, and the embeddings and output rows include +-1 patterns whose
adjacent pairs (the u8 x s8 pairs those kernels add) reach 255 x 127 twice. It reads
sequences of 1 to 64 tokens (one row as in decoding, a few as with several replies, many as
in a prompt pass) through ctranslate2 in the configuration under test and compares the
logits with numpy:
- int8 compute types: numpy quantizes the activations as CTranslate2 does, so every logit
  times its two scales must be the exact integer product, within a few rounding flips
  (INT_TOLERANCE); a saturated pair alone is 32,003 off.
- other compute types: within FLOAT_TOLERANCE of the float product.

`python -m pyg_edge.cpu.path_check BACKEND COMPUTE_TYPE` runs it in a process of its own with
BACKEND set up as the runtime would (pyg_edge.cpu.gemm_backend.apply_backend) and prints
one JSON line; check() runs it in the calling process (for ctranslate2 imported before
pyg-edge could choose).
"""

import io
import json
import sys

import numpy as np

HIDDEN, VOCAB, INNER, POSITIONS = 256, 512, 512, 128
PATTERN_ROWS = 16  # embedding and output rows that are +-1 patterns
LENGTHS = (1, 3, 8, 9, 64)  # one row, few (the extension's FEW_ROWS is 8), many
INT_TOLERANCE = 1024  # units of the int32 product: eight flips of a full-scale product
FLOAT_TOLERANCE = 0.01  # of the largest logit
EPSILON = 1e-5
SEED = 20261206


def tiny_checkpoint(rng) -> dict:
    """The float32 tensors of a one-layer gpt-neo checkpoint, by state-dict name."""
    h = HIDDEN
    patterns = _pair_patterns(rng, PATTERN_ROWS, h)
    wte = rng.standard_normal((VOCAB, h)).astype(np.float32)
    wte[:PATTERN_ROWS] = patterns
    lm_head = rng.standard_normal((VOCAB, h)).astype(np.float32)
    lm_head[:PATTERN_ROWS] = patterns  # 255 x 127 in every positive pair
    lm_head[PATTERN_ROWS:2 * PATTERN_ROWS] = -patterns  # 255 x -127
    zeros, ones = np.zeros(h, np.float32), np.ones(h, np.float32)
    tensors = {"wte.weight": wte, "wpe.weight": np.zeros((POSITIONS, h), np.float32),
               "ln_f.weight": ones, "ln_f.bias": zeros, "lm_head.weight": lm_head}
    for norm in ("ln_1", "ln_2"):
        tensors[f"h.0.{norm}.weight"], tensors[f"h.0.{norm}.bias"] = ones, zeros
    for part in ("q", "k", "v", "out"):
        tensors[f"h.0.attn.attention.{part}_proj.weight"] = np.zeros((h, h), np.float32)
    tensors["h.0.attn.attention.out_proj.bias"] = zeros
    tensors["h.0.mlp.c_fc.weight"] = np.zeros((INNER, h), np.float32)
    tensors["h.0.mlp.c_fc.bias"] = np.zeros(INNER, np.float32)
    tensors["h.0.mlp.c_proj.weight"] = np.zeros((h, INNER), np.float32)
    tensors["h.0.mlp.c_proj.bias"] = zeros
    return tensors


def _pair_patterns(rng, rows: int, width: int) -> np.ndarray:
    """+-1 rows whose adjacent pairs share a sign, half of the pairs positive (mean 0, so
    the layer norm keeps them +-1)."""
    signs = np.ones((rows, width // 2), np.float32)
    for row in signs:
        row[rng.permutation(width // 2)[: width // 4]] = -1
    return np.repeat(signs, 2, axis=1)


def tiny_model_files(tensors: dict) -> dict:
    """{file name: bytes} of the converted int8 model folder, for ctranslate2's files=."""
    from pyg_edge_convert.gpt_neo import parse_config, tensor_getter
    from pyg_edge_convert.model_files import ct2_config, write_model_bin
    from pyg_edge_convert.tensors import TensorRef

    config = parse_config({
        "model_type": "gpt_neo", "hidden_size": HIDDEN, "num_heads": 4, "vocab_size": VOCAB,
        "max_position_embeddings": POSITIONS, "window_size": POSITIONS, "num_layers": 1,
        "attention_types": [[["global"], 1]], "intermediate_size": INNER,
        "layer_norm_epsilon": EPSILON, "tie_word_embeddings": False,
        "bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1})
    refs = {name: TensorRef(name, value.shape, "F32", lambda v=value: v, "memory")
            for name, value in tensors.items()}
    model_bin = io.BytesIO()
    write_model_bin(model_bin, config, tensor_getter(refs), "int8")
    tokens = [f"t{i}" for i in range(VOCAB)]
    return {"model.bin": model_bin.getvalue(),
            "config.json": json.dumps(ct2_config(config, tokens)).encode(),
            "vocabulary.json": json.dumps(tokens).encode()}


def token_sequence(rng, length: int) -> list:
    """Pattern tokens and ordinary ones, alternating."""
    plain = rng.integers(2 * PATTERN_ROWS, VOCAB - 1, length)
    return [int(i // 2 % PATTERN_ROWS) if i % 2 == 0 else int(plain[i]) for i in range(length)]


def quantized(tensors: dict) -> tuple:
    """The int8 model's embeddings and output matrix as the converter stores them:
    ((int8 rows, scales), (int8 rows, scales))."""
    from pyg_edge_convert.tensors import quantize_int8_rows

    return (quantize_int8_rows(tensors["wte.weight"]),
            quantize_int8_rows(tensors["lm_head.weight"]))


def expected(model: tuple, tokens: list) -> tuple:
    """(activations, output weights as int8, their scales) of tokens: the model's own
    numbers, from quantized(...)."""
    (embeddings, scales), (weights, weight_scales) = model
    hidden = (embeddings[tokens].astype(np.float32) / scales[tokens, None]).astype(np.float64)
    centered = hidden - hidden.mean(axis=1, keepdims=True)
    activations = centered / np.sqrt((centered ** 2).mean(axis=1, keepdims=True) + EPSILON)
    return activations, weights, weight_scales


def worst_error(logits: np.ndarray, activations, weights, weight_scales,
                compute_type: str) -> float:
    """How far logits are from the model's numbers, as a fraction of the tolerance."""
    if compute_type.startswith("int8"):
        act_scales = 127.0 / np.abs(activations).max(axis=1)
        quantized = np.rint(activations * act_scales[:, None])
        exact = quantized @ weights.astype(np.float64).T  # float64 holds these sums exactly
        got = logits * act_scales[:, None] * weight_scales[None, :].astype(np.float64)
        return float(np.abs(got - exact).max() / INT_TOLERANCE)
    reference = activations @ (weights / weight_scales[:, None]).astype(np.float64).T
    return float(np.abs(logits - reference).max() / (FLOAT_TOLERANCE * np.abs(reference).max()))


def check(ctranslate2, compute_type: str, device: str = "cpu") -> dict:
    """Runs the tiny model through ctranslate2 as it is configured in this process.

    Returns:
      {"ok": bool, "compute_type", "worst": the largest error as a fraction of the
      tolerance, "detail": one line}.
    """
    if compute_type not in ctranslate2.get_supported_compute_types(device):
        return {"ok": False, "compute_type": compute_type, "worst": None,
                "detail": f"this ctranslate2 has no {compute_type} on {device}"}
    rng = np.random.default_rng(SEED)
    tensors = tiny_checkpoint(rng)
    generator = ctranslate2.Generator("pyg-edge-path-check", device=device,
                                      compute_type=compute_type, intra_threads=0,
                                      files=tiny_model_files(tensors))
    model = quantized(tensors)
    worst, where = 0.0, None
    for length in LENGTHS:
        ids = token_sequence(rng, length)
        logits = np.array(generator.forward_batch([[f"t{i}" for i in ids]]))[0]
        error = worst_error(logits.astype(np.float64), *expected(model, ids), compute_type)
        error = error if np.isfinite(error) else float("inf")  # NaN must fail, not pass
        if error > worst:
            worst, where = error, length
    del generator
    ok = worst <= 1.0
    detail = (f"{compute_type} logits within tolerance at 1 to {LENGTHS[-1]} tokens" if ok else
              f"{compute_type} logits off by {worst:,.0f}x the tolerance at {where} token(s)"
              + (", as saturating int8 kernels do" if compute_type.startswith("int8") else ""))
    return {"ok": ok, "compute_type": compute_type, "worst": min(round(worst, 4), 1e30),
            "detail": detail}


def main(backend: str, compute_type: str) -> dict:
    from pyg_edge.cpu import gemm_backend

    gemm_backend.apply_backend(backend)
    import ctranslate2

    return check(ctranslate2, compute_type)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
