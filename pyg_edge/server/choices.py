"""OpenAI's `n`: several choices from one prompt pass (PygModel.stream_replies).

Choice 0 is generated and streamed as with n = 1; choices 1 to n-1 are sampled beside it
in the same batch. Streamed, they follow choice 0's last chunk, one chunk of whole text
and one finishing chunk each, every chunk holding one choice with its index (the OpenAI
format allows interleaved choices; SillyTavern files chunks with index > 0 as swipes).
"""

from pyg_edge.replies import MAX_REPLIES
from pyg_edge.server import openai
from pyg_edge.server.params import field


def reply_count(body: dict) -> int:
    """The `n` of an OpenAI body: 1 to MAX_REPLIES (each holds its own prompt state).

    Raises:
      BadRequest: n is not a whole number in that range.
    """
    return field(body, "n", int, 1, 1, MAX_REPLIES)


def add_choices(completion: dict, kind: str, others: list) -> dict:
    """Appends choices 1.. (others: (text, finish_reason) pairs) to a finished completion."""
    for index, (text, reason) in enumerate(others, start=1):
        choice = ({"index": index, "message": {"role": "assistant", "content": text}}
                  if kind == "chat.completion" else {"index": index, "text": text,
                                                     "logprobs": None})
        choice["finish_reason"] = _finish(reason)
        completion["choices"].append(choice)
    return completion


def other_chunks(kind: str, model: str, ident: str, others: list) -> list:
    """The streamed chunks of choices 1..: each one's text, then its finishing chunk."""
    chunks = []
    for index, (text, reason) in enumerate(others, start=1):
        for chunk in (openai.chunk_body(kind, model, ident, text),
                      openai.chunk_body(kind, model, ident, None, _finish(reason))):
            chunk["choices"][0]["index"] = index
            chunks.append(chunk)
    return chunks


def spare_texts(others: list) -> list:
    """The other replies worth showing later: finished, not empty, no repeats."""
    kept = []
    for text, reason in others:
        if text and reason != "cancelled" and text not in kept:
            kept.append(text)
    return kept


def _finish(reason: str) -> str:
    # A reply cut short by a client that left is never sent; "stop" as for choice 0.
    return "length" if reason == "length" else "stop"
