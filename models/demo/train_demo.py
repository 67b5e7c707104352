"""Trains pyg-edge's demo model: a small GPT-Neo that speaks in Pygmalion's chat format.

    pip install -e '.[dev]' && python models/demo/train_demo.py     # ~35 min on 1 core

Reproducible: fixed seeds, fixed data order, one thread. Reads the dialogue in
../shared/data/text (Shakespeare's plays, public domain; chatterbot-corpus 1.3.3,
BSD-3-Clause), formats it as Pygmalion prompts (persona, <START>, "You:" and character
turns), trains with torch + transformers (dev tools only) and writes a Hugging Face
checkpoint to pyg_edge/demo_data/pyg-demo-neo/ (shipped in the package) plus the held-out
text for the quality report.

Held out, never trained on: heldout.txt (the first demo's split, kept so perplexities stay
comparable) and heldout-v2.txt (every 20th conversation of each source, split before the
chatterbot conversations are repeated, so no copy of them is trained on either).
"""

import argparse
import json
import math
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from pyg_edge_convert.safetensors_file import write_safetensors
from pyg_edge_convert.tokenizer_files import load_tokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEXT = ROOT.parent / "shared" / "data" / "text"
TOKENIZER = ROOT / "models" / "gpt2-tokenizer"
OUT = ROOT / "pyg_edge" / "demo_data" / "pyg-demo-neo"
OLD_HELD_OUT = HERE / "heldout.txt"
HELD_OUT = HERE / "heldout-v2.txt"
EOS = 50256
VOCAB = 50257
SEQUENCE = 512
BOT = "Robin"
BOT_PERSONA = ("Robin is a friendly, curious companion who enjoys chatting about computers, "
               "food, movies, science, sports, history and how the day is going.")


def model_config(hidden: int, layers: int, heads: int, vocab: int) -> dict:
    """GPT-Neo with alternating global and local layers, like Pygmalion's."""
    return dict(
        vocab_size=vocab, max_position_embeddings=SEQUENCE, hidden_size=hidden,
        num_layers=layers, num_heads=heads, attention_types=[[["global", "local"], layers // 2]],
        window_size=64, intermediate_size=4 * hidden, activation_function="gelu_new",
        bos_token_id=EOS, eos_token_id=EOS, tie_word_embeddings=True,
    )


def chatterbot_samples() -> list:
    """Each YAML conversation as a chat with Robin; the user always speaks first."""
    samples = []
    for path in sorted((TEXT / "chatterbot-english").glob("*.yml")):
        for conversation in _yaml_conversations(path.read_text(encoding="utf-8")):
            turns = [f"{'You' if i % 2 == 0 else BOT}: {line}"
                     for i, line in enumerate(conversation)]
            if len(turns) % 2:
                turns = turns[:-1]
            if turns:
                samples.append(turns)
    return samples


def _yaml_conversations(text: str) -> list:
    """The conversations of a chatterbot-corpus file (lists of '- - first' / '  - next')."""
    conversations, current = [], None
    for line in text.splitlines():
        if line.startswith("- - "):
            current = [_unquote(line[4:])]
            conversations.append(current)
        elif line.startswith("  - ") and current is not None:
            current.append(_unquote(line[4:]))
    return conversations


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return " ".join(value.split())


def shakespeare_samples() -> list:
    """Exchanges where two characters take turns: the first is You, the second answers."""
    speeches = []
    for block in re.split(r"\n\s*\n", (TEXT / "tinyshakespeare.txt").read_text(encoding="utf-8")):
        name, _, speech = block.strip().partition(":\n")
        if speech and re.fullmatch(r"[A-Z][A-Za-z' ]{1,30}", name.strip()):
            speeches.append((name.strip().title(), " ".join(speech.split())))
    samples, start = [], 0
    while start < len(speeches) - 1:
        end = start + 1
        while (end < len(speeches) and speeches[end][0] == speeches[start + (end - start) % 2][0]
               and speeches[start][0] != speeches[start + 1][0] and end - start < 10):
            end += 1
        run = speeches[start:end - (end - start) % 2]  # end on the character's turn
        if len(run) >= 2:
            character = run[1][0]
            turns = [f"{'You' if i % 2 == 0 else character}: {text}"
                     for i, (_, text) in enumerate(run)]
            samples.append((character, turns))
        start = max(end, start + 1)
    return samples


def format_sample(character: str, persona: str, turns: list) -> str:
    """A Pygmalion prompt; it ends with the user's next turn so the model learns to stop."""
    return f"{character}'s Persona: {persona}\n<START>\n" + "\n".join(turns) + "\nYou:"


def build_texts(rng: random.Random) -> tuple:
    """(training, held out): every 20th conversation of each source is held out.

    The chatterbot conversations are repeated three times (the corpus is small next to the
    plays and carries the companion persona) only after the split, and every dialogue of the
    first demo's held-out text is left out of training too.
    """
    # dict.fromkeys: the chatterbot files repeat many conversations (2,025, 896 distinct).
    robin = list(dict.fromkeys(format_sample(BOT, BOT_PERSONA, turns)
                               for turns in chatterbot_samples()))
    plays = list(dict.fromkeys(
        format_sample(name, f"{name} is a character in a play by Shakespeare.", turns)
        for name, turns in shakespeare_samples()))
    old = {text.strip("\n") for text in OLD_HELD_OUT.read_text(encoding="utf-8").split("\n\n")}
    training, held_out = [], []
    for texts, copies in ((robin, 3), (plays, 1)):
        rng.shuffle(texts)
        held_out += texts[::20]
        excluded = old | set(held_out)
        training += [t for t in texts if t not in excluded] * copies
    rng.shuffle(training)
    rng.shuffle(held_out)
    return training, held_out


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


def save(model, vocabulary: CompactVocabulary, config: dict, held_out: list) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()
             if k != "lm_head.weight" and not k.endswith(("attention.bias", "masked_bias"))}
    state["transformer.wte.weight"] = vocabulary.expand(state["transformer.wte.weight"])
    state = {k: v.astype(np.float16) for k, v in state.items()}
    write_safetensors(str(OUT / "model.safetensors"), state)
    config = {**GPTNeoConfig(**config).to_dict(), "torch_dtype": "float16",
              "architectures": ["GPTNeoForCausalLM"]}
    (OUT / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # A real copy, not a link: it ships in the package (and links break on Windows).
    shutil.copyfile(TOKENIZER / "tokenizer.json", OUT / "tokenizer.json")
    HELD_OUT.write_text("\n\n".join(held_out) + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--minutes", type=float, default=34, help="time budget (0: none)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2.5e-3)
    parser.add_argument("--hidden", type=int, default=160)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the machine is shared; one thread keeps runs comparable
    training, held_out = build_texts(random.Random(args.seed))
    tokenizer = load_tokenizer(str(TOKENIZER), (EOS,))
    data = token_stream(tokenizer, training)
    print(f"{len(training)} training samples, {len(data)} tokens; {len(held_out)} held out")
    vocabulary = CompactVocabulary(data)
    config = model_config(args.hidden, args.layers, args.heads, VOCAB)
    model = GPTNeoForCausalLM(GPTNeoConfig(**{**config, "vocab_size": vocabulary.size}))
    windows = torch.from_numpy(vocabulary.compact[data[: len(data) // SEQUENCE * SEQUENCE]]
                               .reshape(-1, SEQUENCE))
    started = time.monotonic()
    steps = train(model, windows, vocabulary.bias, args)
    print(f"trained {steps} steps in {(time.monotonic() - started) / 60:.1f} min")
    save(model, vocabulary, config, held_out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
