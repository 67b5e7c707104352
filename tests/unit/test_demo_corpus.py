"""The demo model's training text (models/demo/demo_corpus.py) keeps its held-out split apart."""

import sys

import pytest

from support.paths import REPO

DEMO = REPO / "models" / "demo"
sys.path.insert(0, str(DEMO))
demo_corpus = pytest.importorskip("demo_corpus")

pytestmark = pytest.mark.skipif(not demo_corpus.TEXT.is_dir(),
                                reason=f"the shared dialogue text is not at {demo_corpus.TEXT}")


@pytest.fixture(scope="module")
def texts():
    return demo_corpus.build_texts(1234), demo_corpus.first_held_out()


@pytest.fixture(scope="module")
def varied():
    return demo_corpus.build_texts(1234, vary=True)


def dialogue(text: str) -> tuple:
    """The chat after the last <START>, without the closing 'You:' and a leading greeting."""
    lines = text.split("\n")
    chat = lines[len(lines) - lines[::-1].index("<START>"):-1]
    return tuple(chat[1:] if chat and not chat[0].startswith("You:") else chat)


def test_the_held_out_split_is_the_committed_one(texts):
    (_, held_out), _ = texts
    assert "\n\n".join(held_out) + "\n" == (DEMO / "heldout-v2.txt").read_text(encoding="utf-8")


def test_no_held_out_dialogue_is_trained_on(texts):
    (training, held_out), old = texts
    trained = {dialogue(t) for t in training}
    assert len(trained) > 1000
    leaked = [t for t in [*held_out, *old] if dialogue(t) in trained]
    assert not leaked, leaked[:3]


def test_the_varied_prompts_keep_the_same_split(texts, varied):
    (training, held_out), old = texts
    assert varied[1] == held_out and len(varied[0]) == len(training)
    trained = {dialogue(t) for t in varied[0]}
    assert not [t for t in [*held_out, *old] if dialogue(t) in trained]


def test_varied_training_prompts_vary_like_real_cards(varied):
    training, _ = varied
    robin = [t for t in training if t.startswith("Robin's Persona:")]
    personas = {t.split("\n")[0] for t in robin}
    assert len(personas) > 100
    assert f"Robin's Persona: {demo_corpus.BOT_PERSONA}" in personas  # the shipped card's
    with_examples = [t for t in training if t.count("<START>") > 1]
    assert 0.2 < len(with_examples) / len(training) < 0.6
    assert all(t.endswith("\nYou:") for t in training)
