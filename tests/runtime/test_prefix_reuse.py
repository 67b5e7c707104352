"""Raw-text prompts reuse CTranslate2's prefix cache: exact outputs, planner choices, bounds."""

import pytest
from click.testing import CliRunner

import pyg_edge.generation.loading as loading_module
import pyg_edge.server
from pyg_edge.chat.characters import Character
from pyg_edge.chat.prefix_planner import BLOCK, PrefixPlanner
from pyg_edge.chat.prompt import Message, Prompt
from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.cli import main
from pyg_edge.generation.prefill import exact_cut
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server import ServerSettings, create_app
from pyg_edge.server.common import COMPLETIONS
from support.server_harness import RunningServer
from support.sillytavern_prompt import SEPARATOR, sillytavern_prompt, story_string

GREEDY = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=())
WORDS = ("storm harbour lantern rope sail tide gull anchor reef mast deck compass island "
         "wave cliff shell").split()
CARD = Character(
    "Aqua",
    persona="Aqua is a water goddess.",
    scenario="A guild hall.",
    example_dialogue=("You: Hi\nAqua: Hey!", "You: Lake?\nAqua: Go!"),
)


def words(i: int, n: int) -> str:
    """Sentence number i, of n words."""
    return f"{i}: " + " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(n)) + "."


@pytest.fixture(autouse=True)
def empty_prefix_cache(request):
    """Each test starts with no cached prefix (the models are shared by the session)."""
    for name in ("tiny_model", "one_pass_tiny_model"):
        if name in request.fixturenames:
            request.getfixturevalue(name).clear_prefix_cache()


def own_prefixes(model, ids) -> list:
    """The cached prefixes of the chat whose prompt is ids (they share its beginning)."""
    return [p for p in model.cached_prefixes if tuple(ids[:4]) == p[:4]]


def run_turn(model, planner, text: str) -> dict:
    """Generates one token for text as the server does; says whether the cache served it."""
    before = model.cached_prefixes
    ids = model.tokenizer.encode(text)
    planned = planner.plan(ids, before)
    list(model.stream(text, GREEDY, max_new_tokens=1, static_tokens=planned))
    stats = model.last_generation
    used = tuple(ids[:stats.cached_tokens])
    assert len(own_prefixes(model, ids)) <= 1  # one chat keeps one prefix
    return {"ids": ids, "cached": stats.cached_tokens, "hit": bool(used) and used in before,
            "tail": stats.prompt_tokens - stats.cached_tokens,
            "planned": planned}


def sillytavern_chat(model, planner, turns: int) -> list:
    """Plays a chat as SillyTavern sends it (context 256, response 32); a row per turn."""
    chat, rows, previous = [Message("Aqua", words(0, 2))], [], None
    for i in range(1, turns + 1):
        chat.append(Message("You", f"{2 * i}?", is_user=True))
        text = sillytavern_prompt(CARD, chat, model.tokenizer.count, 256, 32)
        row = run_turn(model, planner, text)
        row["full"] = _line_of(chat[0]) not in text  # the oldest message was dropped
        # The previous prompt, less its closing "Aqua:", then the new messages.
        row["grows"] = bool(previous) and text.startswith(previous.removesuffix("Aqua:"))
        row["text"] = previous = text
        rows.append(row)
        chat.append(Message("Aqua", words(2 * i + 1, 1)))
    return rows


def _line_of(message: Message) -> str:
    return message.render() + "\n"


@pytest.mark.parametrize("chunked", [True, False])
def test_a_static_cut_of_a_raw_prompt_gives_the_uncached_tokens(tiny_model, one_pass_tiny_model,
                                                                 chunked):
    model = tiny_model if chunked else one_pass_tiny_model
    chunk = model.metadata["prefill_chunk"]
    assert bool(chunk) == chunked
    text = " ".join(words(i, 9) for i in range(6)) + "\nAqua:"
    count = model.tokenizer.count(text)
    assert count > 150  # many times the window of 16, past the chunk of 128
    expected = model.generate(text, GREEDY, max_new_tokens=40)
    for cut in (1, 17, 100, count - 1, count + 5):
        for _ in range(2):  # filling the cache, then served from it
            assert model.generate(text, GREEDY, max_new_tokens=40,
                                  static_tokens=cut) == expected
            # With a chunk the runtime moves the cut to keep both passes exact.
            wanted = min(cut, count - 1)
            assert model.last_generation.cached_tokens == exact_cut(count, wanted, chunk)
        assert len(own_prefixes(model, model.tokenizer.encode(text))) <= 1


def test_bad_static_tokens_are_refused(tiny_model):
    with pytest.raises(ValueError, match="static_tokens is -1, expected an int >= 0"):
        tiny_model.generate("You: hi\nAqua:", GREEDY, static_tokens=-1)
    prompt = Prompt("You: hi\nAqua:", static_prefix="You:", token_count=6)
    with pytest.raises(ValueError, match="applies to str prompts"):
        tiny_model.generate(prompt, GREEDY, static_tokens=2)


def test_a_growing_sillytavern_chat_reuses_its_prefix(tiny_model):
    planner = planner_for(tiny_model)
    rows = sillytavern_chat(tiny_model, planner, 12)
    later = [r for r in rows if r["grows"]]
    assert len(later) >= 5 and not rows[0]["grows"]
    # Every turn after the first leaves at most max_tail tokens to process...
    assert all(r["tail"] <= planner.max_tail for r in later)
    # ...mostly from a prefix cached by an earlier turn, not by a new prefix pass.
    assert sum(r["hit"] for r in later) >= len(later) / 2


def planner_for(model) -> PrefixPlanner:
    """The planner the server gives model (ReadPlanner without smart context)."""
    return PrefixPlanner(model.context_length, model.prefill_chunk)


def test_a_full_sillytavern_chat_keeps_reusing_the_card(one_pass_tiny_model):
    """On a one-pass model, where any cached prefix can serve a prompt it starts."""
    model = one_pass_tiny_model
    planner = planner_for(model)
    rows = [r for r in sillytavern_chat(model, planner, 16) if r["full"]]
    assert len(rows) >= 5
    count = model.tokenizer.count
    card_tokens = count(story_string(CARD))
    prefixes = {tuple(r["ids"][:r["cached"]]) for r in rows[1:]}
    # Once the oldest messages drop, only the card is shared: one prefix holds it, reused.
    assert len(prefixes) == 1
    assert all(r["hit"] for r in rows[2:])
    # The card, up to "<START>\n", less a block at most.
    assert card_tokens - BLOCK < rows[-1]["cached"] <= card_tokens + count(SEPARATOR)


def test_a_regenerate_and_an_edited_last_message_hit_the_cache(tiny_model):
    planner = planner_for(tiny_model)
    last = sillytavern_chat(tiny_model, planner, 3)[-1]
    again = run_turn(tiny_model, planner, last["text"])  # a swipe sends the same prompt
    assert again["hit"] and again["tail"] <= planner.max_tail
    edited = last["text"].replace("You: 6?", "You: And the lake?")
    assert edited != last["text"]
    after_edit = run_turn(tiny_model, planner, edited)
    assert after_edit["hit"] and after_edit["cached"] > 0


def test_prefixes_stay_within_the_budget_over_unrelated_prompts(tiny_model, monkeypatch):
    cache = tiny_model.prefix_cache
    monkeypatch.setattr(cache, "budget", 100 * cache.bytes_per_token)  # about two prompts
    planner = planner_for(tiny_model)
    for i in range(6):
        run_turn(tiny_model, planner, f"Story {i}. " + words(i * 3, 60) + "\nAqua:")
        largest = max(map(len, tiny_model.cached_prefixes)) * cache.bytes_per_token
        assert cache.used_bytes <= max(cache.budget, largest)


def test_the_server_reuses_the_prefix_of_a_repeated_then_extended_prompt(tiny_model):
    server = RunningServer(tiny_model, max_length=64)
    body = {"prompt": story_string(CARD) + "<START>\nYou: " + words(1, 12) + "\nAqua:",
            "max_length": 24, "temperature": 0, "rep_pen": 1.0}
    try:
        replies, hits, cached = [], [], []
        for prompt in (body["prompt"], body["prompt"], body["prompt"] + " Sure.\nYou: Why?\nAqua:"):
            before = tiny_model.cached_prefixes
            status, reply = server.request("POST", "/api/v1/generate", {**body, "prompt": prompt})
            assert status == 200, reply
            stats = tiny_model.last_generation
            used = tuple(tiny_model.tokenizer.encode(prompt)[:stats.cached_tokens])
            replies.append(reply["results"][0]["text"])
            hits.append(bool(used) and used in before)
            cached.append(stats.cached_tokens)
    finally:
        server.stop()
    assert hits[1:] == [True, True] and cached[0] > 0
    assert replies[0] == replies[1]  # the cached run generates the same tokens


def plan_all(planner, prompts) -> list:
    """The planner's cuts for a sequence of prompts, each cut then counted as cached."""
    cached, cuts = set(), []
    for ids in prompts:
        cut = planner.plan(ids, cached)
        cached.add(tuple(ids[:cut]))
        cuts.append(cut)
    return cuts


def test_a_full_chat_that_drops_nothing_for_a_turn_keeps_to_the_card():
    planner = PrefixPlanner(2048)
    card = list(range(1000, 1300))
    history = list(range(5000, 6500))
    full = card + history[100:1400]  # the chat filled the context and shifted...
    shifted = card + history[200:1500]  # ...and shifts again
    grown = shifted + list(range(7000, 7100))  # this turn dropped nothing
    cuts = plan_all(planner, [card + history[:1300], full, shifted, grown])
    assert cuts[0] == 1600 - 8  # a first prompt: a chat that will grow
    assert cuts[1:] == [288, 288, 288]  # the card, in blocks of 32, from then on


def test_two_interleaved_chats_each_keep_their_prefix():
    planner = PrefixPlanner(2048)
    a, b = list(range(1000, 1800)), list(range(3000, 3800))
    prompts = []
    for turn in range(3):
        prompts += [a + list(range(9000, 9000 + 100 * turn)),
                    b + list(range(11000, 11000 + 100 * turn))]
    cuts = plan_all(planner, prompts)
    assert cuts[:2] == [792, 792]  # each chat's first prompt, to its last few tokens
    assert cuts[2:] == [792] * 4  # reused while the tail stays under max_tail


def test_with_a_prefill_chunk_a_prefix_leaves_no_more_than_the_chunk():
    chunk = 1024
    planner = PrefixPlanner(2048, chunk)
    card, history = list(range(1000, 1300)), list(range(5000, 6500))
    prompts = [card + history[:1300], card + history[100:1400], card + history[200:1500]]
    cuts = plan_all(planner, prompts + [prompts[-1]])
    # A first prompt, then full chats that share only the 300-token card: the card would
    # leave 1,300 tokens after it, past what the chunk reads exactly, so each is frozen
    # to its end, and the regenerate (the same prompt again) reuses all of it.
    assert cuts == [1592, 1592, 1592, 1592]
    assert all(len(ids) - cut <= chunk + 1 for ids, cut in zip(prompts, cuts, strict=False))
    # Without a chunk the same chats keep to the card.
    assert plan_all(PrefixPlanner(2048), prompts)[1:] == [288, 288]


def test_with_a_prefill_chunk_a_cached_prefix_too_far_back_is_not_reused():
    planner = PrefixPlanner(256, prefill_chunk=40)
    first = list(range(100))
    assert plan_all(planner, [first]) == [92]
    grown = first + list(range(500, 560))  # 68 tokens after the cached 92: past 40 + 1
    cut = planner.plan(grown, {tuple(first[:92])})
    assert cut != 92 and len(grown) - cut <= 41


def test_on_the_chunked_default_every_cut_is_the_planners_and_stays_exact(tiny_model):
    chunk = tiny_model.prefill_chunk
    assert chunk  # the default conversion reads long prompts in chunks
    planner = planner_for(tiny_model)
    rows = sillytavern_chat(tiny_model, planner, 16)
    full = [r for r in rows if r["full"]]
    assert len(full) >= 5
    for row in rows:
        # No cut moved by the runtime (that prefix would be used once, uncached)...
        assert row["cached"] == row["planned"]
        # ...and what follows the prefix is within what the chunk reads exactly.
        assert row["tail"] <= chunk + 1
    swipe = run_turn(tiny_model, planner, full[-1]["text"])
    assert swipe["hit"] and swipe["tail"] <= planner.max_tail


def test_serve_can_turn_the_prefix_cache_off(monkeypatch, tiny_model):
    served = []
    monkeypatch.setattr(pyg_edge.server, "serve", lambda *args, **kw: served.append(args))
    result = CliRunner().invoke(main, ["serve", str(tiny_model.path), "--no-prefix-cache"])
    assert result.exit_code == 0, result.output
    assert served[0][1].prefix_cache is False
    for reuse in (False, True):
        planner = create_app(tiny_model, ServerSettings(prefix_cache=reuse))[COMPLETIONS].planner
        assert (planner.prefixes is not None) == reuse
        assert planner.smart.fraction == (DEFAULT_FRACTION if reuse else 0)  # none uncached


def test_serve_takes_the_smart_context_fraction(monkeypatch, tiny_model):
    served = []
    monkeypatch.setattr(pyg_edge.server, "serve", lambda *args, **kw: served.append(args))
    runner = CliRunner()
    assert runner.invoke(main, ["serve", str(tiny_model.path)]).exit_code == 0
    assert runner.invoke(main, ["serve", str(tiny_model.path), "--smart-context", "0.3"]
                         ).exit_code == 0
    assert runner.invoke(main, ["serve", str(tiny_model.path), "--smart-context", "0"]
                         ).exit_code == 0
    assert [args[1].smart_context for args in served] == [DEFAULT_FRACTION, 0.3, 0.0]
    refused = runner.invoke(main, ["serve", str(tiny_model.path), "--smart-context", "1"])
    assert refused.exit_code != 0 and "smart-context" in refused.output


def test_keep_cached_reuses_one_prefix_while_the_rest_is_one_exact_pass():
    """Smart context's planner: a growing chat never replaces its prefix (a reload)."""
    planner = PrefixPlanner(2048, 1024, keep_cached=True)
    first = tuple(range(300))
    cached = {first}
    for grown in (500, 800, 1024):
        ids = first + tuple(range(5000, 5000 + grown))
        assert planner.plan(ids, cached) == len(first)
        assert not planner.outgrown(ids, cached)
    assert planner.outgrown(first + tuple(range(5000, 6100)), cached)  # past the chunk
    # Without keep_cached a new prefix is frozen once 256 tokens follow the cached one.
    assert PrefixPlanner(2048, 1024).plan(first + tuple(range(5000, 5800)), cached) > 300


@pytest.mark.parametrize("packed", [False, True])
def test_a_reload_returns_freed_memory_only_after_a_packing_load(monkeypatch, tiny_model,
                                                                 packed):
    """An unpacked reload reuses the heap it left (no fresh pages for the next pass); a
    packed one held the weights twice and gives back what it freed, before and after."""
    trims = []
    monkeypatch.setattr(loading_module, "packs_weights", lambda: packed)
    monkeypatch.setattr(loading_module, "release_freed_memory", lambda: trims.append(1))
    cache = tiny_model.prefix_cache
    monkeypatch.setattr(cache, "budget", 25 * cache.bytes_per_token)  # room for one prefix
    for i in range(2):  # one distinct prefix too many: one reload
        if i == 1:
            trims.clear()  # the first may have emptied a cache an earlier test filled
        tiny_model.generate(f"Story {i}. " + words(i * 3, 30), max_new_tokens=1,
                            static_tokens=20)
    assert len(tiny_model.cached_prefixes) == 1  # emptied, then the last prefix cached
    assert len(trims) == (2 if packed else 0)
