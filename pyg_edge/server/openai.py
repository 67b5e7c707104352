"""OpenAI-style /v1/completions and /v1/chat/completions bodies, mapped onto pyg-edge.

Chat messages become a Pygmalion prompt: system messages are the persona, the assistant
is the character (named by the extension field "character", else the name on its
messages, else "Assistant"), and the user is "You".
"""

import time
import uuid

from pyg_edge.characters import USER, Character
from pyg_edge.prompt import Message
from pyg_edge.sampling import SamplingOptions
from pyg_edge.server.params import BadRequest, field, string_list

ROLES = ("system", "user", "assistant")


def parse_options(body: dict, defaults: SamplingOptions, max_length: int,
                  default_tokens: int) -> SamplingOptions:
    """Sampling options from an OpenAI body (penalties other than ours ignored; n: choices)."""
    seed = field(body, "seed", int, None, 0, 2**31 - 1)
    return defaults.with_overrides(
        max_new_tokens=field(body, "max_tokens", int, default_tokens, 1, max_length),
        temperature=field(body, "temperature", float, defaults.temperature, 0.0, 2.0),
        top_p=field(body, "top_p", float, defaults.top_p, 0.0, 1.0) or 1.0,
        top_k=field(body, "top_k", int, defaults.top_k, 0, 100_000),
        repetition_penalty=field(body, "repetition_penalty", float,
                                 defaults.repetition_penalty, 0.01, 10.0),
        stop=string_list(body, "stop"),
        seed=seed,
    )


def completion_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("field 'prompt' must be a string (or a list of one string)")
    return prompt


def chat_parts(body: dict) -> tuple:
    """(Character, history, message) from a chat body; message is None after an assistant turn."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        valid = isinstance(m, dict) and m.get("role") in ROLES
        if not (valid and isinstance(m.get("content"), str)):
            raise BadRequest(f"messages[{i}] needs a role ({', '.join(ROLES)}) and string content")
    names = [m["name"] for m in messages
             if m["role"] == "assistant" and isinstance(m.get("name"), str)]
    name = field(body, "character", str, "") or (names[0] if names else "Assistant")
    persona = "\n".join(m["content"].strip() for m in messages if m["role"] == "system")
    history = [Message(USER, m["content"].strip(), True) if m["role"] == "user"
               else Message(name, m["content"].strip())
               for m in messages if m["role"] != "system"]
    message = None
    if history and history[-1].is_user:
        message = history.pop().text
    return Character(name, persona=persona), history, message


def completion_body(kind: str, model: str, text: str, stats, created: int = 0) -> dict:
    """The JSON of a finished (non-streamed) completion."""
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}}
              if kind == "chat.completion" else {"index": 0, "text": text, "logprobs": None})
    choice["finish_reason"] = _finish(stats.finish_reason)
    return {
        "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind, "created": created or int(time.time()), "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.new_tokens,
                  "total_tokens": stats.prompt_tokens + stats.new_tokens},
    }


def chunk_body(kind: str, model: str, ident: str, piece, finish=None) -> dict:
    """One streamed chunk: a text piece, or (piece None) the final chunk with its reason."""
    if kind == "chat.completion":
        delta = {"content": piece} if piece is not None else {}
        choice = {"index": 0, "delta": delta}
        kind_name = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": piece or "", "logprobs": None}
        kind_name = "text_completion"
    choice["finish_reason"] = _finish(finish) if finish else None
    return {"id": ident, "object": kind_name, "created": int(time.time()), "model": model,
            "choices": [choice]}


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"
