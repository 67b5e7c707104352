"""Running converted models through ctranslate2 alone, for the exactness checks (in this
process and in child processes that choose another GEMM backend)."""

import json

import ctranslate2
import numpy as np

from scoring import scoring_generator


def generator(folder, compute_type="float32"):
    return ctranslate2.Generator(str(folder), device="cpu", compute_type=compute_type)


def scorer(folder, compute_type="float32"):
    """A generator whose forward_batch reads past a prefill chunk (a no-op without one)."""
    return scoring_generator(folder, ctranslate2, device="cpu", compute_type=compute_type)


def one_pass_logits(model, prompt):
    return np.array(model.forward_batch([list(prompt)]))[0]


def greedy(model, folder, prompt, length):
    vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    result = model.generate_batch(
        [[vocabulary[i] for i in prompt]],
        max_length=length,
        min_length=length,  # like the reference, which bans <|endoftext|>
        sampling_topk=1,
        include_prompt_in_result=False,  # the whole prompt in one pass, then cached decode
    )
    return result[0].sequences_ids[0]
