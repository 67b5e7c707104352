"""Token probabilities in the shapes the clients read them (SillyTavern 1.12.6's Token
Probabilities panel reads all three):

- OpenAI chat (`logprobs: true, top_logprobs: k`): choice.logprobs.content, one entry per
  token with its top_logprobs list (SillyTavern's Chat Completion sends 5).
- OpenAI text, also text-generation-webui's (`logprobs: k`): choice.logprobs with tokens,
  token_logprobs, top_logprobs ({text: logprob} per token) and text_offset (SillyTavern's
  Text Completion sends 10 and reads each streamed chunk's first top_logprobs entry).
- llama.cpp (`n_probs: k`): completion_probabilities, [{content, probs: [{tok_str, prob}]}],
  probabilities rather than logs, as SillyTavern's llama.cpp type reads them.

Entries are pyg_edge.generation.token_probs.TokenLogprob; each streamed chunk carries those of the
tokens its text shows.
"""

import math


def chat_logprobs(entries) -> dict:
    """OpenAI chat's choice.logprobs."""
    return {"content": [{**_chat_token(e.token, e.logprob),
                         "top_logprobs": [_chat_token(t, lp) for t, _, lp in e.top]}
                        for e in entries]}


def _chat_token(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def text_logprobs(entries, offset: int = 0) -> dict:
    """OpenAI text's choice.logprobs; offset is where the entries' text starts in the reply."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {"tokens": [e.token for e in entries],
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t: lp for t, _, lp in e.top} for e in entries],
            "text_offset": offsets}


def llamacpp_probabilities(entries) -> list:
    """llama.cpp's completion_probabilities, as SillyTavern 1.12.6 reads them."""
    return [{"content": e.token,
             "probs": [{"tok_str": t, "prob": math.exp(lp)} for t, _, lp in e.top]}
            for e in entries]
