"""One chat engine (issue 36): every chat surface plans the same prompt for the same chat,
never leaves out the user's message, and hands back the reply's own stream.

The table drives ChatSession (so `pyg-edge chat` and apps), the web chat route,
/v1/chat/completions and `pyg-edge prompt` with the same card, history and message, on the
bundled demo model (512-token context).
"""

import asyncio
import threading

import pytest
from click.testing import CliRunner

from pyg_edge import demo
from pyg_edge.chat.characters import load_character
from pyg_edge.chat.chat_planner import UNCACHED_TAIL_TOKENS
from pyg_edge.chat.prompt import Message
from pyg_edge.chat.session import ChatSession, write_chat
from pyg_edge.cli import main
from pyg_edge.errors import PromptTooLongError
from pyg_edge.generation.sampling import SamplingOptions
from support.server_harness import RecordingModel, RunningServer

REPLY_TOKENS = 64
OPTIONS = SamplingOptions(temperature=0, max_new_tokens=REPLY_TOKENS)
ROBIN = load_character(demo.DEMO_CHARACTER)
SENTENCE = "I went to the market today and bought apples, bread, cheese and some flowers. "


def history(exchanges: int) -> list:
    chat = [Message("Robin", ROBIN.greeting)]
    for i in range(exchanges):
        chat.append(Message("You", f"Tell me about day {i}. {SENTENCE}".strip(), is_user=True))
        chat.append(Message("Robin", f"Day {i} was sunny. {SENTENCE}".strip()))
    return chat


CASES = {
    "short chat": (history(2), "What is your favorite food?"),
    "history past the context": (history(12), "And what about today?"),
    "a long message: old history goes": (history(6), SENTENCE * 12),
    "a message that fits only without the examples": (history(6), SENTENCE * 22),
}
TOO_LONG = SENTENCE * 25  # over 440 tokens: no room beside the persona and the reply


def openai_messages(chat: list, message: str) -> list:
    """The chat as an OpenAI client sends it: the card as system messages (SillyTavern's
    example_user / example_assistant for the examples), then the turns."""
    messages = [{"role": "system", "content": f"{ROBIN.name}'s Persona: {ROBIN.persona}"}]
    for block in ROBIN.example_dialogue:
        for line in block.split("\n"):
            speaker, _, text = line.partition(": ")
            name = "example_user" if speaker == "You" else "example_assistant"
            messages.append({"role": "system", "name": name, "content": text})
    messages += [{"role": "user" if m.is_user else "assistant", "content": m.text} for m in chat]
    return messages + [{"role": "user", "content": message}]


def webchat_body(chat: list, message: str) -> dict:
    card = {"name": ROBIN.name, "persona": ROBIN.persona, "scenario": ROBIN.scenario,
            "greeting": ROBIN.greeting, "example_dialogue": list(ROBIN.example_dialogue)}
    return {"character": card, "message": message,
            "history": [{"is_user": m.is_user, "text": m.text} for m in chat]}


@pytest.fixture
def server(demo_pyg_model):
    recording = RecordingModel(demo_pyg_model)
    running = RunningServer(recording, defaults=OPTIONS)
    running.recording = recording
    yield running
    running.stop()


def session_prompt(model, chat, message):
    session = ChatSession(model, ROBIN, OPTIONS, history=chat)
    stream = session.send(message)
    stream.close()
    return stream.prompt.text


def webchat_prompt(server, chat, message):
    status, reply = server.request("POST", "/api/pyg-edge/chat/stream",
                                   webchat_body(chat, message))
    return status, reply, server.recording.prompt


def openai_prompt(server, chat, message):
    status, reply = server.request("POST", "/v1/chat/completions", {
        "messages": openai_messages(chat, message), "max_tokens": REPLY_TOKENS,
        "temperature": 0})
    return status, reply, server.recording.prompt


def cli_prompt(model, chat, message, tmp_path):
    history_file = tmp_path / "chat.jsonl"
    write_chat(history_file, ROBIN.name, chat)
    return CliRunner().invoke(main, [
        "prompt", str(model.path), "-c", str(demo.DEMO_CHARACTER), "-m", message,
        "--history", str(history_file), "--max-new-tokens", str(REPLY_TOKENS)])


@pytest.mark.parametrize("case", CASES)
def test_every_surface_plans_the_same_prompt_and_keeps_the_message(demo_pyg_model, server,
                                                                   tmp_path, case):
    chat, message = CASES[case]
    expected = session_prompt(demo_pyg_model, chat, message)
    assert expected.endswith(f"You: {message.strip()}\nRobin:")
    count = demo_pyg_model.tokenizer.count
    assert count(expected) + REPLY_TOKENS <= demo_pyg_model.context_length
    assert webchat_prompt(server, chat, message)[2].text == expected
    status, reply, prompt = openai_prompt(server, chat, message)
    assert status == 200, reply
    assert prompt.text == expected
    result = cli_prompt(demo_pyg_model, chat, message, tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output == expected + "\n"


def test_the_cases_cover_each_cut(demo_pyg_model):
    """The table holds a chat cut at its oldest history, and one cut at its examples."""
    from pyg_edge.chat.chat_planner import plan_first_turn

    count = demo_pyg_model.tokenizer.count
    planned = {case: plan_first_turn(ROBIN, chat, message, count, 512, REPLY_TOKENS)
               for case, (chat, message) in CASES.items()}
    assert planned["short chat"].dropped_messages == 0
    assert planned["history past the context"].dropped_messages > 0
    assert planned["history past the context"].dropped_examples == 0
    assert planned["a message that fits only without the examples"].dropped_examples == 1


def test_a_message_too_long_for_any_surface_is_refused_and_changes_nothing(demo_pyg_model,
                                                                           server, tmp_path):
    chat = history(2)
    session = ChatSession(demo_pyg_model, ROBIN, OPTIONS, history=chat)
    with pytest.raises(PromptTooLongError, match="persona, scenario and message are"):
        session.send(TOO_LONG)
    assert session.history == chat
    status, reply, _ = webchat_prompt(server, chat, TOO_LONG)
    assert status == 400 and "persona, scenario and message are" in reply["error"]["message"]
    status, reply, _ = openai_prompt(server, chat, TOO_LONG)
    assert status == 400 and reply["error"]["type"] == "invalid_request_error"
    assert "persona, scenario and message are" in reply["error"]["message"]
    result = cli_prompt(demo_pyg_model, chat, TOO_LONG, tmp_path)
    assert result.exit_code == 1 and "persona, scenario and message are" in result.output


@pytest.mark.parametrize("exchanges, chars", [(0, 1100), (4, 900)])
def test_a_long_message_reaches_the_model(demo_pyg_model, exchanges, chars):
    """Finding 1: on the demo (196 tokens kept for the reply) a 231-token message used to
    give a 78-token prompt, the persona and examples only; inside a longer chat even a
    196-token message was dropped."""
    message = (SENTENCE * 20)[:chars].strip()
    tokens = demo_pyg_model.tokenizer.count(message)
    assert 190 <= tokens <= 250
    session = ChatSession(demo_pyg_model, ROBIN, SamplingOptions(temperature=0,
                                                                 max_new_tokens=196),
                          history=history(exchanges))
    list(session.send(message))
    assert demo_pyg_model.last_generation.prompt_tokens > tokens
    assert session.history[-2].text == message


def test_the_command_chat_tells_a_message_that_does_not_fit_and_goes_on(demo_pyg_model):
    result = CliRunner().invoke(main, ["chat", str(demo_pyg_model.path), "--temperature", "0",
                                       "--max-new-tokens", "8"],
                                input=f"{SENTENCE * 40}\nHello!\n")  # past the context
    assert result.exit_code == 0, result.output
    assert "(not sent: persona, scenario and message are" in result.output
    assert result.output.count("Robin: ") >= 2  # the greeting, then the reply to "Hello!"


# The reply's own stream -----------------------------------------------------------------

def test_send_returns_a_stream_read_with_async_for(demo_pyg_model):
    session = ChatSession(demo_pyg_model, ROBIN, OPTIONS)

    async def read():
        return [piece async for piece in session.send("Hello!")]

    pieces = asyncio.run(read())
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert session.history[-1] == Message("Robin", "".join(pieces))


def test_stats_say_cancelled_right_after_a_stop_mid_reply(demo_pyg_model, slow_engine):
    """Finding 2: model.last_generation read right after a Stop said "length" (all-zero
    figures on a first call); the stream's own figures are final when the loop ends."""
    slow_engine["step_s"] = 0.05
    session = ChatSession(demo_pyg_model, ROBIN, SamplingOptions(
        temperature=0, max_new_tokens=60, min_new_tokens=60))
    stream = session.send("Tell me about computers.")
    for count, _ in enumerate(stream, start=1):
        if count == 3:
            stream.cancel()  # the app's Stop button
    assert stream.stats.finish_reason == "cancelled"
    assert 3 <= stream.stats.new_tokens < 60 and stream.stats.seconds > 0
    assert stream.state in ("running", "done")
    assert session.history[-1].speaker == "Robin"  # what was shown is kept


def test_a_stopped_reply_ends_its_turn_and_a_new_one_can_start(demo_pyg_model):
    session = ChatSession(demo_pyg_model, ROBIN, OPTIONS)
    stream = session.send("Hello!")
    stream.close()
    assert stream.stats.finish_reason == "cancelled"
    assert "".join(session.send("Are you there?"))


# Several characters in one process --------------------------------------------------------

def test_two_windows_alternating_characters_neither_reload_nor_read_again(demo_pyg_model):
    """Finding 4: every switch reloaded the model and read the whole prompt again."""
    from pyg_edge.chat.characters import Character

    demo_pyg_model.clear_prefix_cache()
    aqua = Character("Aqua", persona="Aqua is a cheerful goddess of water who loves parties.",
                     greeting="Hi! I'm Aqua.", example_dialogue=("You: Hello\nAqua: Hey!",))
    windows = [ChatSession(demo_pyg_model, ROBIN, OPTIONS),
               ChatSession(demo_pyg_model, aqua, OPTIONS)]
    reloads = demo_pyg_model.prefix_cache.reloads
    for turn in range(10):
        window = windows[turn % 2]
        before = demo_pyg_model.cached_prefixes
        stream = window.send(f"Tell me something, turn {turn}.")
        stream.text()
        stats, prompt = stream.stats, stream.prompt
        if turn >= 2:
            assert demo_pyg_model.prefix_cache.reloads == reloads, f"turn {turn} reloaded"
            # The window's cached block survived the other window's turn: the turn reads
            # only what follows it (CTranslate2 reads a new static prefix whole, so the
            # block moves on only past UNCACHED_TAIL_TOKENS: chat_planner).
            ids = demo_pyg_model.tokenizer.encode(prompt.text)
            assert tuple(ids[:stats.cached_tokens]) in before
            assert stats.read_tokens == stats.prompt_tokens - stats.cached_tokens
            assert stats.read_tokens <= UNCACHED_TAIL_TOKENS
    assert len(demo_pyg_model.cached_prefixes) >= 2


def test_a_shared_completions_keeps_each_chat_s_block_apart(demo_pyg_model):
    from pyg_edge.chat.completions import Completions

    shared = Completions(demo_pyg_model)
    first = ChatSession(demo_pyg_model, ROBIN, OPTIONS, history=history(3), completions=shared)
    second = ChatSession(demo_pyg_model, ROBIN, OPTIONS, history=history(1),
                         completions=shared)
    assert first.prompt().text != second.prompt().text
    assert first.prompt().text == ChatSession(demo_pyg_model, ROBIN, OPTIONS,
                                              history=history(3)).prompt().text


def test_one_reply_at_a_time_per_chat_across_threads(demo_pyg_model, slow_engine):
    from pyg_edge.errors import ReentryError

    slow_engine["step_s"] = 0.02
    session = ChatSession(demo_pyg_model, ROBIN, OPTIONS)
    stream = session.send("Hello!")
    errors = []
    worker = threading.Thread(target=lambda: errors.extend(
        [e for e in [_try(session.send, "Again?")] if e]))
    worker.start()
    worker.join()
    assert isinstance(errors[0], ReentryError)
    stream.text()
    assert session.history[-2].text == "Hello!"


def _try(call, *args):
    try:
        call(*args).close()
    except Exception as error:  # noqa: BLE001  returned for the assertion
        return error
    return None


def test_a_client_that_trims_its_full_chat_reads_only_new_lines_between_cuts(demo_pyg_model):
    """SillyTavern's Chat Completion drops its oldest messages once its context is full:
    the planner cuts deep, and finds its kept block in the next requests until the client's
    trimming reaches it (on the demo's 512 tokens, a cut every third turn; reading every
    prompt whole, 15 of these 20 turns read everything)."""
    from pyg_edge.chat.completions import Completions

    completions, count = Completions(demo_pyg_model), demo_pyg_model.tokenizer.count
    card = "\n".join([f"Robin's Persona: {ROBIN.persona}", "<START>", *ROBIN.example_dialogue])
    chat, full_reads, turns, reply = history(2), 0, 20, 4
    for turn in range(turns):
        message = f"Tell me about day {turn}, please."
        kept = list(chat)
        while count("\n".join([card, *(m.render() for m in kept), f"You: {message}"])) > (
                demo_pyg_model.context_length - reply - 8):
            kept.pop(0)  # the client's own budget: its context less the reply
        stream = completions.create_chat_completion(openai_messages(kept, message), OPTIONS,
                                                    max_new_tokens=reply)
        stream.text()
        stats = stream.stats
        if stats.read_tokens == stats.prompt_tokens:
            full_reads += 1
        else:
            assert stats.read_tokens == stats.prompt_tokens - stats.cached_tokens
        chat += [Message("You", message, True),
                 Message("Robin", f"Day {turn} was sunny. {SENTENCE}".strip())]
    assert full_reads <= 8, f"{full_reads} of {turns} turns read their whole prompt"


def test_the_next_turn_and_a_regenerate_read_only_what_follows_the_users_message(
        demo_pyg_model):
    """A turn that freezes a new block freezes the user's message with it: the next turn
    reads the reply and its own message, a regenerate only the reply's turn line."""
    demo_pyg_model.clear_prefix_cache()
    session = ChatSession(demo_pyg_model, ROBIN, OPTIONS, history=history(8))
    first = session.send("What did you do first?")
    first.text()
    assert first.prompt.message_frozen  # the whole chat outgrew the uncached tail
    count = demo_pyg_model.tokenizer.count
    assert first.stats.cached_tokens >= first.stats.prompt_tokens - count("\nRobin:") - 1
    again = session.regenerate()
    again.text()
    assert again.stats.read_tokens <= count("\nRobin:") + 1
    second = session.send("And after that?")
    second.text()
    reply_and_turn = count(f"{session.history[-3].text}\nYou: And after that?\nRobin:")
    assert second.stats.read_tokens <= reply_and_turn + 4
