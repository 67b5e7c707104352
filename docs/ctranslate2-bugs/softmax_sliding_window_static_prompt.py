"""CTranslate2: the CPU softmax reads and writes past its row after a static_prompt longer
than a layer's sliding_window (heap corruption).

With a per-layer `self_attention/sliding_window` W, a prompt pass longer than W keeps only
the last W keys and values in the cache (attention.cc, `prefilling`). The next pass (the
prompt after a static_prompt, or its first decoding step) then attends to W + n cached
keys, but its length mask still counts every position since the start, up to S + n. The
CPU softmax (src/cpu/kernels.cc) uses `size = lengths[i]` unclamped, so it runs S - W
floats past the end of each score row, into the next rows and past the buffer's end.

This builds a random 2-layer decoder with a per-layer sliding window of 4 (numpy and
ctranslate2.specs only) and runs generate_batch with a 40-token static prompt and 5 more
tokens in a child process, so a crash (a segmentation fault on 4.8.5 on x86-64 Linux)
ends the child, not this script. The child also checks that a batch of two copies of the
prompt gives the one-copy result twice: the overflow reads the next row's scores, so
without a crash the results differ. Exits 1 when the bug shows, 0 when fixed.

    pip install ctranslate2 numpy && python softmax_sliding_window_static_prompt.py
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

VOCAB, DIM, HEADS, FFN, LAYERS, WINDOW = 32, 16, 2, 32, 2, 4
STATIC, DYNAMIC = 40, 5


def build(folder: str) -> None:
    from ctranslate2.specs import transformer_spec

    rng = np.random.default_rng(0)

    def rand(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    decoder = transformer_spec.TransformerDecoderSpec(
        LAYERS, HEADS, pre_norm=True, with_encoder_attention=False, sliding_window=WINDOW)
    decoder.sliding_window = np.int32(0)  # only the per-layer window (no prompt chunks)
    decoder.scale_embeddings = False
    decoder.embeddings.weight = rand(VOCAB, DIM, scale=1.0)
    decoder.position_encodings.encodings = rand(256, DIM)
    decoder.layer_norm.gamma, decoder.layer_norm.beta = np.ones(DIM, np.float32), rand(DIM)
    decoder.projection.weight, decoder.projection.bias = rand(VOCAB, DIM), rand(VOCAB)
    for layer in decoder.layer:
        attention, ffn = layer.self_attention, layer.ffn
        attention.layer_norm.gamma = np.ones(DIM, np.float32)
        attention.layer_norm.beta = rand(DIM)
        attention.linear[0].weight, attention.linear[0].bias = rand(3 * DIM, DIM), rand(3 * DIM)
        attention.linear[1].weight, attention.linear[1].bias = rand(DIM, DIM), rand(DIM)
        ffn.layer_norm.gamma, ffn.layer_norm.beta = np.ones(DIM, np.float32), rand(DIM)
        ffn.linear_0.weight, ffn.linear_0.bias = rand(FFN, DIM), rand(FFN)
        ffn.linear_1.weight, ffn.linear_1.bias = rand(DIM, FFN), rand(DIM)
    spec = transformer_spec.TransformerDecoderModelSpec(decoder)
    spec.register_vocabulary([f"t{i}" for i in range(VOCAB)])
    spec.validate()
    spec.save(folder)


def child(folder: str, static: int) -> None:
    """Generates from the static + dynamic prompt alone, then twice in one batch."""
    import ctranslate2

    model = ctranslate2.Generator(folder, device="cpu", compute_type="float32")
    ids = np.random.default_rng(1).integers(0, VOCAB, static + DYNAMIC)
    tokens = [f"t{i}" for i in ids]
    rows = []
    for batch in (1, 2):
        results = model.generate_batch(
            [tokens[static:]] * batch, static_prompt=tokens[:static],
            cache_static_prompt=False, max_length=2, return_logits_vocab=True,
            include_prompt_in_result=False)
        rows += [np.array(result.logits[0]) for result in results]
    error = max(float(np.abs(row - rows[0]).max()) for row in rows)
    print(f"max |diff| between the three copies: {error:.2e}")
    sys.exit(0 if error < 1e-4 else 3)


def main() -> int:
    import ctranslate2

    print(f"ctranslate2 {ctranslate2.__version__}: sliding_window {WINDOW}, "
          f"static_prompt of {STATIC} tokens, {DYNAMIC} more")
    with tempfile.TemporaryDirectory() as folder:
        build(folder)
        for static in (WINDOW, STATIC):  # the first, a static prompt within the window
            run = run_child(folder, static)
    if run.returncode == 0:
        print("OK")
        return 0
    reason = (f"died of signal {-run.returncode}" if run.returncode < 0
              else "gave different results for copies of one prompt")
    print(f"BUG: the child {reason}: the softmax ran past its row")
    return 1


def run_child(folder: str, static: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, __file__, "--child", folder, str(static)],
                         env=env, capture_output=True, text=True, timeout=300)
    output = (run.stdout + run.stderr).strip()
    print(f"static_prompt of {static}: child exit status {run.returncode}"
          + (f": {output[-300:]}" if output else ""))
    return run


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    sys.exit(main())
