"""ChatSession: greeting, send, regenerate, undo, edit, atomic save/load, SillyTavern import."""

import itertools
import json
import os

import pytest

from pyg_edge.characters import Character
from pyg_edge.chat import ChatSession, read_chat
from pyg_edge.errors import ChatFileError
from pyg_edge.prompt import Message
from pyg_edge.sampling import SamplingOptions

AQUA = Character("Aqua", persona="A goddess of water.", greeting="Are you new here?")
OPTIONS = SamplingOptions(temperature=1.0, top_k=20, max_new_tokens=12)


@pytest.fixture
def session(tiny_model):
    return ChatSession(tiny_model, AQUA, OPTIONS)


def test_the_greeting_opens_the_chat(session):
    assert session.history == [Message("Aqua", "Are you new here?")]


def test_send_streams_a_reply_and_records_both_messages(session):
    reply = "".join(session.send("  Hello!  "))
    assert session.history[1] == Message("You", "Hello!", is_user=True)
    assert session.history[2] == Message("Aqua", reply) and len(session.history) == 3


def test_the_prompt_ends_with_the_characters_turn(session):
    list(session.send("Hello!"))
    session.history.append(Message("You", "And?", is_user=True))
    assert session.prompt().text.endswith("You: Hello!\nAqua: " + session.history[2].text
                                          + "\nYou: And?\nAqua:")


def test_regenerate_replaces_only_the_last_reply(session):
    list(session.send("Hello!"))
    before = list(session.history)
    list(session.regenerate())
    assert session.history[:2] == before[:2] and len(session.history) == 3


def test_undo_removes_the_last_exchange(session):
    list(session.send("Hello!"))
    list(session.send("Bye!"))
    removed = session.undo()
    assert [m.text for m in removed][0] == "Bye!" and len(removed) == 2
    assert len(session.history) == 3 and session.history[-1].speaker == "Aqua"


def test_edit_changes_a_message_in_place(session):
    list(session.send("Hello!"))
    session.edit(-1, " Fixed reply ")
    assert session.history[-1] == Message("Aqua", "Fixed reply")


def test_a_cancelled_reply_keeps_what_was_shown(session):
    pieces = session.send("Hello!")
    first = next(pieces)
    pieces.close()
    assert session.history[-1] == Message("Aqua", first)


def test_save_and_load_round_trip_in_sillytavern_layout(session, tmp_path):
    list(session.send("Hello! ✨"))
    path = tmp_path / "chat.jsonl"
    session.save(path)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["character_name"] == "Aqua" and "mes" not in lines[0]
    assert lines[2] == {**lines[2], "name": "You", "is_user": True, "mes": "Hello! ✨"}
    saved = list(session.history)
    session.history = []
    session.load(path)
    assert session.history == saved


def test_a_crash_mid_save_keeps_the_old_file(session, tmp_path, monkeypatch):
    path = tmp_path / "chat.jsonl"
    session.save(path)
    old = path.read_bytes()
    list(session.send("Hello!"))

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ChatFileError, match="No space left"):
        session.save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["chat.jsonl"]


def test_a_sillytavern_chat_imports(tmp_path):
    path = tmp_path / "st.jsonl"
    path.write_text(
        '{"user_name":"Anon","character_name":"Aqua","create_date":"2023-5-1 @12h"}\n'
        '{"name":"Aqua","is_user":false,"is_name":true,"send_date":"x","mes":"Hi!\\r\\nWelcome."}\n'
        '{"name":"Anon","is_user":true,"is_name":true,"send_date":"y","mes":"Thanks"}\n',
        encoding="utf-8")
    assert read_chat(path, "Aqua") == [
        Message("Aqua", "Hi!\nWelcome."), Message("You", "Thanks", is_user=True)]


@pytest.mark.parametrize("content, message", [
    ('{"user_name": "x"}\n{"name": "A"}\n', "line 2: not a chat message"),
    ('{"user_name": "x"}\nnot json\n', "line 2: not JSON"),
])
def test_a_broken_chat_file_is_named(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ChatFileError, match=message):
        read_chat(path)


def long_chat(session, turns):
    for i in range(turns):
        session.history.append(Message("You", f"Tell me story number {i}, please.", True))
        session.history.append(Message("Aqua", f"Story {i}: once upon a time there was a sea."))


def test_the_cached_prefix_stays_put_until_the_tail_grows(tiny_model, monkeypatch):
    from pyg_edge import chat

    monkeypatch.setattr(chat, "UNCACHED_TAIL_TOKENS", 60)
    session = ChatSession(tiny_model, AQUA, SamplingOptions(max_new_tokens=30))
    long_chat(session, 2)
    prefixes = []
    for i in range(8):
        session.history.append(Message("You", f"Question {i}?", True))
        prompt = session.prompt()
        assert prompt.text.startswith(prompt.static_prefix)
        count = tiny_model.tokenizer.count
        assert prompt.token_count - count(prompt.static_prefix) <= 60 + 15
        prefixes.append(prompt.static_prefix)
        session.history.append(Message("Aqua", f"Answer {i}."))
    changes = sum(a != b for a, b in itertools.pairwise(prefixes))
    assert 0 < changes < 4  # frozen for several turns at a time


def test_history_is_trimmed_in_large_steps(tiny_model):
    session = ChatSession(tiny_model, AQUA, SamplingOptions(max_new_tokens=30))
    long_chat(session, 20)
    first = session.prompt()
    assert first.dropped_messages > 0 and first.token_count <= 256 - 30
    session.history.append(Message("You", "One more?", True))
    second = session.prompt()
    # The first trim left room (a quarter of the context), so no message was dropped now.
    assert second.dropped_messages == first.dropped_messages
    assert first.token_count <= 256 - 30 - 256 // 4 + 10
