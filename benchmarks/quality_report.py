"""How good the demo model is, and what each quantization and inexact attention costs it.

    python benchmarks/quality_report.py [--baseline-rev REV]

On the held-out dialogue of the demo model (models/demo/heldout.txt and heldout-v2.txt,
never trained on): perplexity for every quantization the converter offers (CPU computes
16-bit weights in float32 and int8 weights in int8), and for CTranslate2's own sliding
window, which is not exact for a prompt read in one pass. Then, on held-out prompts several
times longer than the window, how many greedy tokens the inexact model gets right before it
diverges from the exact one. The baseline, computed in the same run, is the exact float32
model. Last, greedy int8 replies as Robin to a few fixed messages: whether each ends its
turn, and the longest word n-gram it repeats (a looping reply repeats a long one).
--baseline-rev puts the demo checkpoint of an earlier git revision beside it.
"""

import argparse
import json
import math
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_common import describe_machine
from pyg_edge.chat.characters import load_character
from pyg_edge.chat.session import ChatSession
from pyg_edge.demo import DEMO_CHARACTER
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.tokenizer import TextTokenizer
from pyg_edge_convert import QUANTIZATIONS, convert_checkpoint
from scoring import scoring_generator

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "models" / "demo"
CHECKPOINT = ROOT / "pyg_edge" / "demo_data" / "pyg-demo-neo"
# Where the demo checkpoint lived in earlier revisions, newest first.
CHECKPOINT_PATHS = ("pyg_edge/demo_data/pyg-demo-neo", "models/demo/pyg-demo-neo")
HELD_OUT = ("heldout.txt", "heldout-v2.txt")
COMPUTE = {"float32": "float32", "float16": "float32", "bfloat16": "float32"}
MESSAGES = ("Hello, how are you?", "What is your favourite food?", "Tell me about computers.",
            "Do you like movies?", "What did you do today?")
GREEDY = SamplingOptions(temperature=0, max_new_tokens=60)


def held_out_sets() -> dict:
    """{name: texts} for each held-out file there is, and heldout.txt's plays alone.

    Most of heldout.txt's chatterbot dialogues also occur in the first demo's training data
    (the script repeated the conversations before splitting); its play excerpts do not, and
    no later demo trains on any of heldout.txt, so the plays compare every demo fairly.
    """
    sets = {name: [t for t in (DEMO / name).read_text(encoding="utf-8").split("\n\n") if t]
            for name in HELD_OUT if (DEMO / name).exists()}
    plays = [t for t in sets[HELD_OUT[0]] if not t.startswith("Robin's Persona")]
    return {HELD_OUT[0]: sets[HELD_OUT[0]], "heldout.txt plays": plays,
            **{n: t for n, t in sets.items() if n != HELD_OUT[0]}}


def perplexity(model, tokenizer, texts: list, eos: int, context: int,
               chat_only: bool = False) -> float:
    """exp(mean negative log-likelihood per token), each text read in one pass.

    chat_only counts only the tokens after the last <START> line: the persona and example
    dialogue are then context, as the card is in a real chat, not text to predict.
    """
    batches, skips = [], []
    for text in texts:
        ids = [eos] + tokenizer.encode(text)[: context - 1]
        skips.append(len(_context_ids(tokenizer, text, eos, ids)) - 1 if chat_only else 0)
        batches.append(tokenizer.tokens(ids))
    total, count = 0.0, 0
    for result, skip in zip(model.score_batch(batches, max_batch_size=8), skips, strict=True):
        total -= sum(result.log_probs[skip:])
        count += len(result.log_probs) - skip
    return math.exp(total / count)


def _context_ids(tokenizer, text: str, eos: int, ids: list) -> list:
    """The ids up to and including the last <START> line (only [eos] if they would not
    tokenize the same on their own)."""
    cut = text.rindex("<START>\n") + len("<START>\n")
    context = [eos] + tokenizer.encode(text[:cut])
    return context if ids[: len(context)] == context else [eos]


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


def longest_repeat(text: str) -> int:
    """Words in the longest word n-gram that occurs twice in text (overlaps count)."""
    words = text.split()
    for n in range(len(words) - 1, 0, -1):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if len(set(grams)) < len(grams):
            return n
    return 0


def longest_copy(text: str, source: str) -> int:
    """Words in the longest word n-gram of text that also occurs in source (a persona echo)."""
    words, source_words = text.split(), source.split()
    grams = {tuple(source_words[i:i + n]) for n in range(1, len(source_words) + 1)
             for i in range(len(source_words) - n + 1)}
    return max((n for n in range(1, len(words) + 1) for i in range(len(words) - n + 1)
                if tuple(words[i:i + n]) in grams), default=0)


def baseline_checkpoint(rev: str, folder: Path) -> Path:
    """The demo checkpoint as of git revision rev, written to folder."""
    folder.mkdir(parents=True)
    for path in CHECKPOINT_PATHS:
        files = {}
        for name in ("config.json", "model.safetensors"):
            result = subprocess.run(["git", "show", f"{rev}:{path}/{name}"], cwd=ROOT,
                                    capture_output=True)
            files[name] = result.stdout if result.returncode == 0 else None
        if all(files.values()):
            for name, data in files.items():
                (folder / name).write_bytes(data)
            (folder / "tokenizer.json").write_bytes((CHECKPOINT / "tokenizer.json").read_bytes())
            return folder
    raise SystemExit(f"no demo checkpoint at revision {rev}")


def chat_perplexities(model, tokenizer, sets: dict, eos: int, context: int) -> str:
    """Perplexity of each set's chat turns alone (after the last <START>), as text."""
    return ", ".join(f"{perplexity(model, tokenizer, texts, eos, context, True):.3f} ({name})"
                     for name, texts in sets.items())


def quantization_table(checkpoint: Path, work: Path, sets: dict) -> dict:
    """Prints perplexity per quantization; returns the float32 and inexact models."""
    folders = {q: work / q for q in QUANTIZATIONS}
    for quantization, folder in folders.items():
        convert_checkpoint(str(checkpoint), str(folder), quantization)
    folders["inexact"] = work / "inexact"
    convert_checkpoint(str(checkpoint), str(folders["inexact"]), "float32",
                       exact_local_attention=False)
    tokenizer = TextTokenizer.from_model_folder(str(folders["float32"]))
    metadata = json.loads((folders["float32"] / "pyg_edge.json").read_text())
    eos, context, window = (metadata["eos_token_id"], metadata["context_length"],
                            metadata["window_size"])
    for name, texts in sets.items():
        lengths = [len(tokenizer.encode(t)) + 1 for t in texts]
        print(f"{name}: {len(texts)} held-out dialogues, {sum(lengths)} tokens "
              f"(median {statistics.median(lengths):.0f})")
    print(f"settings: window {window}, context {context}, CPU, one pass per text\n")
    print("| weights | compute | local attention | "
          + " | ".join(f"perplexity ({n})" for n in sets) + " | vs exact float32 |")
    print("| --- | --- | --- | " + "--- | " * len(sets) + "--- |")
    models, baseline = {}, None
    for name in ["float32", *[q for q in QUANTIZATIONS if q != "float32"], "inexact"]:
        quantization = "float32" if name == "inexact" else name
        compute = COMPUTE.get(quantization, "int8")
        models[name] = scoring_generator(folders[name], compute_type=compute)
        ppls = [perplexity(models[name], tokenizer, texts, eos, context)
                for texts in sets.values()]
        baseline = baseline or ppls[0]
        attention = "CTranslate2 sliding window (inexact)" if name == "inexact" else "exact"
        print(f"| {quantization} | {compute} | {attention} | "
              + " | ".join(f"{p:.3f}" for p in ppls) + f" | {ppls[0] / baseline:.4f}x |")
    chat = chat_perplexities(models["float32"], tokenizer, sets, eos, context)
    print(f"\nPerplexity of the chat alone (the tokens after the last <START>; the persona and "
          f"example dialogue are context, as a card is), float32, exact: {chat}.")
    return {"exact": models["float32"], "inexact": models["inexact"], "tokenizer": tokenizer,
            "window": window, "folder": folders["int8"], "eos": eos, "context": context}


def report_agreement(models: dict, sets: dict) -> None:
    window, new_tokens = models["window"], 64
    prompt_tokens = 3 * window
    texts = next(iter(sets.values()))  # the first held-out text, as before
    runs = greedy_agreement(models["exact"], models["inexact"], models["tokenizer"], texts,
                            prompt_tokens, new_tokens)
    diverged = [r for r in runs if r < new_tokens]
    print(f"\nGreedy decoding from {len(runs)} held-out prompts of {prompt_tokens} tokens "
          f"({prompt_tokens // window}x the window), {new_tokens} new tokens: the inexact "
          f"model diverges from the exact one in {len(diverged)} of {len(runs)}, after a "
          f"median of {statistics.median(runs) if runs else 0:.0f} tokens "
          f"(min {min(runs, default=0)}).")


def report_baseline(baseline: Path, rev: str, work: Path, sets: dict) -> Path:
    """Prints the baseline's float32 perplexities; returns its int8 folder."""
    for quantization in ("float32", "int8"):
        convert_checkpoint(str(baseline), str(work / quantization), quantization)
    tokenizer = TextTokenizer.from_model_folder(str(work / "float32"))
    metadata = json.loads((work / "float32" / "pyg_edge.json").read_text())
    model = scoring_generator(work / "float32", compute_type="float32")
    ppls = [perplexity(model, tokenizer, texts, metadata["eos_token_id"],
                       metadata["context_length"]) for texts in sets.values()]
    print(f"\nThe demo checkpoint of revision {rev}, float32, exact: perplexity "
          + ", ".join(f"{p:.3f} ({n})" for p, n in zip(ppls, sets, strict=True))
          + "; the chat alone: " + chat_perplexities(model, tokenizer, sets,
                                                      metadata["eos_token_id"],
                                                      metadata["context_length"]) + ".")
    return work / "int8"


def report_replies(folders: dict) -> None:
    """Greedy int8 replies as Robin to MESSAGES, one fresh chat each."""
    print(f"\nGreedy replies (int8, at most {GREEDY.max_new_tokens} tokens) as Robin, each "
          "the first message of a new chat; ends turn: one line, stopped where the user's "
          "turn or a new <START> begins rather than at the length limit; repeat: words in the "
          "longest n-gram said twice; persona copy: words in the longest n-gram taken from "
          "the persona.\n")
    print("| model | message | reply | ends turn | repeat | persona copy |")
    print("| --- | --- | --- | --- | --- | --- |")
    character = load_character(DEMO_CHARACTER)
    for label, folder in folders.items():
        with PygModel(folder, device="cpu") as model:
            for message in MESSAGES:
                session = ChatSession(model, character, GREEDY)
                reply = "".join(session.send(message))
                ends = model.last_generation.finish_reason == "stop" and "\n" not in reply
                text = reply.replace("|", "\\|").replace("\n", " ")
                print(f"| {label} | {message} | {text} | {'yes' if ends else 'no'} | "
                      f"{longest_repeat(reply)} | {longest_copy(reply, character.persona)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", help="git revision whose demo to compare with")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT,
                        help="demo checkpoint to report on (default: the shipped one)")
    args = parser.parse_args()
    sets = held_out_sets()
    print(f"machine: {describe_machine()}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        models = quantization_table(args.checkpoint, work / "current", sets)
        report_agreement(models, sets)
        replies = {"current": models["folder"]}
        if args.baseline_rev:
            baseline = baseline_checkpoint(args.baseline_rev, work / "baseline-checkpoint")
            replies = {args.baseline_rev: report_baseline(baseline, args.baseline_rev,
                                                          work / "baseline", sets), **replies}
        report_replies(replies)


if __name__ == "__main__":
    main()
