"""Smart context: a chat whose context is full keeps its card and a stable block of history.

Unit tests count words (whitespace-separated) as tokens; the model tests run SillyTavern-
shaped chats through the library's Completions (as the server does) and check every turn against an
uncached run of the text the model read.
"""

import asyncio
from dataclasses import replace

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.prompt import Message
from pyg_edge.chat.smart_context import SmartContext, history_budget, speakers_from_stops
from pyg_edge.generation.sampling import SamplingOptions
from sillytavern_prompt import sillytavern_prompt, story_string

CARD = Character("Aqua", persona="Aqua is a water goddess of the guild.",
                 scenario="A guild hall by the lake.",
                 example_dialogue=("You: Hi there\nAqua: Hey!",))
WORDS = "storm harbour lantern rope sail tide gull anchor reef mast deck compass".split()
SPEAKERS = ("You", "Aqua")


def words(text: str) -> int:
    return len(text.split())


def sentence(i: int, n: int) -> str:
    return f"{i}: " + " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(n)) + "."


def chat_prompts(turns: int, count, context: int, response: int, reply_words: int = 6,
                 card: Character = CARD):
    """The prompts SillyTavern sends for a chat of `turns` turns, oldest first."""
    chat, prompts = [Message("Aqua", sentence(0, 4))], []
    for i in range(1, turns + 1):
        chat.append(Message("You", sentence(2 * i, 3), is_user=True))
        prompts.append(sillytavern_prompt(card, chat, count, context, response))
        chat.append(Message("Aqua", sentence(2 * i + 1, reply_words)))
    return prompts


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


GREEDY = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(),
                         stop=("\nYou:", "\nAqua:"), max_new_tokens=6)


def replay(model, turns: int, fraction: float = 0.5, context: int = 256, response: int = 32):
    """A SillyTavern chat through Completions (the async calls, as the server makes them):
    per turn, (read text, stats, reply, the client's prompt)."""
    count = model.tokenizer.count
    prompts = chat_prompts(turns, count, context, response, reply_words=8)
    completions = Completions(model, smart_context=fraction)
    # The client's room for the prompt is context - response.
    client_context = context - response + GREEDY.max_new_tokens

    async def run():
        rows = []
        for text in prompts:
            # As sent: a few prompts are over the room, which create_completion would cut.
            stream = completions.complete_prompt(text, GREEDY, context=client_context)
            pieces = [chunk.text async for chunk in stream]
            rows.append((completions.planner.last_read, stream.stats, "".join(pieces), text))
        return rows

    return asyncio.run(run())


@pytest.mark.parametrize("chunked", [False, True])
def test_every_turn_of_a_full_chat_equals_an_uncached_run_of_what_the_model_read(
        tiny_model, one_pass_tiny_model, chunked, caplog):
    model = tiny_model if chunked else one_pass_tiny_model
    caplog.set_level("INFO", logger="pyg_edge")
    rows = replay(model, 24)
    shortened = [r for r in rows if r[0] != r[3]]
    assert len(shortened) >= 8  # the chat was full for many turns and was kept short
    for read, stats, reply, _ in rows:
        assert reply == model.generate(read, GREEDY)  # uncached: no static prefix
        assert stats.prompt_tokens == model.tokenizer.count(read)
    # After the first cut, most turns read only what follows the kept block.
    full = rows[rows.index(shortened[0]):]
    cheap = [s for _, s, _, _ in full if s.read_tokens <= s.prompt_tokens // 2]
    assert len(cheap) >= len(full) / 2
    assert "smart context (cut): kept" in caplog.text
    assert "smart context (match): kept" in caplog.text


def test_a_growing_chat_whose_rest_outgrew_one_pass_is_cut_like_a_full_one():
    prompts = chat_prompts(6, words, 400, 50)
    smart = SmartContext(words, 0.5)
    fit_all(smart, prompts[:-1], 350)
    fitted = smart.fit(prompts[-1], 150, SPEAKERS, outgrown=True)  # half of 150 less the card
    assert fitted.event == "cut" and fitted.kept_tokens < fitted.history_tokens
    assert fitted.text.startswith(prompts[-1][:prompts[-1].index("<START>")])
