"""How much each quantization, and inexact local attention, costs the demo model in quality.

    python benchmarks/quality_report.py

On the held-out dialogue of the demo model (models/demo/heldout.txt, never trained on):
perplexity for every quantization the converter offers (CPU computes 16-bit weights in
float32 and int8 weights in int8), and for CTranslate2's own sliding window, which is not
exact for a prompt read in one pass. Then, on held-out prompts several times longer than
the window, how many greedy tokens the inexact model gets right before it diverges from
the exact one. The baseline, computed in the same run, is the exact float32 model.
"""

import json
import math
import statistics
import tempfile
from pathlib import Path

import ctranslate2

from machine import describe_machine
from pyg_edge.tokenizer import TextTokenizer
from pyg_edge_convert import QUANTIZATIONS, convert_checkpoint

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "models" / "demo"
CHECKPOINT = ROOT / "pyg_edge" / "demo_data" / "pyg-demo-neo"
COMPUTE = {"float32": "float32", "float16": "float32", "bfloat16": "float32"}


def held_out_texts() -> list:
    return [t for t in (DEMO / "heldout.txt").read_text(encoding="utf-8").split("\n\n") if t]


def perplexity(model, tokenizer, texts: list, eos: int, context: int) -> float:
    """exp(mean negative log-likelihood per token), each text read in one pass."""
    batches = [tokenizer.tokens([eos] + tokenizer.encode(t)[: context - 1]) for t in texts]
    total, count = 0.0, 0
    for result in model.score_batch(batches, max_batch_size=8):
        total -= sum(result.log_probs)
        count += len(result.log_probs)
    return math.exp(total / count)


def greedy_agreement(exact, inexact, tokenizer, texts, prompt_tokens, new_tokens) -> list:
    """For each long text: greedy tokens the inexact model matches before it diverges."""
    runs = []
    for text in texts:
        ids = tokenizer.encode(text)
        if len(ids) < prompt_tokens:
            continue
        prompt = tokenizer.tokens(ids[:prompt_tokens])
        outputs = [m.generate_batch([prompt], max_length=new_tokens, min_length=new_tokens,
                                    sampling_topk=1, include_prompt_in_result=False)
                   [0].sequences_ids[0] for m in (exact, inexact)]
        pairs = enumerate(zip(*outputs, strict=True))
        same = next((i for i, (a, b) in pairs if a != b), new_tokens)
        runs.append(same)
    return runs


def main():
    texts = held_out_texts()
    print(f"machine: {describe_machine()}")
    with tempfile.TemporaryDirectory() as work:
        folders = {}
        for quantization in QUANTIZATIONS:
            folders[quantization] = Path(work) / quantization
            convert_checkpoint(str(CHECKPOINT), str(folders[quantization]),
                               quantization)
        folders["inexact"] = Path(work) / "inexact"
        convert_checkpoint(str(CHECKPOINT), str(folders["inexact"]), "float32",
                           exact_local_attention=False)
        tokenizer = TextTokenizer.from_model_folder(str(folders["float32"]))
        metadata = json.loads((folders["float32"] / "pyg_edge.json").read_text())
        eos, context, window = (metadata["eos_token_id"], metadata["context_length"],
                                metadata["window_size"])
        lengths = [len(tokenizer.encode(t)) + 1 for t in texts]
        print(f"settings: {len(texts)} held-out dialogues, {sum(lengths)} tokens "
              f"(median {statistics.median(lengths):.0f}, window {window}, context {context}), "
              "CPU, one pass per text\n")
        print("| weights | compute | local attention | perplexity | vs exact float32 |")
        print("| --- | --- | --- | --- | --- |")
        models, baseline = {}, None
        for name in ["float32", *[q for q in QUANTIZATIONS if q != "float32"], "inexact"]:
            quantization = "float32" if name == "inexact" else name
            compute = COMPUTE.get(quantization, "int8")
            models[name] = ctranslate2.Generator(str(folders[name]), compute_type=compute)
            ppl = perplexity(models[name], tokenizer, texts, eos, context)
            baseline = baseline or ppl
            attention = "CTranslate2 sliding window (inexact)" if name == "inexact" else "exact"
            print(f"| {quantization} | {compute} | {attention} | {ppl:.3f} | "
                  f"{ppl / baseline:.4f}x |")
        prompt_tokens, new_tokens = 3 * window, 64
        runs = greedy_agreement(models["float32"], models["inexact"], tokenizer, texts,
                                prompt_tokens, new_tokens)
        diverged = [r for r in runs if r < new_tokens]
        print(f"\nGreedy decoding from {len(runs)} held-out prompts of {prompt_tokens} tokens "
              f"({prompt_tokens // window}x the window), {new_tokens} new tokens: the inexact "
              f"model diverges from the exact one in {len(diverged)} of {len(runs)}, after a "
              f"median of {statistics.median(runs) if runs else 0:.0f} tokens "
              f"(min {min(runs, default=0)}).")


if __name__ == "__main__":
    main()
