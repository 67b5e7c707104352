"""Trains pyg-edge's demo model: a small GPT-Neo that speaks in Pygmalion's chat format.

    pip install -e '.[dev]' && python models/demo/train_demo.py     # ~15 min on 2 cores

Reproducible: fixed seeds, fixed data order, one thread count. Reads the dialogue in
../shared/data/text (Shakespeare's plays, public domain; chatterbot-corpus 1.3.3,
BSD-3-Clause), formats it as Pygmalion prompts (persona, <START>, "You:" and character
turns), trains with torch + transformers (dev tools only) and writes a Hugging Face
checkpoint to models/demo/pyg-demo-neo/ plus a held-out text for the quality report.
"""

import argparse
import json
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from pyg_edge_convert.safetensors_file import write_safetensors
from pyg_edge_convert.tokenizer_files import load_tokenizer

HERE = Path(__file__).parent
TEXT = HERE.parent.parent.parent / "shared" / "data" / "text"
TOKENIZER = HERE.parent / "gpt2-tokenizer"
OUT = HERE / "pyg-demo-neo"
EOS = 50256
SEQUENCE = 512
CONFIG = dict(
    vocab_size=50257, max_position_embeddings=SEQUENCE, hidden_size=128, num_layers=4,
    num_heads=4, attention_types=[[["global", "local"], 2]], window_size=64,
    intermediate_size=512, activation_function="gelu_new", bos_token_id=EOS,
    eos_token_id=EOS, tie_word_embeddings=True,
)
BOT = "Robin"
BOT_PERSONA = ("Robin is a friendly, curious companion who enjoys chatting about computers, "
               "food, movies, science, sports, history and how the day is going.")


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
    texts = [format_sample(BOT, BOT_PERSONA, turns) for turns in chatterbot_samples()]
    texts *= 3  # the corpus is small next to the plays; it carries the companion persona
    texts += [format_sample(name, f"{name} is a character in a play by Shakespeare.", turns)
              for name, turns in shakespeare_samples()]
    rng.shuffle(texts)
    held_out = [t for i, t in enumerate(texts) if i % 20 == 0]
    training = [t for i, t in enumerate(texts) if i % 20 != 0]
    return training, held_out


def token_stream(tokenizer, texts: list) -> np.ndarray:
    ids = []
    for text in texts:
        ids += tokenizer.encode(text).ids + [EOS]
    return np.array(ids, dtype=np.int64)


def train(model, data: np.ndarray, steps: int, batch: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01,
                                  betas=(0.9, 0.95))
    windows = torch.from_numpy(data[: len(data) // SEQUENCE * SEQUENCE].reshape(-1, SEQUENCE))
    print(f"{len(windows)} windows of {SEQUENCE} tokens, {steps} steps of {batch}")
    model.train()
    started = time.monotonic()
    for step in range(steps):
        lr = 3e-3 * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = torch.randint(len(windows), (batch,), generator=generator)
        # bfloat16 matrix products: about 1.4x faster on this CPU, weights stay float32.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(windows[rows], labels=windows[rows]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  {time.monotonic() - started:.0f} s",
                  flush=True)


def save(model, tokenizer_dir: Path, held_out: list) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).numpy() for k, v in model.state_dict().items()
             if k != "lm_head.weight" and not k.endswith(("attention.bias", "masked_bias"))}
    write_safetensors(str(OUT / "model.safetensors"), state)
    config = {**model.config.to_dict(), "torch_dtype": "float16",
              "architectures": ["GPTNeoForCausalLM"]}
    (OUT / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # A link, not a copy: the GPT-2 tokenizer already lives in models/gpt2-tokenizer.
    link = OUT / "tokenizer.json"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("..") / ".." / tokenizer_dir.name / "tokenizer.json")
    (HERE / "heldout.txt").write_text("\n\n".join(held_out[:120]) + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    training, held_out = build_texts(random.Random(args.seed))
    tokenizer = load_tokenizer(str(TOKENIZER), (EOS,))
    data = token_stream(tokenizer, training)
    print(f"{len(training)} training samples, {len(data)} tokens; {len(held_out)} held out")
    model = GPTNeoForCausalLM(GPTNeoConfig(**CONFIG))
    train(model, data, args.steps, args.batch, args.seed)
    save(model, TOKENIZER, held_out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
