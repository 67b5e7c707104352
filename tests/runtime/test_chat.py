"""ChatSession: greeting, send, regenerate, undo, edit, atomic save/load, SillyTavern import."""

import itertools
import json
import os

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import Message
from pyg_edge.chat.session import ChatSession, read_chat
from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.errors import ChatFileError
from pyg_edge.generation.sampling import SamplingOptions

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
    from pyg_edge.chat import chat_planner as chat

    monkeypatch.setattr(chat, "UNCACHED_TAIL_TOKENS", 60)
    session = ChatSession(tiny_model, AQUA, SamplingOptions(max_new_tokens=30))
    long_chat(session, 2)
    prefixes = []
    for i in range(8):
        session.history.append(Message("You", f"Question {i}?", True))
        prompt = session.prompt()
        assert prompt.text.startswith(prompt.static_prefix)
        count = tiny_model.tokenizer.count
        if prompt.dropped_messages == 0:  # after a cut, the block waits for the next cut
            assert prompt.token_count - count(prompt.static_prefix) <= 60 + 15
        prefixes.append(prompt.static_prefix)
        session.history.append(Message("Aqua", f"Answer {i}."))
    changes = sum(a != b for a, b in itertools.pairwise(prefixes))
    assert 0 < changes < 4  # frozen for several turns at a time


@pytest.mark.parametrize("fraction", [0.5, DEFAULT_FRACTION])
def test_history_is_trimmed_in_large_steps(tiny_model, fraction):
    session = ChatSession(tiny_model, AQUA, SamplingOptions(max_new_tokens=30),
                          smart_context=fraction)
    long_chat(session, 20)
    first = session.prompt()
    assert first.dropped_messages > 0 and first.token_count <= 256 - 30
    session.history.append(Message("You", "One more?", True))
    second = session.prompt()
    # The cut kept only the fraction of the history room, so no message was dropped now.
    assert second.dropped_messages == first.dropped_messages
    assert second.static_prefix == first.static_prefix
    head = tiny_model.tokenizer.count(first.text.split("<START>")[0])
    assert first.token_count - head <= fraction * (256 - 30 - head) + 15


# Spare replies: several replies per turn, and a regenerate that shows one at once --------

def forbid_model_calls(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was called")

    monkeypatch.setattr(model, "stream", refuse)


def test_regenerate_shows_a_spare_reply_without_calling_the_model(tiny_model, monkeypatch,
                                                                 tmp_path):
    session = ChatSession(tiny_model, AQUA, OPTIONS, replies=3)
    shown = "".join(session.send("Hello!"))
    spares = session.spares
    assert spares and shown not in spares and len(set(spares)) == len(spares)
    forbid_model_calls(tiny_model, monkeypatch)
    assert list(session.regenerate()) == [spares[0]]
    assert session.history[-1] == Message("Aqua", spares[0]) and len(session.history) == 3
    assert session.spares == spares[1:]
    session.save(tmp_path / "chat.jsonl")
    saved = read_chat(tmp_path / "chat.jsonl", "Aqua")
    assert [m.text for m in saved] == ["Are you new here?", "Hello!", spares[0]]


def test_once_the_spares_are_used_regenerate_samples_again(tiny_model, monkeypatch):
    session = ChatSession(tiny_model, AQUA, OPTIONS, replies=2)
    list(session.send("Hello!"))
    assert len(session.spares) == 1
    list(session.regenerate())
    calls = []
    original = tiny_model.stream
    monkeypatch.setattr(tiny_model, "stream",
                        lambda *args, **kwargs: calls.append(kwargs["n"]) or original(*args,
                                                                                       **kwargs))
    assert "".join(session.regenerate()) == session.history[-1].text
    assert calls == [2] and len(session.history) == 3


def test_spares_are_dropped_when_the_chat_changes(tiny_model, monkeypatch):
    session = ChatSession(tiny_model, AQUA, OPTIONS, replies=3)
    list(session.send("Hello!"))
    assert session.spares
    session.edit(1, "Hello there!")  # the user's message: the spares answer another chat
    assert session.spares == ()
    forbid_model_calls(tiny_model, monkeypatch)
    with pytest.raises(AssertionError, match="the model was called"):
        list(session.regenerate())


def test_a_cancelled_turn_keeps_no_spares(tiny_model):
    import threading

    cancel = threading.Event()
    session = ChatSession(tiny_model, AQUA, OPTIONS.with_overrides(max_new_tokens=60),
                          replies=3)
    for _ in session.send("Hello!", cancel=cancel):
        cancel.set()
    assert session.spares == () and session.history[-1].speaker == "Aqua"


def test_greedy_turns_keep_no_copies_of_the_reply(tiny_model):
    session = ChatSession(tiny_model, AQUA, SamplingOptions(temperature=0, max_new_tokens=12),
                          replies=3)
    list(session.send("Hello!"))
    assert session.spares == ()


@pytest.mark.parametrize("replies", [0, -2, 10**6, 1.5])
def test_a_bad_number_of_replies_is_refused(tiny_model, replies):
    with pytest.raises(ValueError, match="expected a whole number from 1 to"):
        ChatSession(tiny_model, AQUA, OPTIONS, replies=replies)
    session = ChatSession(tiny_model, AQUA, OPTIONS)
    with pytest.raises(ValueError, match="expected a whole number from 1 to"):
        session.send("Hello!", replies=replies)
    assert session.history == [Message("Aqua", "Are you new here?")]  # nothing half-done


def full_chat_prompts(model, fraction: float, turns: int = 12) -> list:
    session = ChatSession(model, AQUA, SamplingOptions(max_new_tokens=30),
                          smart_context=fraction)
    long_chat(session, 20)
    prompts = []
    for i in range(turns):
        session.history.append(Message("You", f"Question {i}?", True))
        prompts.append(session.prompt())
        session.history.append(Message("Aqua", f"Answer {i}."))
    return prompts


def test_a_full_chat_is_cut_deep_and_its_block_stays_frozen_until_the_next_cut(tiny_model):
    """ChatSession keeps a full chat as the server's smart context keeps it."""
    prompts = full_chat_prompts(tiny_model, 0.5)
    assert all(p.token_count <= 256 - 30 and p.text.startswith(p.static_prefix)
               for p in prompts)
    blocks = [p.static_prefix for p in prompts]
    assert 2 <= len(set(blocks)) <= 5  # cut again now and then, frozen in between
    for before, after in itertools.pairwise(prompts):
        if after.static_prefix == before.static_prefix:  # a turn read only the new lines
            assert after.text.startswith(before.text.removesuffix("Aqua:"))


def test_the_smart_context_share_sets_how_much_history_a_cut_keeps(tiny_model):
    kept = {f: full_chat_prompts(tiny_model, f, turns=1)[0].dropped_messages
            for f in (0.25, 0.5, 0.75)}
    assert kept[0.25] > kept[0.5] > kept[0.75]  # more dropped, less kept


def test_a_new_turn_while_a_reply_streams_is_refused_and_changes_nothing(tiny_model,
                                                                         slow_engine):
    """A worker thread streams a reply (its prompt pass slowed to 1 s); the UI thread's new
    turns are refused at once and leave the history as it was."""
    import threading
    import time

    from pyg_edge.errors import ReentryError

    slow_engine["pass_s"] = 1.0
    session = ChatSession(tiny_model, AQUA, OPTIONS)
    worker = threading.Thread(target=lambda: list(session.send("Tell me a story.")))
    worker.start()
    time.sleep(0.3)
    before = list(session.history)
    for new_turn in (lambda: session.send("And another?"), session.regenerate,
                     session.reply):
        with pytest.raises(ReentryError, match="still streaming"):
            new_turn()
    assert session.history == before  # the refused turns added nothing
    worker.join(30)
    list(session.send("Now?"))  # once the reply ended, the chat goes on
    assert [m.text for m in session.history if m.is_user][-1] == "Now?"
