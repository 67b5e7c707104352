"""The demo model's training and held-out text, formatted as Pygmalion prompts.

Sources, in ../shared/data/text: Shakespeare's plays (tinyshakespeare.txt, public domain)
and chatterbot-corpus 1.3.3's English conversations (BSD-3-Clause). Every 20th distinct
conversation of each source is held out before anything is repeated or varied, so the
held-out text (heldout-v2.txt) depends only on the seed.

Training samples vary the prompt the way real cards do (another persona wording, an
example dialogue, a greeting) on a random stream of their own: with one fixed persona in
every sample a small model learns to copy it instead of reading it.
"""

import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT = HERE.parent.parent.parent / "shared" / "data" / "text"
FIRST_HELD_OUT = HERE / "heldout.txt"  # the first demo's split, never trained on since
BOT = "Robin"
BOT_PERSONA = ("Robin is a friendly, curious companion who enjoys chatting about computers, "
               "food, movies, science, sports, history and how the day is going.")
BOT_GREETINGS = ("Hi! I'm Robin. What would you like to chat about?", "Hello there!",
                 "Hi! How is your day going?", "Hey, good to see you. What's new?")
TRAITS = ("friendly", "curious", "cheerful", "patient", "witty", "kind", "thoughtful",
          "playful", "calm", "chatty")
# What each chatterbot file is about, as a persona would say it.
TOPICS = {"ai": "artificial intelligence", "botprofile": "being a chatbot",
          "coding": "programming", "computers": "computers", "conversations": "everyday life",
          "emotion": "feelings", "food": "food", "gossip": "gossip", "greetings": "meeting people",
          "health": "health", "history": "history", "humor": "jokes", "literature": "books",
          "money": "money", "movies": "movies", "politics": "politics",
          "psychology": "psychology", "science": "science", "sports": "sports",
          "tech_support": "fixing computers", "trivia": "trivia"}
PLAY_PERSONAS = ("{name} is a character in a play by Shakespeare.",
                 "{name} speaks in the verse and prose of Shakespeare's plays.",
                 "{name} lives in the world of Shakespeare's plays, among lords and servants.")


def chatterbot_samples() -> list:
    """(topic, turns) for each YAML conversation as a chat with Robin; the user speaks first."""
    samples = []
    for path in sorted((TEXT / "chatterbot-english").glob("*.yml")):
        for conversation in _yaml_conversations(path.read_text(encoding="utf-8")):
            turns = [f"{'You' if i % 2 == 0 else BOT}: {line}"
                     for i, line in enumerate(conversation)]
            if len(turns) % 2:
                turns = turns[:-1]
            if turns:
                samples.append((path.stem, tuple(turns)))
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
            samples.append((character, tuple(turns)))
        start = max(end, start + 1)
    return samples


def format_sample(character: str, persona: str | None, turns, examples=()) -> str:
    """A Pygmalion prompt; it ends with the user's next turn so the model learns to stop."""
    header = [f"{character}'s Persona: {persona}"] if persona else []
    blocks = [line for block in examples for line in ("<START>", *block)]
    return "\n".join(header + blocks + ["<START>", *turns, "You:"])


def first_held_out() -> set:
    """The texts of the first demo's held-out file."""
    return {t.strip("\n") for t in FIRST_HELD_OUT.read_text(encoding="utf-8").split("\n\n")}


def build_texts(seed: int, vary: bool = False) -> tuple:
    """(training, held out): every 20th distinct conversation of each source is held out.

    The chatterbot conversations are repeated three times (the corpus is small next to the
    plays and carries the companion persona), each copy formatted anew, only after the
    split; every dialogue of the first demo's held-out text is left out of training too.
    Held-out texts keep the one canonical format, so perplexities stay comparable; so do
    training texts when vary is False (the first demos' format).
    """
    split, variety = random.Random(seed), random.Random(seed + 1)
    old_held_out = first_held_out()
    robin = _distinct(chatterbot_samples(), lambda sample: (BOT, BOT_PERSONA, sample[1]))
    plays = _distinct(shakespeare_samples(), lambda sample: (
        sample[0], f"{sample[0]} is a character in a play by Shakespeare.", sample[1]))
    training, held_out = [], []
    for samples, copies, variant in ((robin, 3, _robin_variant), (plays, 1, _play_variant)):
        texts = list(samples)
        split.shuffle(texts)
        held_out += texts[::20]
        excluded = old_held_out | set(held_out)
        kept = [text for text in texts if text not in excluded]
        if vary:
            samples_kept = [samples[text] for text in kept]
            training += [variant(sample, samples_kept, variety)
                         for _ in range(copies) for sample in samples_kept]
        else:
            training += kept * copies
    split.shuffle(training)
    split.shuffle(held_out)
    return training, held_out


def _distinct(samples: list, canonical) -> dict:
    """{canonical text: sample}, first occurrence kept (chatterbot repeats many)."""
    distinct = {}
    for sample in samples:
        distinct.setdefault(format_sample(*canonical(sample)), sample)
    return distinct


def _robin_variant(sample, others: list, rng: random.Random) -> str:
    topic, turns = sample
    persona = BOT_PERSONA if rng.random() < 0.35 else _robin_persona(topic, rng)
    examples = [_opening(rng.choice(others)[1], rng)] if rng.random() < 0.5 else []
    greeting = [f"{BOT}: {rng.choice(BOT_GREETINGS)}"] if rng.random() < 0.5 else []
    return format_sample(BOT, persona, greeting + list(turns), examples)


def _robin_persona(topic: str, rng: random.Random) -> str:
    """Robin with random traits and interests that include what this conversation is about."""
    interests = [TOPICS[topic]] + rng.sample([t for t in TOPICS.values() if t != TOPICS[topic]],
                                             rng.randint(1, 3))
    rng.shuffle(interests)
    traits = rng.sample(TRAITS, 2)
    return (f"Robin is a {traits[0]}, {traits[1]} companion who enjoys chatting about "
            f"{', '.join(interests[:-1])} and {interests[-1]}.")


def _play_variant(sample, others: list, rng: random.Random) -> str:
    name, turns = sample
    persona = rng.choice(PLAY_PERSONAS).format(name=name) if rng.random() < 0.85 else None
    same = [t for n, t in rng.sample(others, min(len(others), 40)) if n == name and t != turns]
    examples = [_opening(same[0], rng)] if same and rng.random() < 0.4 else []
    return format_sample(name, persona, turns, examples)


def _opening(turns, rng: random.Random) -> tuple:
    """The first exchange or two of a conversation, as an example dialogue block."""
    return turns[: 2 * rng.randint(1, 2)]
