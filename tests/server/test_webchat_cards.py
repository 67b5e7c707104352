"""The web chat's card routes: the whole card comes back to the page, and its turns carry
the page's reply length and temperature."""

import json
from pathlib import Path

import pytest

from pyg_edge.generation.sampling import SamplingOptions
from support.server_harness import RecordingModel, RunningServer

SERAPHINA = Path("/work/shared/data/cards/ST_default_Seraphina.png")
# SillyTavern's default card, from the shared data beside the repository (not shipped).
needs_seraphina = pytest.mark.skipif(not SERAPHINA.is_file(), reason=f"needs {SERAPHINA}")


@pytest.fixture(scope="module")
def recorded(tiny_model):
    model = RecordingModel(tiny_model)
    running = RunningServer(model, max_length=40, defaults=SamplingOptions(max_new_tokens=8))
    yield running, model
    running.stop()


def upload(server, raw, name):
    return server.request("POST", f"/api/pyg-edge/character?name={name}", raw=raw,
                          headers={"Content-Type": "application/octet-stream"})


@needs_seraphina
def test_an_uploaded_card_comes_back_whole(recorded):
    server, _ = recorded
    status, seraphina = upload(server, SERAPHINA.read_bytes(), "seraphina.png")
    assert status == 200, seraphina
    assert seraphina["name"] == "Seraphina" and seraphina["greeting"].startswith("*You wake")
    assert seraphina["creator_notes"].startswith("ST Default Bot contest winner")
    assert seraphina["metadata"]["creator"] == "OtisAlejandro"
    assert len(seraphina["character_book"]["entries"]) == 4
    assert "extensions.world 'Eldoria'" in seraphina["notice"]
    assert seraphina["alternate_greetings"] == []


def test_the_page_sends_the_card_back_with_its_options(recorded):
    server, model = recorded
    card = {"spec": "chara_card_v2", "data": {
        "name": "Aqua", "first_mes": "Hi.", "alternate_greetings": ["Hello again."],
        "character_book": {"entries": [{"keys": ["sea"], "content": "Aqua loves the sea.",
                                        "enabled": True, "insertion_order": 1}]}}}
    _, aqua = upload(server, json.dumps(card).encode(), "aqua.json")
    assert aqua["alternate_greetings"] == ["Hello again."]
    events = server.events("/api/pyg-edge/chat/stream", {
        "character": aqua, "history": [], "message": "Hi",
        "max_new_tokens": 5, "temperature": 0.0})
    assert events[-1]["finish_reason"] in ("stop", "length")
    assert model.options.max_new_tokens == 5 and model.options.temperature == 0.0
    server.events("/api/pyg-edge/chat/stream", {
        "character": aqua, "history": [], "message": "Hi", "max_new_tokens": 900})
    assert model.options.max_new_tokens == 40  # never past serve --max-length
    assert "Aqua loves the sea." not in str(model.prompt)
    server.events("/api/pyg-edge/chat/stream", {
        "character": aqua, "history": [], "message": "The sea?", "max_new_tokens": 4})
    assert "Aqua loves the sea." in str(model.prompt)  # the card's lorebook, applied


@pytest.mark.parametrize("character, fragment", [
    ({"name": "A", "character_book": {"entries": 5}}, "character_book"),
    ({"name": "A", "alternate_greetings": [1]}, "alternate_greetings"),
    ({"name": "A", "character_book": {"entries": [{"keys": 3}]}}, "keys"),
])
def test_a_bad_card_from_the_page_is_a_400_naming_the_field(recorded, character, fragment):
    server, _ = recorded
    status, reply = server.request("POST", "/api/pyg-edge/chat/stream",
                                   {"character": character, "history": [], "message": "Hi"})
    assert status == 400 and fragment in str(reply)
