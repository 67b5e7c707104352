"""Trains pyg-edge's demo model: a small GPT-Neo that speaks in Pygmalion's chat format.

    pip install -e '.[dev]' && OMP_NUM_THREADS=1 python models/demo/train_demo.py  # 50 min

Reproducible: fixed seeds, fixed data order, one thread; the schedule follows a time budget
(--minutes), so the step count depends on the machine: --minutes 0 --steps N fixes it.
Reads the dialogue in ../shared/data/text (demo_corpus.py: Shakespeare's plays, public
domain; chatterbot-corpus 1.3.3, BSD-3-Clause) formatted as Pygmalion prompts, trains with
torch + transformers (dev tools only) and writes a Hugging Face checkpoint to
pyg_edge/demo_data/pyg-demo-neo/ (shipped in the package) plus the held-out text for the
quality report.

Held out, never trained on: heldout.txt (the first demo's split, kept so perplexities stay
comparable) and heldout-v2.txt (every 20th conversation of each source, split before the
chatterbot conversations are repeated, so no copy of them is trained on either).
"""

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from demo_corpus import build_texts
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from pyg_edge_convert.safetensors_file import write_safetensors
from pyg_edge_convert.tokenizer_files import load_tokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TOKENIZER = ROOT / "models" / "gpt2-tokenizer"
OUT = ROOT / "pyg_edge" / "demo_data" / "pyg-demo-neo"
HELD_OUT = HERE / "heldout-v2.txt"
EOS = 50256
VOCAB = 50257
SEQUENCE = 512


def model_config(hidden: int, layers: int, heads: int, vocab: int, dropout: float) -> dict:
    """GPT-Neo with alternating global and local layers, like Pygmalion's."""
    return dict(
        embed_dropout=dropout, attention_dropout=dropout, resid_dropout=dropout,
        vocab_size=vocab, max_position_embeddings=SEQUENCE, hidden_size=hidden,
        num_layers=layers, num_heads=heads, attention_types=[[["global", "local"], layers // 2]],
        window_size=64, intermediate_size=4 * hidden, activation_function="gelu_new",
        bos_token_id=EOS, eos_token_id=EOS, tie_word_embeddings=True,
    )


def token_stream(tokenizer, texts: list) -> np.ndarray:
    ids = []
    for text in texts:
        ids += tokenizer.encode(text).ids + [EOS]
    return np.array(ids, dtype=np.int64)


class CompactVocabulary:
    """Trains over the tokens the data uses, plus one row that all other tokens share.

    Most of GPT-2's 50,257 tokens never occur in this data, yet the output layer over all of
    them is most of a small model's compute. Training on the ~12,000 used tokens plus one
    shared "unused" row, whose logit is raised by log(number of unused tokens), is exactly
    training the full-vocabulary model in which every unused token has that row as its
    embedding: the softmax is the same. Saving expands it back, so the checkpoint is an
    ordinary GPT-Neo with GPT-2's vocabulary; about 4x faster per step on this CPU.
    """

    def __init__(self, data: np.ndarray):
        self.used = np.unique(data)
        self.compact = np.full(VOCAB, len(self.used), dtype=np.int64)
        self.compact[self.used] = np.arange(len(self.used))
        self.size = len(self.used) + 1
        self.bias = torch.zeros(self.size)
        self.bias[-1] = math.log(VOCAB - len(self.used))

    def expand(self, embedding: np.ndarray) -> np.ndarray:
        """The full [50257, hidden] embedding from the compact one."""
        full = np.repeat(embedding[-1:], VOCAB, axis=0)
        full[self.used] = embedding[:-1]
        return full


def loss_of(model, batch: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    hidden = model.transformer(batch).last_hidden_state[:, :-1]
    logits = hidden @ model.transformer.wte.weight.T + bias
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def train(model, windows: torch.Tensor, bias: torch.Tensor, args) -> int:
    """AdamW, warmup then cosine; returns the steps run.

    The schedule follows whichever is further along, steps or the time budget, so a busy
    machine ends the run on time with the learning rate annealed.
    """
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                                  betas=(0.9, 0.95))
    print(f"{len(windows)} windows of {SEQUENCE} tokens, {args.steps} steps of {args.batch}")
    model.train()
    started, step = time.monotonic(), 0
    while True:
        elapsed = time.monotonic() - started
        progress = max(step / args.steps, elapsed / (args.minutes * 60) if args.minutes else 0)
        if progress >= 1:
            return step
        warmup = min(1.0, (step + 1) / 20)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup * 0.5 * (1 + math.cos(math.pi * progress))
        rows = torch.randint(len(windows), (args.batch,), generator=generator)
        # float32: bfloat16 autocast is ~8x slower on this CPU (no native bf16).
        loss = loss_of(model, windows[rows], bias)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}  lr {group['lr']:.2e}  "
                  f"{elapsed:.0f} s", flush=True)
        step += 1


def save(model, vocabulary: CompactVocabulary, config: dict, held_out: list, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()
             if k != "lm_head.weight" and not k.endswith(("attention.bias", "masked_bias"))}
    state["transformer.wte.weight"] = vocabulary.expand(state["transformer.wte.weight"])
    state = {k: v.astype(np.float16) for k, v in state.items()}
    write_safetensors(str(out / "model.safetensors"), state)
    config = {**GPTNeoConfig(**config).to_dict(), "torch_dtype": "float16",
              "architectures": ["GPTNeoForCausalLM"]}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # A real copy, not a link: it ships in the package (and links break on Windows).
    shutil.copyfile(TOKENIZER / "tokenizer.json", out / "tokenizer.json")
    HELD_OUT.write_text("\n\n".join(held_out) + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100000)
    parser.add_argument("--minutes", type=float, default=50, help="time budget (0: none)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="on embeddings, attention and residuals (against memorising)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--vary-prompts", action=argparse.BooleanOptionalAction, default=False,
                        help="vary persona wording, example dialogue and greeting per sample")
    parser.add_argument("--out", type=Path, default=OUT, help="checkpoint folder")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the machine is shared; one thread keeps runs comparable
    training, held_out = build_texts(args.seed, args.vary_prompts)
    tokenizer = load_tokenizer(str(TOKENIZER), (EOS,))
    data = token_stream(tokenizer, training)
    print(f"{len(training)} training samples, {len(data)} tokens; {len(held_out)} held out")
    vocabulary = CompactVocabulary(data)
    config = model_config(args.hidden, args.layers, args.heads, VOCAB, args.dropout)
    model = GPTNeoForCausalLM(GPTNeoConfig(**{**config, "vocab_size": vocabulary.size}))
    windows = torch.from_numpy(vocabulary.compact[data[: len(data) // SEQUENCE * SEQUENCE]]
                               .reshape(-1, SEQUENCE))
    started = time.monotonic()
    steps = train(model, windows, vocabulary.bias, args)
    print(f"trained {steps} steps in {(time.monotonic() - started) / 60:.1f} min")
    model.eval()
    save(model, vocabulary, config, held_out, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
