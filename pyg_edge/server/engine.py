"""One model, one generation at a time: requests wait their turn in arrival order.

CTranslate2 generates in a worker thread; pieces cross into the event loop through a
queue. Each generation has a cancel Event, set by /api/extra/abort, by a client that
goes away, or when the request's handler ends early.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from pyg_edge.chat.prefix_planner import PrefixPlanner
from pyg_edge.chat.prompt import Prompt
from pyg_edge.chat.smart_context import DEFAULT_FRACTION, SmartContext, speakers_from_stops
from pyg_edge.generation.stats import GenerationStats

_DONE = object()


@dataclass(frozen=True)
class PromptNotice:
    """A long prompt pass about to start (PygModel.on_long_prompt), for the client to show.

    Attributes:
      tokens: Prompt tokens to read that are not cached.
      seconds: The model's estimate from this machine's past passes, or None.
    """

    tokens: int
    seconds: float | None


@dataclass
class GenerationRecord:
    """The current or latest generation, for KoboldCpp's generate/check and perf routes.

    Attributes:
      key: The client's genkey ("" when it sent none).
      seed: The seed it asked for, or None.
      pieces: The text generated so far.
      stats: Its figures, filled in when it ends.
      running: Whether it is still generating.
      ended_at: time.time() when it ended.
      read: The prompt text the model read (smart context may keep less than was sent).
    """

    key: str = ""
    seed: int | None = None
    pieces: list = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)
    running: bool = False
    ended_at: float = 0.0
    read: str = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class GenerationQueue:
    """Serialises generations on one model, fairly (first come, first served).

    Args:
      model: A PygModel.
      reuse_prefixes: Give raw-text prompts a static prefix that CTranslate2 caches
        across requests (pyg_edge.chat.prefix_planner), so a chat's turns skip what they share.
      smart_context: With reuse_prefixes, the share of the history a chat whose context
        is full keeps (pyg_edge.chat.smart_context); 0 sends every prompt as it is.
    """

    def __init__(self, model, reuse_prefixes: bool = True,
                 smart_context: float = DEFAULT_FRACTION):
        self.model = model
        smart = smart_context if reuse_prefixes else 0
        # With smart context a chat keeps one prefix while it grows (no reload: a new
        # prefix empties CTranslate2's cache by reloading the model, 3-6 s at the 2.7B
        # shape), and is cut when what follows the prefix outgrows one exact pass.
        self.prefixes = (PrefixPlanner(model.context_length, model.prefill_chunk,
                                       keep_cached=bool(smart))
                         if reuse_prefixes else None)
        chunk = model.prefill_chunk
        self.smart = SmartContext(model.tokenizer.count, smart,
                                  max_dynamic=chunk + 1 if chunk else None)
        self._turn = asyncio.Lock()  # asyncio.Lock wakes its waiters in FIFO order
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyg-edge-gen")
        self._active: dict = {}  # cancel Event -> the client's key (KoboldCpp's genkey)
        self._running = None
        self.started_at = time.time()
        self.generations = 0  # finished generations, for /api/extra/perf
        self.last = GenerationRecord()

    async def stream(self, prompt, options, cancel: threading.Event,
                     stats: GenerationStats, key: str = "", n: int = 1,
                     others: list | None = None, notices: bool = False,
                     room: int | None = None) -> AsyncIterator:
        """Yields the text pieces of one generation once its turn comes.

        Args:
          prompt, options: As for PygModel.stream.
          cancel: Ends this generation, running or still waiting, when set.
          stats: Filled with the generation's figures when it ends.
          key: Lets abort(key) find this generation.
          n: Replies to sample from one prompt pass (PygModel.stream_replies); the
            pieces yielded are the first reply's.
          others: When given, receives (text, finish_reason) of replies 2 to n once
            they end.
          notices: Also yield a PromptNotice before a long prompt pass (the model's
            on_long_prompt: as many uncached tokens as the CLI chat announces).
          room: The client's budget for the prompt (its context less max_new_tokens),
            which tells smart context when the chat is full; None: the model's context.
        """
        self._active[cancel] = key
        try:
            async with self._turn:
                if cancel.is_set():
                    stats.finish_reason = "cancelled"
                    return
                self._running = cancel
                self.last = record = GenerationRecord(key, options.seed, running=True)
                try:
                    async for piece in self._generate(prompt, options, cancel, stats, n,
                                                      others, notices, room):
                        if isinstance(piece, str):
                            record.pieces.append(piece)
                        yield piece
                finally:
                    record.stats, record.running, record.ended_at = stats, False, time.time()
                    self.generations += 1
        finally:
            self._running = None if self._running is cancel else self._running
            self._active.pop(cancel, None)

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn."""
        return len(self._active) - (self._running is not None)

    def abort(self, key: str = "") -> bool:
        """Cancels the generation started with key, else the running one.

        Returns:
          Whether a generation was cancelled.
        """
        targets = [e for e, k in self._active.items() if k == key] if key else [self._running]
        for event in targets:
            if event is not None:
                event.set()
        return any(e is not None for e in targets)

    def close(self) -> None:
        for event in list(self._active):
            event.set()
        self._worker.shutdown(wait=True)

    async def _generate(self, prompt, options, cancel, stats, n=1, others=None,
                        notices=False, room=None) -> AsyncIterator:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item):
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work():
            replies = None
            try:
                read, cut = self._plan(prompt, options, room)
                self.last.read = read.text if isinstance(read, Prompt) else read
                with self._notices_to(put) if notices else contextlib.nullcontext():
                    if n > 1:
                        pieces = replies = self.model.stream_replies(read, n, options,
                                                                     cancel=cancel, **cut)
                    else:
                        pieces = self.model.stream(read, options, cancel=cancel, **cut)
                    for piece in pieces:
                        put(piece)
            except Exception as error:  # noqa: BLE001  handed to the request that asked
                put(error)
            finally:
                final = self.model.last_generation
                if replies is not None and others is not None:
                    others.extend(zip(replies.texts[1:], replies.finish_reasons[1:],
                                      strict=True))
                put((_DONE, final))

        task = loop.run_in_executor(self._worker, work)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, tuple) and item and item[0] is _DONE:
                    stats.__dict__.update(item[1].__dict__)
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancel.set()  # a no-op after a normal end; stops the worker otherwise
            await task

    def _plan(self, prompt, options, room) -> tuple:
        """(What the model reads of prompt, its stream arguments): smart context, then the
        prefix planner for a raw prompt that smart context leaves as it is."""
        if self.prefixes is None:
            return prompt, {}
        chat = isinstance(prompt, Prompt)
        text = prompt.text if chat else prompt
        stops = options.stop + (prompt.stop_strings if chat else ())
        room = room or self.model.context_length - options.max_new_tokens
        ids, cached = self.model.tokenizer.encode(text), self.model.cached_prefixes
        outgrown = bool(self.smart.fraction) and self.prefixes.outgrown(ids, cached)
        fitted = self.smart.fit(text, room, _speakers(stops, text), outgrown=outgrown)
        if not fitted.static_chars:
            return prompt, ({} if chat else {"static_tokens": self.prefixes.plan(ids, cached)})
        static = fitted.text[:fitted.static_chars]
        if chat:
            return replace(prompt, text=fitted.text, static_prefix=static,
                           token_count=self.model.tokenizer.count(fitted.text)), {}
        ids = self.model.tokenizer.encode(fitted.text)
        return fitted.text, {"static_tokens": self.model.tokenizer.prefix_length(ids, static)}

    @contextlib.contextmanager
    def _notices_to(self, put):
        """Meanwhile, the model's long-prompt announcements also go to put as PromptNotice.

        Set and restored in the worker thread, which runs one generation at a time.
        """
        before = self.model.on_long_prompt

        def announce(tokens: int, seconds: float | None) -> None:
            put(PromptNotice(tokens, seconds))  # the client first: it is waiting
            if before is not None:
                before(tokens, seconds)

        self.model.on_long_prompt = announce
        try:
            yield
        finally:
            self.model.on_long_prompt = before


def _speakers(stops, text: str) -> tuple:
    """Who starts message lines: the stop strings' speakers and the prompt's open turn.

    Fewer than two names (a client that sends no stop strings) says too little: then any
    "Name:" line starts a message.
    """
    last = text[text.rfind("\n") + 1:]
    opened = (last.split(":")[0],) if last.rstrip().endswith(":") else ()
    names = tuple(dict.fromkeys(speakers_from_stops(stops) + opened))
    return names if len(names) >= 2 else ()
