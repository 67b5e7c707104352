"""Smart context through a model: SillyTavern-shaped chats through the library's Completions
(as the server runs them), every turn checked against an uncached run of what the model read."""

import asyncio

import pytest

from pyg_edge.chat.completions import Completions
from pyg_edge.generation.sampling import SamplingOptions
from support.sillytavern_prompt import chat_prompts

GREEDY = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(),
                         stop=("\nYou:", "\nAqua:"), max_new_tokens=6)


def replay(model, turns: int, fraction: float = 0.5, context: int = 256, response: int = 32):
    """A SillyTavern chat through Completions (the async calls, as the server makes them):
    per turn, (read text, stats, reply, the client's prompt)."""
    count = model.tokenizer.count
    prompts = chat_prompts(turns, count, context, response, reply_words=8)
    completions = Completions(model, smart_context=fraction)
    # The client's room for the prompt is context - response.
    client_context = context - response + GREEDY.max_new_tokens

    async def run():
        rows = []
        for text in prompts:
            # As sent: a few prompts are over the room, which create_completion would cut.
            stream = completions.complete_prompt(text, GREEDY, context=client_context)
            pieces = [chunk.text async for chunk in stream]
            rows.append((completions.planner.last_read, stream.stats, "".join(pieces), text))
        return rows

    return asyncio.run(run())


@pytest.mark.parametrize("chunked", [False, True])
def test_every_turn_of_a_full_chat_equals_an_uncached_run_of_what_the_model_read(
        tiny_model, one_pass_tiny_model, chunked, caplog):
    model = tiny_model if chunked else one_pass_tiny_model
    caplog.set_level("INFO", logger="pyg_edge")
    rows = replay(model, 24)
    shortened = [r for r in rows if r[0] != r[3]]
    assert len(shortened) >= 8  # the chat was full for many turns and was kept short
    for read, stats, reply, _ in rows:
        assert reply == model.generate(read, GREEDY)  # uncached: no static prefix
        assert stats.prompt_tokens == model.tokenizer.count(read)
    # After the first cut, most turns read only what follows the kept block.
    full = rows[rows.index(shortened[0]):]
    cheap = [s for _, s, _, _ in full if s.read_tokens <= s.prompt_tokens // 2]
    assert len(cheap) >= len(full) / 2
    assert "smart context (cut): kept" in caplog.text
    assert "smart context (match): kept" in caplog.text
