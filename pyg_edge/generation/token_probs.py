"""Token log-probabilities of a reply, for clients that show them (SillyTavern's Token
Probabilities panel): the chosen token's and, when asked, the likeliest alternatives.

They come from the model's logits at each step (CTranslate2's return_logits_vocab, read in
generate_batch's step callback), before temperature, top-k or top-p: the model's own view,
as OpenAI reports it. Generation that does not ask for them runs as before, without the
logits copy (50,257 floats a step).
"""

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pyg_edge.generation.batches import BATCH_DONE, wait_for_batch

# OpenAI allows 20 alternatives per token; SillyTavern asks for 5 (chat) or 10 (text).
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token.

    Attributes:
      token: Its text (a token that holds part of a character shows U+FFFD).
      token_id: Its id in the vocabulary.
      logprob: Its natural-log probability under the model.
      top: The likeliest tokens at that step, likeliest first, as (text, id, logprob);
        empty when only the chosen token's log-probability was asked for.
    """

    token: str
    token_id: int
    logprob: float
    top: tuple = ()


class TextPiece(str):
    """A piece of streamed reply text, with the log-probabilities of the tokens it shows."""

    logprobs: tuple = ()

    def __new__(cls, text: str, logprobs: tuple):
        piece = super().__new__(cls, text)
        piece.logprobs = logprobs
        return piece


def token_logprob(logits, token_id: int, top: int, decode) -> TokenLogprob:
    """The TokenLogprob of token_id from one step's logits (one row of the vocabulary)."""
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    peak = row.max()
    logprobs = row - peak - np.log(np.exp(row - peak).sum())
    best = ()
    if top > 0:
        ids = np.argpartition(-logprobs, top - 1)[:top]
        ids = ids[np.argsort(-logprobs[ids], kind="stable")]
        best = tuple((decode([int(i)]), int(i), float(logprobs[i])) for i in ids)
    return TokenLogprob(decode([token_id]), token_id, float(logprobs[token_id]), best)


class LogprobTrail:
    """Holds each token's TokenLogprob until the text it made is shown.

    A stop filter holds back text that may begin a stop string, drops the stop string and,
    for a chat reply, leading whitespace; a token's entry is released with the piece that
    shows the end of its text, and the entries of text never shown are dropped.
    """

    def __init__(self, trim: bool):
        self._trim = trim
        self._decoded = ""  # everything the tokens decoded to, before the stop filter
        self._pending = []  # (start, end) offsets in _decoded, entry
        self._shown = 0

    def add(self, entry: TokenLogprob, text: str) -> None:
        """Records a token and the text the stream decoder gave for it."""
        start = len(self._decoded)
        self._decoded += text
        self._pending.append((start, len(self._decoded), entry))

    def piece(self, text: str, final: bool = False) -> TextPiece:
        """text, shown now, with the entries it releases; final releases every token whose
        text begins within what was shown."""
        self._shown += len(text)
        lead = len(self._decoded) - len(self._decoded.lstrip()) if self._trim else 0
        released = []
        while self._pending:
            start, end, entry = self._pending[0]
            if (start - lead >= self._shown) if final else (end - lead > self._shown):
                break
            released.append(entry)
            self._pending.pop(0)
        if final:
            self._pending.clear()
        return TextPiece(text, tuple(released))


def steps_with_logits(generator, prompt_tokens: list, kwargs: dict) -> Iterator:
    """Like Generator.generate_tokens, with each step's logits (step.logits) filled in.

    generate_tokens cannot ask for them: generate_batch's step callback can. Steps cross
    from CTranslate2's worker thread through a queue; closing the iterator stops the
    generation at its next step.
    """
    steps: queue.Queue = queue.Queue()
    closed = threading.Event()

    def on_step(step) -> bool:
        steps.put(step)
        return closed.is_set()

    batch = generator.generate_batch([prompt_tokens], asynchronous=True, beam_size=1,
                                     include_prompt_in_result=False, return_logits_vocab=True,
                                     callback=on_step, **kwargs)

    waiter = threading.Thread(target=wait_for_batch, args=(batch, steps), daemon=True)
    waiter.start()
    try:
        while (item := steps.get()) is not BATCH_DONE:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        closed.set()
        waiter.join()
