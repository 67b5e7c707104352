"""Contract: SillyTavern's Chat Completion (Custom, OpenAI-compatible) with its default
prompt manager: messages without names, no character field, max_tokens 300."""

import re

import pytest

from pyg_edge.chat.prompt import Prompt
from support.client_payloads import PERSONA, st_chat_custom, st_chat_messages
from support.server_harness import CLIENT_MAX_LENGTH

LIMIT, CONTEXT = CLIENT_MAX_LENGTH, 512  # the server's --max-length, the demo's context
EXAMPLES = [("Hi Aqua!", "Hello! I am Aqua, the goddess of water."),
            ("What do you like?", "Parties and cold drinks!")]
CHAT = ["Hello, how are you?", "I am fine, thank you!", "Shall we go to the lake today?"]
SPEAKER_LINE = re.compile(r"^(You|User|Aqua|Character):", re.MULTILINE)


def chat(server, messages, **fields):
    status, reply = server.request("POST", "/v1/chat/completions",
                                   {**st_chat_custom(messages), **fields})
    assert status == 200, reply
    text = reply["choices"][0]["message"]["content"]
    assert text.strip() and not SPEAKER_LINE.search(text)  # never another speaker's line
    return reply


def test_sillytavern_custom_chat_gets_a_reply_as_the_named_character(server, recording):
    messages = st_chat_messages(PERSONA, EXAMPLES, "Welcome, I'm Aqua!", CHAT)
    reply = chat(server, messages)
    prompt = recording.prompt
    assert isinstance(prompt, Prompt) and prompt.text.endswith(f"You: {CHAT[-1]}\nAqua:")
    assert prompt.text.startswith("Aqua's Persona: Write Aqua's next reply")
    assert "[Start a new Chat]" not in prompt.text and "[Example Chat]" not in prompt.text
    assert "<START>\nYou: Hi Aqua!\nAqua: Hello! I am Aqua" in prompt.text
    assert "Aqua: Welcome, I'm Aqua!\nYou: Hello, how are you?" in prompt.text
    assert "\nUser:" in recording.options.stop and "\nYou:" in prompt.stop_strings
    assert recording.options.max_new_tokens == LIMIT  # max_tokens 300 clamped
    assert any("max new tokens 300" in w for w in reply["warnings"])


def test_a_nameless_chat_without_hints_uses_a_neutral_speaker(server, recording):
    chat(server, [{"role": "system", "content": "A goddess of water."},
                  {"role": "user", "content": "Hello!"}])
    assert recording.prompt.text == ("Character's Persona: A goddess of water.\n<START>\n"
                                     "You: Hello!\nCharacter:")


def test_a_pygmalion_persona_and_placeholders_name_the_character(server, recording):
    chat(server, [{"role": "system", "content": "Aqua's Persona: {{char}} likes {{user}}."},
                  {"role": "user", "content": [{"type": "text", "text": "Hi {{char}}!"}]}])
    assert recording.prompt.text == ("Aqua's Persona: Aqua likes You.\n<START>\n"
                                     "You: Hi Aqua!\nAqua:")


def test_messages_names_and_character_field_still_win(server, recording):
    messages = [{"role": "system", "content": "Write Aqua's next reply."},
                {"role": "assistant", "name": "Megumin", "content": "Explosion!"},
                {"role": "user", "content": "Again?"}]
    chat(server, messages)
    assert recording.prompt.text.endswith("Megumin:")
    chat(server, messages, character="Kazuma")
    assert recording.prompt.text.endswith("Kazuma:")


def test_an_over_long_chat_keeps_the_persona_and_drops_old_messages(server, recording):
    long_chat = CHAT * 60 + [CHAT[0]]
    reply = chat(server, st_chat_messages(PERSONA, EXAMPLES, "Welcome!", long_chat))
    prompt = recording.prompt
    assert prompt.text.startswith("Aqua's Persona: Write Aqua's next reply") and PERSONA in \
        prompt.text
    assert prompt.token_count + LIMIT <= CONTEXT and prompt.dropped_messages > 100
    assert reply["usage"]["prompt_tokens"] == prompt.token_count


def test_a_persona_longer_than_the_context_is_refused_as_every_chat_surface_refuses_it(
        server, recording):
    # One rule on every chat surface (tests/runtime/test_chat_surfaces.py): the persona and
    # the user's message are never cut; what cannot fit beside them is a PromptTooLongError.
    before = recording.prompt
    status, reply = server.request("POST", "/v1/chat/completions", st_chat_custom(
        [{"role": "system", "content": PERSONA * 40}, {"role": "user", "content": "Hello!"}]))
    assert status == 400 and reply["error"]["type"] == "invalid_request_error"
    assert "persona, scenario and message are" in reply["error"]["message"]
    assert recording.prompt is before  # refused before the model was asked
    chat(server, [{"role": "user", "content": "Hello!"}])  # and the server goes on


def test_custom_chat_streams(server):
    messages = st_chat_messages(PERSONA, EXAMPLES, "Welcome!", CHAT)
    events = server.events("/v1/chat/completions", st_chat_custom(messages, stream=True))
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text.strip() and not SPEAKER_LINE.search(text)


@pytest.mark.parametrize("body, fragment", [
    ({"messages": [{"role": "user", "content": "Hi"}], "n": 9}, "field 'n' is 9, expected 1 to 8"),
    ({"messages": "Hi"}, "non-empty list"),
    ({"messages": [{"role": "user", "content": "Hi"}], "temperature": "warm"}, "must be float"),
])
def test_chat_errors_have_the_openai_shape(server, body, fragment):
    status, reply = server.request("POST", "/v1/chat/completions", body)
    assert status == 400 and fragment in reply["error"]["message"]
    assert reply["error"]["type"] == "invalid_request_error"
