"""In-process chat and text completion, with the server's semantics: what an app calls.

Completions(model) reads OpenAI-style messages (or a raw prompt, or a card's Prompt) into
what the model reads, as the server does: the prompt fitted to the context, smart context
and prefix reuse across calls, several replies from one pass. Each call returns a
CompletionStream of CompletionChunks, sync or async; the server's routes are thin layers
over these calls.
"""

import threading
from dataclasses import dataclass

from pyg_edge.chat.fitting import Notes, fit_prompt
from pyg_edge.chat.messages import chat_parts, fit_chat
from pyg_edge.chat.planning import ReadPlanner
from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import PromptNotice


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
    """A completion's chunks: iterate, or `async for`; the last chunk has finish_reason.

    Attributes:
      notes: What was changed to make the request fit (a persona or prompt cut).
      stats: The call's GenerationStats (complete after the last chunk).
      others: With n > 1, replies 2 to n as (text, finish_reason), after the last chunk.
    """

    def __init__(self, stream, notes: Notes, n: int):
        self._stream = stream
        self._n = n
        self._ended = False
        self.notes = notes
        self.stats = stream.stats

    @property
    def others(self) -> list:
        if self._n == 1:
            return []
        return list(zip(self._stream.texts[1:], self._stream.finish_reasons[1:], strict=True))

    @property
    def state(self) -> str:
        """"new", "queued", "running" or "done" (see TextStream.state)."""
        return self._stream.state

    def cancel(self) -> None:
        self._stream.cancel()

    def close(self) -> None:
        self._stream.close()

    def __iter__(self):
        return self

    def __next__(self) -> CompletionChunk:
        if self._ended:
            raise StopIteration
        try:
            return self._chunk(next(self._stream))
        except StopIteration:
            return self._last()

    def __aiter__(self):
        return self

    async def __anext__(self) -> CompletionChunk:
        if self._ended:
            raise StopAsyncIteration
        try:
            return self._chunk(await self._stream.__anext__())
        except StopAsyncIteration:
            return self._last()

    async def aclose(self) -> None:
        self.close()

    def text(self) -> str:
        """Reads the completion to its end; returns the reply's text."""
        return "".join(chunk.text for chunk in self)

    @staticmethod
    def _chunk(item) -> CompletionChunk:
        if isinstance(item, PromptNotice):
            return CompletionChunk(notice=item)
        return CompletionChunk(str(item), logprobs=getattr(item, "logprobs", ()))

    def _last(self) -> CompletionChunk:
        self._ended = True
        stats = self.stats
        return CompletionChunk(finish_reason=stats.finish_reason,
                               usage=Usage(stats.prompt_tokens, stats.new_tokens))


class Completions:
    """Chat and text completion on one model, sharing its prefix cache across calls.

    Calls from several threads or asyncio tasks queue on the model (first come, first
    served); see docs/embedding.md.

    Args:
      model: A PygModel.
      reuse_prefixes: Cache raw prompts' prefixes across calls (pyg_edge.chat.prefix_planner).
      smart_context: The share of the history a chat whose context is full keeps
        (pyg_edge.chat.smart_context); 0 reads every prompt as it is.

    Attributes:
      planner: The ReadPlanner (smart context and prefix planning state).
    """

    def __init__(self, model, reuse_prefixes: bool = True,
                 smart_context: float = DEFAULT_FRACTION):
        self.model = model
        self.planner = ReadPlanner(model.tokenizer, model.context_length, model.prefill_chunk,
                                   reuse_prefixes, smart_context)

    def create_chat_completion(self, messages, options: SamplingOptions | None = None, *,
                               character: str = "", user_name: str = "",
                               context: int | None = None, n: int = 1,
                               cancel: threading.Event | None = None, notices: bool = False,
                               **overrides) -> CompletionStream:
        """The character's next message in an OpenAI-style chat.

        Args:
          messages: [{"role": "system" | "user" | "assistant", "content": ...}, ...];
            system messages are the persona, the assistant is the character (see
            pyg_edge.chat.messages, which also reads SillyTavern's Continue and Impersonate).
          options, **overrides: Sampling options, and fields to change for this call.
          character: Who replies, when the messages do not say.
          user_name: The user's name, whose lines the reply must not write.
          context: The client's context in tokens (default and most: the model's).
          n: Replies sampled from one prompt pass (others on the stream afterwards).
          cancel: Ends the call when set, also while it waits for its turn.
          notices: Also yield a chunk with a PromptNotice before a long prompt pass.

        Raises:
          InvalidRequestError: the messages are malformed.
          PromptTooLongError: the chat does not fit even cut down.
        """
        options = (options or SamplingOptions()).with_overrides(**overrides)
        context = self._context(context)
        parts, notes = chat_parts(messages, character, user_name), Notes()
        tokenizer = self.model.tokenizer
        prompt = fit_chat(parts, tokenizer.count, tokenizer.encode, tokenizer.decode, context,
                          options.max_new_tokens, notes)
        options = options.with_overrides(stop=options.stop + parts.stop)
        return self._stream(prompt, options, context, n, cancel, notices, notes)

    def create_completion(self, prompt: str, options: SamplingOptions | None = None, *,
                          memory: str = "", context: int | None = None, n: int = 1,
                          cancel: threading.Event | None = None, notices: bool = False,
                          **overrides) -> CompletionStream:
        """A continuation of a raw text prompt, cut from the left to fit the context.

        Args:
          prompt: The text to continue.
          memory: Text kept in front of the prompt however long it is (KoboldCpp's).
          options, context, n, cancel, notices, **overrides: As for
            create_chat_completion.
        """
        options = (options or SamplingOptions()).with_overrides(**overrides)
        context, notes = self._context(context), Notes()
        text = fit_prompt(self.model.tokenizer, prompt, context - options.max_new_tokens, notes,
                          memory)
        return self._stream(text, options, context, n, cancel, notices, notes)

    def complete_prompt(self, prompt, options: SamplingOptions | None = None, *,
                        context: int | None = None, n: int = 1,
                        cancel: threading.Event | None = None, notices: bool = False,
                        **overrides) -> CompletionStream:
        """The reply to a card's Prompt (pyg_edge.chat.prompt.build_prompt), or the
        continuation of a str, used as it is (not cut to fit), planned as the other calls.

        Raises:
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context.
        """
        options = (options or SamplingOptions()).with_overrides(**overrides)
        return self._stream(prompt, options, self._context(context), n, cancel, notices,
                            Notes())

    def _context(self, context: int | None) -> int:
        return min(context or self.model.context_length, self.model.context_length)

    def _stream(self, prompt, options, context, n, cancel, notices, notes) -> CompletionStream:
        room = context - options.max_new_tokens

        def plan(cached):
            return self.planner.plan(prompt, options.stop, room, cached)

        kwargs = dict(cancel=cancel, notices=notices, plan=plan)
        stream = (self.model.stream_replies(prompt, n, options, **kwargs) if n > 1
                  else self.model.stream(prompt, options, **kwargs))
        return CompletionStream(stream, notes, n)
