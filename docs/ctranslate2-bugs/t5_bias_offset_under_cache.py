"""CTranslate2: T5 relative_attention_bias uses the wrong query offset for a multi-token
pass with a cache (generate_batch's prompt pass, static_prompt).

dot_product_attention (src/layers/attention.cc) computes the bias with
`query_offset = with_cache ? key_length - 1 : 0`: right for one query (decoding) and for
no cache (forward_batch), wrong when several queries come with a cache. Every query but
the last then gets the last query's relative positions, so the hidden states of the prompt
tokens, hence the next layer's cached keys and values, are wrong.

This builds a random 2-layer decoder with a relative_attention_bias (numpy and
ctranslate2.specs only) and compares the next-token logits of one prompt three ways that
must agree: forward_batch (no cache), generate_batch (prompt pass with a cache) and
generate_batch with a static_prompt. Exits 1 when the bug shows, 0 when it is fixed.

    pip install ctranslate2 numpy && python t5_bias_offset_under_cache.py
"""

import sys
import tempfile

import ctranslate2
import numpy as np
from ctranslate2.specs import transformer_spec

VOCAB, DIM, HEADS, FFN, LAYERS, BUCKETS = 32, 16, 2, 32, 2, 32


def build(folder: str, bias_scale: float = 1.0) -> None:
    rng = np.random.default_rng(0)

    def rand(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    decoder = transformer_spec.TransformerDecoderSpec(
        LAYERS, HEADS, pre_norm=True, relative_attention_bias=True, with_encoder_attention=False)
    decoder.scale_embeddings = False
    decoder.embeddings.weight = rand(VOCAB, DIM, scale=1.0)
    decoder.layer_norm.gamma, decoder.layer_norm.beta = np.ones(DIM, np.float32), rand(DIM)
    decoder.projection.weight, decoder.projection.bias = rand(VOCAB, DIM), rand(VOCAB)
    for layer in decoder.layer:
        attention, ffn = layer.self_attention, layer.ffn
        attention.layer_norm.gamma = np.ones(DIM, np.float32)
        attention.layer_norm.beta = rand(DIM)
        attention.linear[0].weight, attention.linear[0].bias = rand(3 * DIM, DIM), rand(3 * DIM)
        attention.linear[1].weight, attention.linear[1].bias = rand(DIM, DIM), rand(DIM)
        attention.relative_attention_bias = rand(BUCKETS, HEADS, scale=3.0 * bias_scale)
        attention.relative_attention_max_distance = np.int32(128)
        ffn.layer_norm.gamma, ffn.layer_norm.beta = np.ones(DIM, np.float32), rand(DIM)
        ffn.linear_0.weight, ffn.linear_0.bias = rand(FFN, DIM), rand(FFN)
        ffn.linear_1.weight, ffn.linear_1.bias = rand(DIM, FFN), rand(DIM)
    spec = transformer_spec.TransformerDecoderModelSpec(decoder)
    spec.register_vocabulary([f"t{i}" for i in range(VOCAB)])
    spec.validate()
    spec.save(folder)


def next_token_logits(folder: str, prompt: list, static: int) -> dict:
    model = ctranslate2.Generator(folder, device="cpu", compute_type="float32")
    tokens = [f"t{i}" for i in prompt]
    no_cache = np.array(model.forward_batch([prompt]))[0, -1]
    result = model.generate_batch([tokens], max_length=1, return_logits_vocab=True,
                                  include_prompt_in_result=False)
    with_cache = np.array(result[0].logits[0][0])
    result = model.generate_batch([tokens[static:]], static_prompt=tokens[:static],
                                  max_length=1, return_logits_vocab=True,
                                  include_prompt_in_result=False)
    static_prompt = np.array(result[0].logits[0][0])
    return {"generate_batch": with_cache, "static_prompt": static_prompt,
            "forward_batch": no_cache}


def main() -> int:
    prompt = [int(i) for i in np.random.default_rng(1).integers(0, VOCAB, 12)]
    print(f"ctranslate2 {ctranslate2.__version__}")
    wrong = {}
    for label, bias_scale in (("with the bias", 1.0), ("bias all zero (control)", 0.0)):
        with tempfile.TemporaryDirectory() as folder:
            build(folder, bias_scale)
            logits = next_token_logits(folder, prompt, static=5)
        reference = logits.pop("forward_batch")
        for path, value in logits.items():
            error = float(np.abs(value - reference).max())
            print(f"{label}: {path} vs forward_batch: max |diff| = {error:.2e}")
            wrong[label] = wrong.get(label, False) or error > 1e-4
    if wrong["bias all zero (control)"]:
        print("the control differs too: something else is wrong")
        return 2
    broken = wrong["with the bias"]
    print("BUG: a multi-token pass with a cache gets the wrong bias" if broken else "OK")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
