"""The whole V2/V3 card: every field used or named in the load notice, PNG = JSON."""

import json
import logging
from pathlib import Path

import pytest

from pyg_edge.chat.characters import character_from_card, load_character
from pyg_edge.chat.lorebook import LoreEntry, activate
from support.cards import b64, png_with_text

SERAPHINA = Path("/work/shared/data/cards/ST_default_Seraphina.png")
# SillyTavern's default card, from the shared data beside the repository (not shipped).
needs_seraphina = pytest.mark.skipif(not SERAPHINA.is_file(), reason=f"needs {SERAPHINA}")
ENTRY = {  # every field of a V3 entry, and SillyTavern's extensions
    "keys": ["{{char}}'s sword"], "secondary_keys": ["shield"], "content": "The sword.",
    "enabled": True, "insertion_order": 7, "case_sensitive": True, "use_regex": False,
    "constant": False, "name": "Sword", "priority": 3, "id": 9, "comment": "a comment",
    "selective": True, "position": "after_char",
    "extensions": {
        "position": 4, "depth": 2, "probability": 60, "useProbability": True,
        "selectiveLogic": 3, "scan_depth": 5, "case_sensitive": True,
        "match_whole_words": True, "exclude_recursion": True, "prevent_recursion": True,
        "delay_until_recursion": False, "display_index": 0, "group": "weapons",
        "group_override": True, "group_weight": 50, "use_group_scoring": True,
        "automation_id": "auto", "role": 1, "vectorized": True, "sticky": 2,
        "cooldown": 3, "delay": 1,
    },
}
FULL_V3 = {
    "spec": "chara_card_v3", "spec_version": "3.0",
    "data": {
        "name": "Aqua", "description": "A goddess.", "personality": "Cheerful.",
        "scenario": "Axel.", "first_mes": "Hi {{user}}!", "mes_example": "<START>\nYou: a",
        "creator_notes": "Be nice.", "system_prompt": "You are {{char}}.",
        "post_history_instructions": "Stay in character.",
        "alternate_greetings": ["Yo {{user}}.", "  "], "tags": ["goddess", "water"],
        "creator": "me", "character_version": "2", "nickname": "Aqua-sama",
        "creator_notes_multilingual": {"en": "Be nice (en).", "ja": "..."},
        "source": ["https://example.org/aqua"], "group_only_greetings": ["Hi all."],
        "creation_date": 1700000000, "modification_date": 1700000001,
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
                   {"type": "background", "uri": "embeded://bg.png", "name": "main",
                    "ext": "png"}],
        "extensions": {"talkativeness": "0.5", "fav": False, "world": "Axel",
                       "depth_prompt": {"prompt": "Be wet.", "depth": 4}},
        "character_book": {"name": "Axel", "description": "d", "scan_depth": 4,
                           "token_budget": 300, "recursive_scanning": True,
                           "extensions": {"x_tool": 1}, "entries": [ENTRY]},
    },
}


def test_every_v2_and_v3_field_is_used_or_named_in_the_notice(caplog):
    with caplog.at_level(logging.INFO, logger="pyg_edge"):
        aqua = character_from_card(FULL_V3, "aqua.json")
    notice = aqua.notice
    assert [r.getMessage() for r in caplog.records] == [notice]  # one notice, logged
    # Used: the prompt fields, greetings, notes, metadata, the lorebook.
    assert aqua.persona == "A goddess.\nCheerful." and aqua.scenario == "Axel."
    assert aqua.greeting == "Hi You!" and aqua.alternate_greetings == ("Yo You.",)
    assert aqua.greetings == ("Hi You!", "Yo You.")
    assert aqua.creator_notes == "Be nice (en)."  # V3: the English one of the multilingual
    assert aqua.system_prompt == "You are Aqua-sama."  # V3: {{char}} is the nickname
    assert aqua.post_history_instructions == "Stay in character."
    assert dict(aqua.metadata) == {
        "creator": "me", "character_version": "2", "tags": "goddess, water",
        "source": "https://example.org/aqua", "creation_date": "1700000000",
        "modification_date": "1700000001", "creator_notes_multilingual": "en, ja"}
    book = aqua.book
    assert (book.name, book.scan_depth, book.token_budget, book.recursive_scanning) == (
        "Axel", 4, 300, True)
    [sword] = book.entries
    assert sword == LoreEntry(
        content="The sword.", keys=("Aqua-sama's sword",), secondary_keys=("shield",),
        logic="AND_ALL", selective=True, constant=False, enabled=True, insertion_order=7,
        priority=3.0, position="at_depth", depth=2, case_sensitive=True,
        match_whole_words=True, use_regex=False, scan_depth=5, probability=60.0,
        exclude_recursion=True, prevent_recursion=True, delay_until_recursion=False,
        name="Sword")
    # Named: what pyg-edge reads but does not apply.
    for named in ("system_prompt", "post_history_instructions", "group_only_greetings",
                  "extensions.talkativeness", "extensions.world 'Axel'",
                  "extensions.depth_prompt", "assets (1", "character_book.extensions.x_tool",
                  *(f"'Sword': extensions.{k}" for k in (
                      "group", "group_override", "group_weight", "use_group_scoring",
                      "automation_id", "role", "vectorized", "sticky", "cooldown",
                      "delay"))):
        assert named in notice, named
    assert "fav" not in notice  # false: nothing to apply
    assert notice.startswith("Aqua (aqua.json): read but not applied: ")


def test_a_card_with_nothing_unapplied_has_no_notice(caplog):
    card = {"spec": "chara_card_v2", "data": {"name": "Aqua", "first_mes": "Hi",
                                              "alternate_greetings": ["Yo"],
                                              "system_prompt": "", "extensions": {}}}
    with caplog.at_level(logging.INFO, logger="pyg_edge"):
        assert character_from_card(card).notice == ""
    assert not caplog.records


def test_a_png_and_a_json_form_of_the_same_card_give_the_same_character(tmp_path):
    (tmp_path / "aqua.json").write_text(json.dumps(FULL_V3))
    (tmp_path / "aqua.png").write_bytes(png_with_text({"ccv3": b64(FULL_V3)}))
    from_json = load_character(tmp_path / "aqua.json")
    from_png = load_character(tmp_path / "aqua.png")
    assert from_png == from_json.__class__(**{
        **from_json.__dict__, "notice": from_json.notice.replace("aqua.json", "aqua.png")})


@needs_seraphina
def test_sillytavern_default_card_book_is_read_and_activates():
    seraphina = load_character(SERAPHINA)
    assert len(seraphina.book.entries) == 4
    assert seraphina.book.entries[0].keys == ("eldoria", "wood", "forest", "magical forest")
    assert seraphina.book.entries[0].content.startswith('You: "What is Eldoria?"\nSeraphina:')
    assert "extensions.world 'Eldoria'" in seraphina.notice
    chat = ["Seraphina: Rest now.", "You: Where am I? What is this glade?"]
    fired = activate(seraphina.book, chat, lambda text: len(text.split()))
    assert [(a.entry.name, a.key, a.message) for a in fired] == [("#2", "glade", 1)]


def test_v3_decorators_are_applied_or_named():
    def book_of(content):
        card = {"spec": "chara_card_v3", "data": {"name": "A", "character_book": {
            "entries": [{"keys": ["k"], "content": content, "enabled": True,
                         "insertion_order": 0, "use_regex": False, "extensions": {}}]}}}
        character = character_from_card(card)
        return character.book.entries[0], character.notice

    entry, notice = book_of("@@activate\n@@depth 1\n@@risu_only 3\n@@@scan_depth 7\nText")
    assert entry.content == "Text" and entry.constant and entry.position == "at_depth"
    assert entry.depth == 1 and entry.scan_depth == 7 and notice == ""
    entry, notice = book_of("@@dont_activate\n@@is_greeting 1\nText")
    assert not entry.enabled and "decorator @@is_greeting" in notice


def test_sillytavern_written_entries_keep_plain_keys_plain():
    card = {"spec": "chara_card_v2", "data": {"name": "A", "character_book": {"entries": [
        {"keys": ["Dr. Who (1963)"], "content": "c", "enabled": True, "insertion_order": 0,
         "use_regex": True, "extensions": {"selectiveLogic": 0, "display_index": 0}}]}}}
    [entry] = character_from_card(card).book.entries
    assert not entry.use_regex
    assert activate(character_from_card(card).book, ["You: dr. who (1963)?"], len)
