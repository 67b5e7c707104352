"""What a completion call returns: its chunks (or its text pieces), sync or async, with its
own figures, its cancel, and what was changed to make it fit."""

from dataclasses import dataclass

from pyg_edge.generation.stats import GenerationStats, PromptNotice


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class CompletionChunk:
    """One piece of a completion.

    Attributes:
      text: Reply text ("" on the last chunk and on a notice).
      finish_reason: None, except on the last chunk: "stop", "length" or "cancelled".
      usage: On the last chunk: prompt and completion tokens.
      logprobs: The TokenLogprobs of the tokens text shows (with top_logprobs).
      notice: A PromptNotice before a long prompt pass (with notices=True), else None.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: tuple = ()
    notice: PromptNotice | None = None


class CompletionStream:
    """A completion: iterate, or `async for`; read once.

    By default it yields CompletionChunks, the last one with finish_reason and usage. A
    chat's stream (ChatSession.send, text=True) yields the reply's text pieces (str)
    instead, as a terminal prints them.

    Attributes:
      notes: What was changed to make the request fit (a prompt cut).
      prompt: What the model was asked to continue (a chat's Prompt, or the text), or
        None where it is planned in the call's turn and not yet known.
    """

    def __init__(self, stream, notes=(), n: int = 1, *, text: bool = False, prompt=None,
                 on_end=None):
        self._stream = stream
        self._n = n
        self._text = text
        self._on_end = on_end
        self._ended = False
        self._shown = []
        self.notes = notes
        self.prompt = prompt

    @property
    def stats(self) -> GenerationStats:
        """The call's figures, final once iteration has ended (finish_reason "cancelled"
        right after a Stop, though the engine may still be finishing its step)."""
        return self._stream.stats

    @property
    def others(self) -> list:
        """With n > 1, replies 2 to n as (text, finish_reason), once iteration has ended."""
        if self._n == 1:
            return []
        return list(zip(self._stream.texts[1:], self._stream.finish_reasons[1:], strict=True))

    @property
    def state(self) -> str:
        """"new" (not iterated yet), "queued" (waiting for the model: another call runs),
        "running" or "done"."""
        return self._stream.state

    def cancel(self) -> None:
        """Ends the call: the next item is the last (within 0.1 s, whatever the model is
        doing)."""
        self._stream.cancel()

    def close(self) -> None:
        """Ends the call at once; a reply not read to its end is marked cancelled."""
        self._stream.close()
        self._end()

    def __del__(self):
        if not self._ended and self._on_end is not None:
            self.close()

    def __iter__(self):
        return self

    def __next__(self):
        while not self._ended:
            try:
                item = self._item(next(self._stream))
            except StopIteration:
                item = self._last()
            except BaseException:
                self._end()
                raise
            if item is not None:
                return item
        raise StopIteration

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._ended:
            try:
                item = self._item(await self._stream.__anext__())
            except StopAsyncIteration:
                item = self._last()
            except BaseException:
                self._end()
                raise
            if item is not None:
                return item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.close()

    def text(self) -> str:
        """Reads the completion to its end; returns the reply's text."""
        for _ in self:
            pass
        return "".join(self._shown)

    def _item(self, item):
        if isinstance(item, PromptNotice):
            return item if self._text else CompletionChunk(notice=item)
        self._shown.append(str(item))
        if self._text:
            return str(item)
        return CompletionChunk(str(item), logprobs=getattr(item, "logprobs", ()))

    def _last(self):
        self._end()
        if self._text:
            return None
        stats = self.stats
        return CompletionChunk(finish_reason=stats.finish_reason,
                               usage=Usage(stats.prompt_tokens, stats.new_tokens))

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._on_end is not None:
            self._on_end(self, "".join(self._shown))


class ReadyStream:
    """A reply already made (a spare reply shown again), as a stream of one piece."""

    def __init__(self, text: str):
        self._pieces = iter([text] if text else [])
        self.state = "new"
        self.stats = GenerationStats(finish_reason="stop")

    def cancel(self) -> None:
        self._pieces = iter(())
        self.stats.finish_reason = "cancelled"

    def close(self) -> None:
        if self.state != "done":
            self.cancel()
            self.state = "done"

    def __next__(self):
        self.state = "running"
        try:
            return next(self._pieces)
        except StopIteration:
            self.state = "done"
            raise

    async def __anext__(self):
        try:
            return self.__next__()
        except StopIteration:
            raise StopAsyncIteration from None
