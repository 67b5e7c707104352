"""A generation call as the caller sees it: an iterator (or async iterator) of text pieces.

The work runs in a thread of its own, which waits for the model's turn (first come, first
served) and then drives CTranslate2; pieces cross to the caller through a queue. So the
caller gets control back within POLL_S of setting cancel, whatever the engine is doing: in
the queue, reloading the model, or in a prompt pass that CTranslate2 cannot interrupt. The
call then ends marked "cancelled", and the engine stops at its next step in the background
(the next call waits for that, in its turn).
"""

import asyncio
import dataclasses
import queue
import threading
import time
from collections.abc import Callable

from pyg_edge.errors import GenerationError, PygEdgeError, ReentryError
from pyg_edge.generation.stats import GenerationStats
from pyg_edge.generation.turns import POLL_S

_END = object()


class Call:
    """What a call's engine thread and its reader share.

    Attributes:
      cancel: Ends the call when set, by the caller or by closing its stream.
      stats: The call's own figures.
      notices: Whether PromptNotice items go to the reader too.
      on_long_prompt: Called as on_long_prompt(tokens, seconds) before a long pass.
    """

    def __init__(self, cancel: threading.Event | None, stats: GenerationStats,
                 notices: bool = False, on_long_prompt=None):
        self.cancel = cancel or threading.Event()
        self.stats = stats
        self.notices = notices
        self.on_long_prompt = on_long_prompt
        self.started = time.monotonic()
        self.state = "new"  # "queued", "running", "done"
        self._sink = None

    def attach(self, sink) -> None:
        """Where emit() hands items from now on (the reader's queue), as the call starts."""
        self._sink = sink
        self.state = "queued"

    def emit(self, item) -> None:
        """Hands a piece (or a PromptNotice, or an exception) to the reader."""
        self._sink(item)

    def announce(self, notice) -> None:
        """Tells about a long prompt pass: to the reader (notices) and on_long_prompt."""
        if self.notices:
            self.emit(notice)
        if self.on_long_prompt is not None:
            self.on_long_prompt(notice.tokens, notice.seconds)

    def end(self) -> None:
        self.state = "done"
        self._sink(_END)


class TextStream:
    """One generation: iterate for its text pieces, or `async for` them.

    Iteration ends at a stop, at max_new_tokens, or within POLL_S of cancel being set or
    cancel() called; stats then says which ("stop", "length", "cancelled"). Closing the
    stream, or dropping it, cancels it. A stream is read once, sync or async.

    Attributes:
      stats: This call's GenerationStats, final once iteration has ended: after a cancel,
        the figures as they were then, with finish_reason "cancelled" (the engine may
        still be finishing its step; PygModel.last_generation gets its last figures).
    """

    def __init__(self, run: Callable[[Call], None], call: Call, reading: threading.local):
        self._run = run
        self._call = call
        self._reading = reading  # the model's: which stream each thread is reading
        self._queue = None
        self._done = False
        self.stats = call.stats

    @property
    def state(self) -> str:
        """"new" (not iterated yet), "queued", "running" or "done"."""
        return self._call.state

    def cancel(self) -> None:
        """Ends the call; the reader's next piece is the end."""
        self._call.cancel.set()

    def close(self) -> None:
        """Ends the call at once (a reply not read to its end is marked cancelled)."""
        if not self._done:
            self.cancel()
            self._cancelled()

    def __del__(self):
        if self._queue is not None and not self._done:
            self._call.cancel.set()
            self._finish()

    def __iter__(self):
        return self

    def __next__(self):
        if self._queue is None:
            self._start_sync()
        while not self._done:
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._call.cancel.is_set():
                    self._cancelled()
                continue
            piece = self._take(item)
            if piece is not None:
                return piece
        raise StopIteration

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._queue is None:
            self._start_async()
        try:
            while not self._done:
                try:
                    item = await asyncio.wait_for(self._queue.get(), POLL_S)
                except asyncio.TimeoutError:
                    if self._call.cancel.is_set():
                        self._cancelled()
                    continue
                piece = self._take(item)
                if piece is not None:
                    return piece
        except asyncio.CancelledError:
            self.close()
            raise
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.close()

    def _take(self, item):
        """The piece to return for a queued item, None to read on (raises an error item).

        Once cancel is set, pieces still queued are dropped: a fast engine can be far ahead
        of its reader, and a stopped reply stops where the caller pressed Stop."""
        if self._call.cancel.is_set() and item is not _END:
            self._cancelled()
        elif item is _END:
            self._finish()
        elif isinstance(item, BaseException):
            self._finish()
            raise _typed(item)
        elif self._call.notices or isinstance(item, str):
            return item
        return None

    def _cancelled(self) -> None:
        if not self._done:  # a copy: the engine thread may still be writing its own
            self.stats = dataclasses.replace(
                self._call.stats, finish_reason="cancelled",
                seconds=time.monotonic() - self._call.started,
                token_logprobs=list(self._call.stats.token_logprobs))
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if getattr(self._reading, "call", None) is self._call:
            self._reading.call = None

    def _start_sync(self) -> None:
        """Starts the engine for a reader in this thread, which must not be reading another
        stream of the same model: not read to its end nor closed, it would hold the turn this
        one waits for (or, already generated, be a reply the thread forgot)."""
        if getattr(self._reading, "call", None) is not None:
            raise ReentryError(
                "this thread is still reading another reply of this model: read it to the "
                "end or close() it before starting a new one (one generation runs at a time)")
        self._reading.call = self._call
        self._queue = queue.Queue()
        self._launch(self._queue.put)

    def _start_async(self) -> None:
        loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        put, cancel = self._queue.put_nowait, self._call.cancel

        def sink(item):
            try:
                loop.call_soon_threadsafe(put, item)
            except RuntimeError:  # the loop is closed: its reader is gone
                cancel.set()

        self._launch(sink)

    def _launch(self, sink) -> None:
        self._call.attach(sink)
        thread = threading.Thread(target=self._run, args=(self._call,), daemon=True,
                                  name="pyg-edge-generation")
        thread.start()


def _typed(error: BaseException) -> BaseException:
    """Errors from CTranslate2 (RuntimeError, ValueError) as GenerationError."""
    if isinstance(error, PygEdgeError) or not isinstance(error, (RuntimeError, ValueError,
                                                                 MemoryError)):
        return error
    typed = GenerationError(f"generation failed: {error}")
    typed.__cause__ = error
    return typed
