"""Several replies to one prompt from one pass over it, sampled side by side in one batch.

CTranslate2's generate_batch with num_hypotheses > 1 processes the prompt once, copies its
state for each reply and samples them together, so a regenerate ("swipe") can show a reply
that is already there. Each reply has its own UTF-8 decoder and stop filter: it ends at its
own stop string or end token, and the step callback then tells CTranslate2 to stop
computing it. PygModel.stream(..., n=N) is the entry point; this module is its helper.
"""

import queue
import threading
import time
from collections.abc import Iterator

from pyg_edge.errors import OptionsError
from pyg_edge.generation.batches import BATCH_DONE, wait_for_batch
from pyg_edge.generation.request import generation_kwargs
from pyg_edge.generation.stopping import StopFilter
from pyg_edge.generation.streams import TextStream

# Each reply holds its own copy of the prompt's state (benchmarks/results/n_replies.md), so
# a few are useful and many only exhaust memory.
MAX_REPLIES = 8


def check_reply_count(n) -> int:
    """Returns n if it is a valid number of replies.

    Raises:
      OptionsError: n is not a whole number from 1 to MAX_REPLIES.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPLIES:
        raise OptionsError(f"the number of replies is {n!r}, expected a whole number from 1 to "
                         f"{MAX_REPLIES} (each reply holds its own copy of the prompt's state)")
    return n


class ReplyResults:
    """What the engine fills in for n replies sampled together (see Replies)."""

    def __init__(self, n: int):
        self.texts = [""] * n
        self.finish_reasons = ["cancelled"] * n
        self.new_tokens = [0] * n


class Replies(TextStream):
    """n replies sampled together; iterating yields the first reply's text as it comes.

    Iteration ends once every reply has ended, so a reply that runs on past the first
    keeps the iteration open. Stop iterating and close() (or cancel()) to stop them all.

    Attributes:
      texts: The n replies (texts[0] is the streamed one), complete once iteration ends.
      finish_reasons: Per reply: "stop" (end token or stop string), "length"
        (max_new_tokens) or "cancelled".
      new_tokens: Tokens generated per reply (end tokens not counted).
    """

    def __init__(self, results: ReplyResults, run, call, reading):
        super().__init__(run, call, reading)
        self.results = results

    @property
    def texts(self) -> list:
        return self.results.texts

    @property
    def finish_reasons(self) -> list:
        return self.results.finish_reasons

    @property
    def new_tokens(self) -> list:
        return self.results.new_tokens

    def wait(self) -> list:
        """Generates to the end (without showing the first reply); returns the texts."""
        for _ in self:
            pass
        return self.texts


class _Reply:
    """One reply's decoding: UTF-8 pieces through its own stop filter."""

    def __init__(self, decoder, stops: tuple, trim: bool):
        self._decoder = decoder
        self._filter = StopFilter(stops, trim=trim)
        self.pieces = []
        self.new_tokens = 0
        self.reason = None  # set when the reply ends

    def step(self, token_id: int, is_last: bool, eos: int) -> str:
        """Takes one generated token; returns the text it lets show (maybe "")."""
        if token_id == eos:
            return self._end("stop")
        self.new_tokens += 1
        piece = self._filter.push(self._decoder.push(token_id))
        if self._filter.stopped:
            self.reason = "stop"
        elif is_last:
            piece += self._end("length")
        self.pieces.append(piece)
        return piece

    def _end(self, reason: str) -> str:
        tail = self._filter.push(self._decoder.flush())
        tail += "" if self._filter.stopped else self._filter.finish()
        self.reason = "stop" if self._filter.stopped else reason
        self.pieces.append(tail)
        return tail


def produce_replies(call, request, generator, tokenizer, results: ReplyResults) -> None:
    """A call's n replies; the first one's pieces handed to its reader as they come."""
    kwargs = generation_kwargs(tokenizer, request)
    for piece in sample_replies(generator, tokenizer, request, results, call.cancel, kwargs,
                                call.stats, call.started):
        call.emit(piece)
    call.stats.new_tokens = sum(results.new_tokens)
    call.stats.finish_reason = results.finish_reasons[0]


def sample_replies(generator, tokenizer, request, result: ReplyResults, cancel, kwargs: dict,
                   stats, started: float) -> Iterator[str]:
    """Runs one generate_batch for len(result.texts) replies; yields the first one's text.

    CTranslate2 calls the step callback from its own worker thread; the callback decodes
    every reply there (so a finished reply stops being computed at once) and hands the
    first reply's pieces to this generator through a queue.
    """
    n = len(result.texts)
    # CTranslate2 refuses several hypotheses from greedy search, and they would all be
    # the same reply anyway: generate it once and copy it.
    greedy = kwargs["sampling_topk"] == 1
    replies = [_Reply(tokenizer.stream_decoder(), request.stops, request.trim)
               for _ in range(1 if greedy else n)]
    eos = request.eos
    pieces: queue.Queue = queue.Queue()
    stop_all = threading.Event()

    def on_step(step) -> bool:
        try:
            reply = replies[step.hypothesis_id]
            if stop_all.is_set() or (cancel is not None and cancel.is_set()):
                return True  # its reason stays None: cancelled
            piece = reply.step(step.token_id, step.is_last, eos)
            if step.hypothesis_id == 0:
                if reply.new_tokens == 1 and not stats.first_token_seconds:
                    stats.first_token_seconds = time.monotonic() - started
                if piece:
                    pieces.put(piece)
            return reply.reason is not None
        except Exception as error:  # noqa: BLE001  must not escape into CTranslate2's thread
            pieces.put(error)
            stop_all.set()
            return True

    batch = generator.generate_batch(
        [tokenizer.tokens(request.dynamic_ids)], asynchronous=True, beam_size=1,
        num_hypotheses=len(replies), include_prompt_in_result=False, callback=on_step,
        **kwargs)
    waiter = threading.Thread(target=wait_for_batch, args=(batch, pieces), daemon=True)
    waiter.start()
    try:
        yield from _drain(pieces, cancel)
    finally:
        stop_all.set()  # the caller stopped early: stop every reply
        waiter.join()
        _collect(replies, result, n)


def _drain(pieces: queue.Queue, cancel) -> Iterator[str]:
    """The first reply's pieces until the batch ends, or none more once cancel is set.

    A fast model can be far ahead of its reader: pieces already queued are dropped.
    """
    while True:
        item = pieces.get()
        if cancel is not None and cancel.is_set():
            return
        if item is BATCH_DONE:
            return
        if isinstance(item, Exception):
            raise item
        yield item


def _collect(replies: list, result: ReplyResults, n: int) -> None:
    """Fills result from the replies; a single greedy reply fills all n."""
    for i in range(n):
        reply = replies[i if len(replies) > 1 else 0]
        result.texts[i] = "".join(reply.pieces)
        result.finish_reasons[i] = reply.reason or "cancelled"
        result.new_tokens[i] = reply.new_tokens
