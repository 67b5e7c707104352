"""The token loop of one reply: CTranslate2's steps to text pieces, through the stop filter.

Runs in the call's own thread (pyg_edge.generation.streams), in the model's turn.
"""

import time
from collections.abc import Iterator

from pyg_edge.generation.request import generation_kwargs
from pyg_edge.generation.stopping import StopFilter
from pyg_edge.generation.token_probs import LogprobTrail, steps_with_logits, token_logprob


def produce_text(call, request, generator, tokenizer) -> None:
    """A call's reply, each piece handed to its reader as it comes."""
    kwargs = generation_kwargs(tokenizer, request)
    for piece in stream_pieces(generator, tokenizer, request, kwargs, call):
        call.emit(piece)


def stream_pieces(generator, tokenizer, request, kwargs: dict, call) -> Iterator[str]:
    """Yields the reply's text pieces; fills call.stats (tokens, first token, finish)."""
    stats, cancel = call.stats, call.cancel
    decoder = tokenizer.stream_decoder()
    stop_filter = StopFilter(request.stops, trim=request.trim)
    eos, top = request.eos, request.options.top_logprobs
    trail = LogprobTrail(request.trim) if top is not None else None
    prompt = tokenizer.tokens(request.dynamic_ids)
    steps = (generator.generate_tokens(prompt, **kwargs) if trail is None
             else steps_with_logits(generator, prompt, kwargs))
    try:
        for step in steps:
            if step.token_id == eos:
                stats.finish_reason = "stop"
                break
            stats.new_tokens += 1
            if stats.new_tokens == 1:
                stats.first_token_seconds = time.monotonic() - call.started
            text = decoder.push(step.token_id)
            if trail is not None:
                trail.add(token_logprob(step.logits, step.token_id, top, tokenizer.decode),
                          text)
            piece = stop_filter.push(text)
            if piece or stop_filter.stopped:
                yield from _shown(piece, trail, stats, stop_filter.stopped)
            if stop_filter.stopped:
                stats.finish_reason = "stop"
                return
            if cancel.is_set():
                stats.finish_reason = "cancelled"
                return
        tail = stop_filter.push(decoder.flush())
        tail += "" if stop_filter.stopped else stop_filter.finish()
        yield from _shown(tail, trail, stats, final=True)
    finally:
        steps.close()


def _shown(text: str, trail, stats, final: bool = False):
    """Yields text, when there is any, with its tokens' log-probabilities if asked."""
    if trail is None:
        if text:
            yield text
        return
    piece = trail.piece(text, final)
    stats.token_logprobs.extend(piece.logprobs)
    if piece or piece.logprobs:
        yield piece
