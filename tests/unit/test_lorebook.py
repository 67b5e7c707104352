"""Lorebook activation: each rule of the V2/V3 spec and SillyTavern's World Info, on books
built here."""

import random

import pytest

from pyg_edge.chat.lorebook import Lorebook, LoreEntry, activate, scan


def words(text: str) -> int:
    return len(text.split())


def names(book, messages, **kwargs):
    return [a.entry.name for a in activate(book, messages, words, **kwargs)]


def entry(name, keys=(), **fields):
    return LoreEntry(content=f"{name} lore.", keys=tuple(keys), name=name, **fields)


def test_a_key_in_the_chat_activates_its_entry_and_says_where():
    book = Lorebook((entry("forest", ["forest"]), entry("sea", ["sea"])))
    [fired] = activate(book, ["You: hi", "Aqua: Welcome to the Forest!"], words)
    assert fired.entry.name == "forest" and fired.key == "forest" and fired.message == 1
    assert fired.reason == "key 'forest' in message 1"


def test_only_the_last_scan_depth_messages_are_scanned():
    chat = ["You: the forest", "Aqua: yes", "You: and?"]
    assert names(Lorebook((entry("f", ["forest"]),)), chat) == []  # default depth 2
    assert names(Lorebook((entry("f", ["forest"]),), scan_depth=3), chat) == ["f"]
    # The entry's own scan depth wins over the book's.
    assert names(Lorebook((entry("f", ["forest"], scan_depth=3),), scan_depth=1), chat) == ["f"]
    assert names(Lorebook((entry("f", ["forest"], scan_depth=0),), scan_depth=9), chat) == []


def test_case_is_ignored_unless_the_entry_is_case_sensitive():
    assert names(Lorebook((entry("a", ["Eldoria"]),)), ["You: eldoria?"]) == ["a"]
    book = Lorebook((entry("a", ["Eldoria"], case_sensitive=True),))
    assert names(book, ["You: eldoria?"]) == []
    assert names(book, ["You: Eldoria?"]) == ["a"]


def test_whole_words_as_sillytavern_defines_them():
    book = Lorebook((entry("w", ["beast"], match_whole_words=True),
                     entry("two", ["magic forest"], match_whole_words=True)))
    assert names(book, ["You: beasts everywhere"]) == []
    assert names(book, ["You: a beast!"]) == ["w"]
    assert names(book, ["beast"]) == ["w"]  # the text's edges count as word edges
    assert names(book, ["You: (beast)"]) == ["w"]
    assert names(book, ["You: a magic forests"]) == ["two"]  # several words: a substring
    # Substrings match when whole words are not asked for.
    assert names(Lorebook((entry("s", ["beast"]),)), ["You: beasts"]) == ["s"]


def test_a_slash_key_is_a_regular_expression_and_use_regex_makes_every_key_one():
    book = Lorebook((entry("r", ["/sha?dow(fang)?s?/i"]),))
    assert names(book, ["You: SHDOWFANGS"]) == ["r"]
    assert names(Lorebook((entry("r", ["/[broken/"]),)), ["You: /[broken/"]) == ["r"]
    v3 = Lorebook((entry("v3", ["colou?r"], use_regex=True),
                   entry("bad", ["[broken"], use_regex=True)))
    assert names(v3, ["You: what color? [broken"]) == ["v3"]  # a broken pattern never fires


@pytest.mark.parametrize("logic, chat, fires", [
    ("AND_ANY", "sword and shield", True), ("AND_ANY", "sword", False),
    ("AND_ALL", "sword shield helm", True), ("AND_ALL", "sword shield", False),
    ("NOT_ANY", "sword", True), ("NOT_ANY", "sword helm", False),
    ("NOT_ALL", "sword shield", True), ("NOT_ALL", "sword shield helm", False),
])
def test_selective_logic_of_secondary_keys(logic, chat, fires):
    book = Lorebook((entry("x", ["sword"], secondary_keys=("shield", "helm"), logic=logic),))
    assert names(book, [chat]) == (["x"] if fires else [])


def test_secondary_keys_are_ignored_when_the_entry_is_not_selective():
    book = Lorebook((entry("x", ["sword"], secondary_keys=("shield",), selective=False),))
    assert names(book, ["sword"]) == ["x"]


def test_constant_entries_always_and_disabled_entries_never_activate():
    book = Lorebook((entry("c", [], constant=True), entry("d", ["sea"], enabled=False)))
    [fired] = activate(book, ["You: the sea"], words)
    assert fired.entry.name == "c" and fired.reason == "constant"


def test_prompt_order_is_insertion_order():
    book = Lorebook((entry("late", ["a"], insertion_order=200),
                     entry("early", ["a"], insertion_order=5)))
    assert names(book, ["a"]) == ["early", "late"]


def test_the_budget_keeps_higher_priority_then_higher_insertion_order():
    # Each content is 2 words ("x lore."); a budget of 4 keeps two of three.
    book = Lorebook((entry("low", ["a"], insertion_order=1),
                     entry("high", ["a"], insertion_order=50),
                     entry("vip", ["a"], insertion_order=0, priority=10)), token_budget=4)
    result = scan(book, ["a"], words)
    assert [a.entry.name for a in result.activated] == ["vip", "high"]
    assert [a.entry.name for a in result.over_budget] == ["low"]
    assert result.tokens == 4
    assert names(book, ["a"], budget=2) == ["vip"]  # the caller's budget wins


def test_recursion_only_when_the_book_asks():
    entries = (LoreEntry("The Shadowfangs roam Eldoria.", ("beast",), name="beasts"),
               entry("eldoria", ["eldoria"]))
    assert names(Lorebook(entries), ["You: a beast!"]) == ["beasts"]
    fired = activate(Lorebook(entries, recursive_scanning=True), ["You: a beast!"], words)
    assert [a.entry.name for a in fired] == ["beasts", "eldoria"]
    assert fired[1].step == 1 and fired[1].message is None
    assert fired[1].reason == "key 'eldoria' in another entry's content"


def test_recursion_flags():
    beasts = LoreEntry("Eldoria's beasts.", ("beast",), name="beasts")
    shy = entry("shy", ["eldoria"], exclude_recursion=True)
    late = entry("late", ["eldoria"], delay_until_recursion=True)
    book = Lorebook((beasts, shy, late), recursive_scanning=True)
    assert names(book, ["You: a beast"]) == ["beasts", "late"]
    # late waits for a recursive scan, which scans the chat too (as SillyTavern's does);
    # none comes when nothing else activated.
    assert names(book, ["You: eldoria"]) == ["shy", "late"]
    assert names(Lorebook((beasts, late), recursive_scanning=True), ["You: eldoria"]) == []
    quiet = Lorebook((LoreEntry("Eldoria.", ("beast",), name="q", prevent_recursion=True),
                      entry("e", ["eldoria"])), recursive_scanning=True)
    assert names(quiet, ["beast"]) == ["q"]


def test_probability_rolls_are_deterministic_by_default_and_follow_an_rng():
    book = Lorebook(tuple(entry(f"e{i}", ["a"], probability=50) for i in range(40)))
    first = names(book, ["You: a"])
    assert first == names(book, ["You: a"])  # the same chat, the same lore
    assert 5 < len(first) < 35
    assert names(book, ["You: a", "You: more"]) == first  # the same mention: no new roll
    assert names(book, ["You: a!"]) != first  # a new mention rolls anew
    rolled = names(book, ["You: a"], rng=random.Random(1))
    assert rolled == names(book, ["You: a"], rng=random.Random(1)) and rolled != first
    assert names(Lorebook((entry("never", ["a"], probability=0),)), ["a"]) == []
    missed = scan(Lorebook((entry("never", ["a"], probability=0),)), ["a"], words).missed_roll
    assert [a.entry.name for a in missed] == ["never"]
