"""Character cards in every supported format, and the errors broken ones give."""

import json

import pytest

from pyg_edge.chat.characters import Character, load_character
from pyg_edge.errors import CharacterError
from support.cards import EXAMPLES, TAVERN_V1, b64, png_with_text

EXPECTED = Character(
    name="Aqua",
    persona="A goddess of water.\nCheerful, carefree.",
    scenario="Aqua stands in the square of Axel.",
    greeting="*waves at You* Are you new here?",
    example_dialogue=("You: Hi Aqua!\nAqua: *waves* Hello, You.", "You: Bye\nAqua: Bye!"),
)
def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


def test_tavern_v1_json(tmp_path):
    assert load_character(write(tmp_path, "aqua.json", TAVERN_V1)) == EXPECTED


def test_chara_card_v2_json_uses_data_over_top_level(tmp_path):
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "name": "Old",
            "data": {**TAVERN_V1, "tags": [], "extensions": {}}}
    assert load_character(write(tmp_path, "aqua.json", card)) == EXPECTED


def test_pygmalion_gradio_json(tmp_path):
    card = {"char_name": "Aqua", "char_persona": "A goddess of water.\nCheerful, carefree.",
            "world_scenario": "Aqua stands in the square of Axel.",
            "char_greeting": "*waves at <USER>* Are you new here?", "example_dialogue": EXAMPLES}
    assert load_character(write(tmp_path, "aqua.json", card)) == EXPECTED


def test_png_card_with_chara_chunk(tmp_path):
    path = write(tmp_path, "aqua.png", png_with_text({"chara": b64(TAVERN_V1)}))
    assert load_character(path) == EXPECTED


def test_png_card_prefers_ccv3_chunk(tmp_path):
    v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": TAVERN_V1}
    stale = {**TAVERN_V1, "name": "Stale"}
    path = write(tmp_path, "aqua.png", png_with_text({"chara": b64(stale), "ccv3": b64(v3)}))
    assert load_character(path) == EXPECTED


def test_utf8_bom_and_crlf_are_normalised(tmp_path):
    path = write(tmp_path, "aqua.json", b"\xef\xbb\xbf" + json.dumps(TAVERN_V1).encode())
    assert load_character(path) == EXPECTED


@pytest.mark.parametrize("data, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a character card"),
    (json.dumps({"description": "no name"}).encode(), "no character name"),
    (json.dumps({"name": "X", "description": 5}).encode(), "not text"),
    (png_with_text({"Software": b"paint"}), "no chara chunk"),
    (png_with_text({"chara": b"!!!not base64!!!"}), "not base64 JSON"),
    (png_with_text({"chara": b64(TAVERN_V1)})[:40], "truncated PNG"),
    (b"\xff\xfe\x00garbage", "neither UTF-8 JSON nor PNG"),
])
def test_a_broken_card_is_one_clear_error(tmp_path, data, message):
    with pytest.raises(CharacterError, match=message):
        load_character(write(tmp_path, "card.bin", data))


def test_a_missing_card_is_named(tmp_path):
    with pytest.raises(CharacterError, match="cannot read character card"):
        load_character(tmp_path / "nope.json")
