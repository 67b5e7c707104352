"""Where the runtime's memory goes on a long prompt: weights, prompt pass, cached prefix.

    python benchmarks/bench_memory.py [--model work/neo27-st-int8-chunk1024] [--tokens 1920]

One process, steps in order, each followed by its RSS (sampled every 20 ms while it runs,
so a step's peak is seen): the model loaded; a --tokens prompt read with a static prefix
of all but its last DYNAMIC tokens (the prefix cached, as a chat turn does); the same
prompt again (the prefix served from the cache, copied into the turn's state); then the
arithmetic of what CTranslate2 keeps per token (float32 keys and values, every layer).
The default model is the synthetic 2.7B checkpoint in its default conversion (prefill
chunk 1,024): random weights, real sizes.
"""

import argparse
import os
import threading
import time
from pathlib import Path

from bench_common import WORK, describe_machine, ensure_model, prompt_text

DYNAMIC = 16  # tokens after the cached prefix: a short user message
GB = 1e9


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The highest RSS seen while the block runs, sampled every 20 ms."""

    def __enter__(self):
        self.peak, self._done = rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def kv_bytes_per_token(metadata: dict) -> int:
    """CTranslate2's float32 keys + values per token: every layer, local ones one wider per head."""
    config = metadata.get("source", {}).get("config", {})
    heads, hidden = config.get("num_heads", 0), config.get("hidden_size", 0)
    if not heads:
        return 0
    extra = {"local": 1, "zero": 1 - hidden // heads}  # head_dim + 1; a "zero" layer's is 1
    return sum(2 * heads * (hidden // heads + extra.get(kind, 0)) * 4
               for kind in metadata["ct2_layers"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=WORK / "neo27-st-int8-chunk1024")
    parser.add_argument("--tokens", type=int, default=1920)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    from pyg_edge.generation.model import PygModel

    folder = ensure_model(args.model) if args.model.parent == WORK else args.model
    print(f"machine: {describe_machine()}")
    before = rss()
    started = time.monotonic()
    with PeakRss() as load:
        model = PygModel(folder, device="cpu", cpu_threads=args.threads)
    print(f"settings: {folder.name}, {model.device} {model.compute_type}, prefill chunk "
          f"{model.prefill_chunk}, context {model.context_length}, {args.tokens}-token prompt, "
          f"static prefix of all but {DYNAMIC}, load {time.monotonic() - started:.1f} s\n")
    tokens = min(args.tokens, model.context_length - 1)
    prompt = prompt_text(model, tokens)
    cut = len(model.tokenizer.encode(prompt)) - DYNAMIC
    rows = [("Python + libraries (before the model)", before, before),
            ("model loaded", load.peak, rss())]
    for label in ("prompt read, its prefix cached", "same prompt, prefix from the cache"):
        with PeakRss() as step:
            model.generate(prompt, max_new_tokens=1, temperature=0, static_tokens=cut)
        rows.append((f"{label} ({model.last_generation.first_token_seconds:.1f} s)",
                     step.peak, rss()))
    print("| step | peak RSS GB | RSS after GB |\n| --- | --- | --- |")
    for label, peak, after in rows:
        print(f"| {label} | {peak / GB:.2f} | {after / GB:.2f} |")
    per_token = kv_bytes_per_token(model.metadata)
    if per_token:
        print(f"\nfloat32 keys + values: {per_token / 1e6:.3f} MB per token, "
              f"{per_token * cut / GB:.2f} GB for the cached {cut}-token prefix, held once in "
              f"the cache and once more in the turn's state while it runs")
    model.close()


if __name__ == "__main__":
    main()
