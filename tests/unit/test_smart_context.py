"""Smart context: a chat whose context is full keeps its card and a stable block of history.

Unit tests: words (whitespace-separated) count as tokens. runtime/test_smart_context_replay.py
runs such chats through a model.
"""

from dataclasses import replace

import pytest

from pyg_edge.chat.smart_context import SmartContext, history_budget, speakers_from_stops
from support.sillytavern_prompt import (
    CARD,
    SPEAKERS,
    chat_prompts,
    sentence,
    story_string,
    words,
)


def fit_all(smart, prompts, room):
    return [smart.fit(p, room, SPEAKERS) for p in prompts]


def test_a_growing_chat_is_left_as_it_is():
    prompts = chat_prompts(6, words, 400, 50)
    assert all(f.text == p and not f.event
               for f, p in zip(fit_all(SmartContext(words), prompts, 350), prompts, strict=True))


def test_a_full_chat_is_cut_deep_once_then_matched_until_the_client_trims_into_the_block():
    room = 300 - 40
    prompts = chat_prompts(40, words, 300, 40)
    fitted = fit_all(SmartContext(words, 0.5), prompts, room)
    events = [f.event for f in fitted]
    first_cut = events.index("cut")
    assert "match" in events[first_cut:] and events.count("cut") >= 2
    for f, prompt in zip(fitted, prompts, strict=True):
        if not f.event:
            assert f.text == prompt
            continue
        head = story_string(CARD) + "<START>\n"
        assert f.text.startswith(head) and prompt.startswith(head)
        kept = f.text[len(head):]
        assert prompt.endswith(kept)  # the newest history, whole messages
        assert kept.startswith(("You:", "Aqua:"))
        assert f.text.endswith("\nAqua:")
        if f.event == "cut":
            assert f.static_chars == f.text.rfind("\n") + 1  # all but the open turn
        # Between the fraction and all of what the client sent.
        assert history_budget(room, words(head), 0.5) // 2 <= f.kept_tokens <= f.history_tokens
    # A matched turn's cached prefix is the previous turn's: only the new messages follow.
    for before, after in zip(fitted, fitted[1:], strict=False):
        if after.event == "match":
            static = before.text[:before.static_chars]
            assert after.text.startswith(static) and after.static_chars == len(static)


def test_examples_the_client_pushes_out_stay_until_the_next_cut():
    """SillyTavern drops a card's last example each turn the chat outgrows it: the cached
    card keeps them (one cut, not one per dropped example) while the room allows."""
    card = replace(CARD, example_dialogue=tuple(
        f"You: {sentence(100 + k, 4)}\nAqua: {sentence(200 + k, 6)}" for k in range(4)))
    room = 300 - 40
    prompts = chat_prompts(40, words, 300, 40, card=card)
    examples = [p.count("<START>") - 1 for p in prompts]
    fitted = fit_all(SmartContext(words, 0.5), prompts, room)
    first_cut = next(i for i, f in enumerate(fitted) if f.event == "cut")
    pushed_out = [i for i in range(first_cut + 1, len(prompts))
                  if 0 < examples[i] < examples[first_cut]]
    assert pushed_out  # the client dropped examples after the cut, before its own trim
    head = fitted[first_cut].text[:fitted[first_cut].text.rindex("<START>\n") + 8]
    for i in pushed_out:
        assert fitted[i].event == "match" and fitted[i].text.startswith(head)
        assert words(fitted[i].text) <= room
    cuts = [f for f in fitted[first_cut:] if f.event == "cut"]
    assert all(f.text.startswith(cuts[-1].text[:cuts[-1].text.rindex("<START>")]) for f in
               fitted[fitted.index(cuts[-1]):])  # the next cut takes the client's card


def test_the_kept_share_follows_the_fraction():
    room = 300 - 40
    prompts = chat_prompts(40, words, 300, 40)
    kept = {}
    for fraction in (0.25, 0.5, 0.75):
        cuts = [f for f in fit_all(SmartContext(words, fraction), prompts, room)
                if f.event == "cut"]
        kept[fraction] = sum(f.kept_tokens for f in cuts) / len(cuts)
    assert kept[0.25] < kept[0.5] < kept[0.75]


def test_zero_turns_it_off_and_bad_fractions_are_refused():
    prompts = chat_prompts(40, words, 300, 40)
    assert all(not f.event for f in fit_all(SmartContext(words, 0), prompts, 260))
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match="fraction"):
            SmartContext(words, bad)


def test_a_changed_card_cuts_again():
    prompts = chat_prompts(30, words, 300, 40)
    smart = SmartContext(words)
    fitted = fit_all(smart, prompts, 260)
    assert fitted[-1].event in ("cut", "match")
    edited = prompts[-1].replace("water goddess", "fire goddess")
    again = smart.fit(edited, 260, SPEAKERS)
    assert again.event == "cut" and again.text.startswith(edited[:40])


def test_a_shorter_prompt_that_is_not_full_is_not_cut():
    """A client that deleted messages sends less than its room: the model reads it all."""
    prompts = chat_prompts(30, words, 300, 40)
    smart = SmartContext(words)
    fit_all(smart, prompts, 260)
    short = prompts[-1]
    short = short[:short.index("<START>\n") + 8] + short[short.rindex("You:"):]
    fitted = smart.fit(short, 260, SPEAKERS)
    assert fitted.text == short and not fitted.event


def test_speakers_come_from_newline_stop_strings():
    assert speakers_from_stops(("\nYou:", "\nAqua:", "</s>", "\n<START>", "You:")) == (
        "You", "Aqua")


def test_a_growing_chat_whose_rest_outgrew_one_pass_is_cut_like_a_full_one():
    prompts = chat_prompts(6, words, 400, 50)
    smart = SmartContext(words, 0.5)
    fit_all(smart, prompts[:-1], 350)
    fitted = smart.fit(prompts[-1], 150, SPEAKERS, outgrown=True)  # half of 150 less the card
    assert fitted.event == "cut" and fitted.kept_tokens < fitted.history_tokens
    assert fitted.text.startswith(prompts[-1][:prompts[-1].index("<START>")])
