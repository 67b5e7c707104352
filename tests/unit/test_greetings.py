"""Alternate greetings: an app opens the chat with any of the card's first messages."""

from types import SimpleNamespace

import pytest

from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import Message
from pyg_edge.chat.session import ChatSession

AQUA = Character("Aqua", greeting="Hi!", alternate_greetings=("Yo.", "Hey there."))
# Choosing a greeting runs no model: a stand-in with what a session reads when it starts.
NO_MODEL = SimpleNamespace(tokenizer=SimpleNamespace(count=len), prefill_chunk=0,
                           context_length=512)


def test_use_greeting_replaces_the_opening_message():
    session = ChatSession(NO_MODEL, AQUA)
    assert session.history == [Message("Aqua", "Hi!")]
    assert session.use_greeting(2) == "Hey there."
    assert session.history == [Message("Aqua", "Hey there.")]
    session.use_greeting(0)
    assert session.history == [Message("Aqua", "Hi!")]


def test_use_greeting_refuses_a_missing_greeting_and_a_begun_chat():
    session = ChatSession(NO_MODEL, AQUA)
    with pytest.raises(ValueError, match="0 to 2"):
        session.use_greeting(3)
    session.history.append(Message("You", "hello", is_user=True))
    with pytest.raises(ValueError, match="has begun"):
        session.use_greeting(1)
    assert session.history[0].text == "Hi!"
