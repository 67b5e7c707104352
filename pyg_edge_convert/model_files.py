"""The files of a CTranslate2 model folder that hold the model: model.bin and config.json."""

import numpy as np

from pyg_edge_convert import gpt_neo
from pyg_edge_convert.ct2_model_file import ModelBinWriter
from pyg_edge_convert.tensors import float32_to_bfloat16_bits, quantize_int8_rows

# Each quantization, and the type its other (non-matrix) floats are stored in.
FLOAT_TYPE_OF = {
    "int8": "float32",
    "int8_float16": "float16",
    "int8_bfloat16": "bfloat16",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float32": "float32",
}
QUANTIZATIONS = tuple(FLOAT_TYPE_OF)
# CTranslate2's TransformerDecoderModelSpec, whose layout the written model.bin follows.
SPEC_NAME, SPEC_REVISION = "TransformerDecoderSpec", 8


def write_model_bin(target, config: gpt_neo.GptNeoConfig, get: gpt_neo.Getter,
                    quantization: str, exact: bool = True, prefill_chunk: int = 0,
                    progress=None) -> None:
    """Writes model.bin, one layer's tensors in memory at a time.

    Args:
      target: A path, or a seekable binary file (pyg_edge.cpu.path_check builds its
        model in memory).
      config: The checkpoint's config.
      get: get(name, shape) -> float32 tensor (gpt_neo.tensor_getter).
      quantization: One of QUANTIZATIONS.
      exact, prefill_chunk: As convert_checkpoint's exact_local_attention and prefill_chunk.
      progress: Called as progress(steps_done, steps) when given.
    """
    steps = gpt_neo.conversion_steps(config, get, exact)
    with ModelBinWriter(target, SPEC_NAME, SPEC_REVISION) as out:
        for name, value in gpt_neo.decoder_scalars(config, exact, prefill_chunk):
            out.add(name, value)
        for done, step in enumerate(steps, start=1):
            for name, value, is_weight in step():
                _add_converted(out, name, value, is_weight, quantization)
            if progress:
                progress(done, len(steps))
        if config.tie_word_embeddings:
            out.alias("decoder/projection/weight", "decoder/embeddings/weight")


def ct2_config(config: gpt_neo.GptNeoConfig, tokens: list) -> dict:
    """config.json, which ctranslate2.Generator reads beside model.bin."""
    return {
        "bos_token": tokens[config.bos_token_id],
        "eos_token": tokens[config.eos_token_id],
        "unk_token": tokens[config.eos_token_id],
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "multi_query_attention": False,
    }


def _add_converted(out: ModelBinWriter, name: str, value, is_weight: bool, quantization: str):
    """Writes one float32 variable in the target type, as CTranslate2's own spec would."""
    if is_weight and quantization.startswith("int8"):
        quantized, scale = quantize_int8_rows(value)
        out.add(name, quantized)
        out.add(f"{name}_scale", scale)
        return
    float_type = FLOAT_TYPE_OF[quantization]
    if float_type == "bfloat16":
        out.add(name, float32_to_bfloat16_bits(value), "bfloat16")
    else:
        out.add(name, value.astype(np.dtype(float_type), copy=False))
