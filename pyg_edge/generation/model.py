"""A converted model loaded with CTranslate2, generating streamed text, one call at a time."""

import atexit
import functools
import logging
import os
import threading
import time
import weakref

from pyg_edge.cpu.setup import ctranslate2_module
from pyg_edge.errors import ModelLoadError, PygEdgeError
from pyg_edge.generation import loading
from pyg_edge.generation.compute_types import int8_path_report
from pyg_edge.generation.generate import produce_text
from pyg_edge.generation.model_folder import DEVICES, read_metadata
from pyg_edge.generation.prefill import PromptSpeed
from pyg_edge.generation.prefix_cache import PrefixCache
from pyg_edge.generation.replies import Replies, ReplyResults, check_reply_count, produce_replies
from pyg_edge.generation.request import prepare_request
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import GenerationStats, PromptNotice
from pyg_edge.generation.streams import Call, TextStream
from pyg_edge.generation.tokenizer import TextTokenizer
from pyg_edge.generation.turns import TurnQueue

logger = logging.getLogger("pyg_edge")

# Prompt passes at least this long are announced (on_long_prompt, notices).
LONG_PROMPT_TOKENS = 256
# Models still open at interpreter exit are closed first: a CTranslate2 generator torn down
# by static destructors can abort the process ("terminate called without an active
# exception", seen in about 1 of 15 test child processes that never closed their model).
_open_models = weakref.WeakSet()
atexit.register(lambda: [model.close() for model in list(_open_models)])


class PygModel:
    """A pyg-edge model folder (from `pyg-edge convert`) ready to generate.

    One generation runs at a time; calls from several threads (or asyncio tasks) wait their
    turn in arrival order, and each returns a stream with its own figures (stream.stats).
    docs/embedding.md has the thread contract.

    Args:
      path: The converted model folder.
      device: "auto" (CUDA when a GPU computes, else the CPU), "cpu" or "cuda".
      compute_type: "auto" for the fastest exact type on the device (on a CPU whose int8
        path fails pyg-edge's check: float32 or int16), or any type CTranslate2 accepts
        ("int8", "float32", "int8_float16", ...).
      cpu_threads: Threads for CPU inference; 0 lets CTranslate2 choose.
      seed: Seeds sampling at load: the same seed and the same calls give the same text.
      cpu_tuning, gemm: pyg_edge.cpu.setup.prepare's keep_heap and gemm, used when the host
        has not called it: process-wide, the first load (or prepare) in a process decides.
      allow_inexact: Run int8 even where this CPU's int8 path failed pyg-edge's check
        (faster, with logits that can be off: the warning says how far).
      progress: Called as progress(phase, fraction) through the load, with the phases of
        pyg_edge.generation.loading (CHECKING_CPU, READING_WEIGHTS, READY); fraction is
        None where unknown.
      prefix_cache_bytes: The memory the cached prompt prefixes may hold (several chats
        each keep theirs while it fits; pyg_edge.generation.prefix_cache); default: a
        quarter of the memory available once the model is loaded. One prefix is always
        kept.

    Attributes:
      prompt_speed: This machine's prompt reading speed, measured on past generations.
      last_generation: The figures of the latest call to end.

    Raises:
      ModelLoadError: the folder is not a converted model, or the device refuses it.
    """

    def __init__(self, path, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0, seed: int | None = None, cpu_tuning: bool | None = None,
                 gemm: str | None = None, allow_inexact: bool = False, progress=None,
                 prefix_cache_bytes: int | None = None):
        report = loading.progress_reporter(progress)
        self.path = os.fspath(path)
        self.metadata = read_metadata(self.path)
        if device not in DEVICES:
            raise ModelLoadError(f"unknown device {device!r}; expected one of: "
                                 + ", ".join(DEVICES))
        report(loading.CHECKING_CPU)
        try:
            ctranslate2 = ctranslate2_module(gemm, keep_heap=cpu_tuning)
        except PygEdgeError as error:
            raise ModelLoadError(str(error)) from None
        self.tokenizer = TextTokenizer.from_model_folder(self.path)
        self._turns = TurnQueue()
        self._reading = threading.local()  # which stream each thread reads (re-entry)
        self.last_generation = GenerationStats()
        self.prompt_speed = PromptSpeed()
        self.long_prompt_tokens = LONG_PROMPT_TOKENS
        report(loading.READING_WEIGHTS, 0.0)
        end_token = self.tokenizer.tokens([self.metadata["eos_token_id"]])[0]
        self._engine = loading.open_generator(ctranslate2, self.path, self.metadata, device,
                                              compute_type, cpu_threads, seed, end_token,
                                              allow_inexact)
        report(loading.READING_WEIGHTS, 1.0)
        self.prefix_cache = PrefixCache.for_model(self._engine.reload, self.metadata,
                                                  prefix_cache_bytes)
        self.device, self.compute_type = self._engine.device, self._engine.compute_type
        _open_models.add(self)
        logger.info("loaded %s on %s (%s)", self.path, self.device, self.compute_type)
        report(loading.READY, 1.0)

    @property
    def int8_path(self) -> dict:
        """Whether this process's CPU int8 path is exact (pyg_edge.cpu.backend_choice), and
        what this model runs in: backend, int8_exact, exact_types, detail, device,
        compute_type."""
        return int8_path_report(self.device, self.compute_type)

    @property
    def context_length(self) -> int:
        return self.metadata["context_length"]

    @property
    def prefill_chunk(self) -> int:
        """Tokens per chunk of a long prompt pass (pyg_edge.generation.prefill); 0: one pass."""
        return self.metadata.get("prefill_chunk", 0)

    @property
    def cached_prefixes(self) -> frozenset:
        """The static prefixes (tuples of token ids) CTranslate2 holds in its cache now."""
        return self.prefix_cache.prefixes

    def clear_prefix_cache(self) -> None:
        """Frees the memory the cached prompt prefixes hold (a reload of the model, in the
        model's turn: after the call that runs now); the next call reads its whole prompt."""
        self._turns.acquire()
        try:
            if self._engine.generator is not None:
                self.prefix_cache.empty()
        finally:
            self._turns.release()

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return self._turns.waiting

    def stream(self, prompt, options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, static_tokens: int = 0, *, n: int = 1,
               on_long_prompt=None, notices: bool = False, plan=None,
               **overrides) -> TextStream:
        """Generates a continuation of prompt: iterate the result, or `async for` it.

        Yielded text never holds part of a stop string or of a UTF-8 character. Close the
        stream, or set cancel, to end generation early: iteration then ends within 0.1 s,
        while the call waits for its turn, the model reloads, or the prompt is read.

        Args:
          prompt: A str, continued as it is (a raw completion), or a ModelInput (a chat's
            Prompt is one): its stop strings and bans then apply, its static prefix is
            cached across calls, and the reply is trimmed if it asks.
          options: Sampling options (defaults: SamplingOptions()).
          cancel: An Event that stops generation when set.
          static_tokens: For a str prompt, leading tokens to give CTranslate2 as a static
            prefix, cached across calls; at least one token always stays after it.
          n: Replies sampled from one pass over the prompt, in one batch (1 to
            MAX_REPLIES). Past 1 the result is a Replies: iterating it yields the first
            reply's text, the others are in its .texts once iteration ends
            (pyg_edge.generation.replies).
          on_long_prompt: Called as on_long_prompt(tokens, seconds), from the call's
            thread, before a pass over at least long_prompt_tokens uncached tokens;
            seconds is prompt_speed's estimate, or None before there is one.
          notices: Also yield a PromptNotice before such a pass.
          plan: Called as plan(cached_prefixes) when the call's turn comes, returning
            (prompt, static_tokens) to use instead (pyg_edge.chat.planning).
          **overrides: Fields of SamplingOptions to change for this call.

        Raises:
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context
            (with plan: when iterated).
          OptionsError: an option has an invalid value (UnknownOptionError: no such one),
            or n is not a valid number of replies.
        """
        call = Call(cancel, GenerationStats(), notices, on_long_prompt)
        if check_reply_count(n) == 1:
            stream_class = TextStream
            produce = functools.partial(produce_text, tokenizer=self.tokenizer)
        else:
            results = ReplyResults(n)
            stream_class = functools.partial(Replies, results)
            produce = functools.partial(produce_replies, tokenizer=self.tokenizer,
                                        results=results)
        return self._new_call(stream_class, call, prompt, options, overrides, static_tokens,
                              plan, produce)

    def generate(self, prompt, options: SamplingOptions | None = None, **overrides) -> str:
        """Like stream(), but returns the whole text."""
        return "".join(self.stream(prompt, options, **overrides))

    def close(self) -> None:
        """Stops every call, waiting or running, and frees the model's memory (after a
        prompt pass under way ends); the object cannot generate afterwards."""
        if self._engine.generator is None:
            return
        self._turns.cancel_all()
        self._turns.acquire()
        try:
            self._engine.close()
        finally:
            self._turns.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _new_call(self, stream_class, call, prompt, options, overrides, static_tokens, plan,
                  produce):
        if plan is None:
            request = self._prepare(prompt, options, overrides, static_tokens)
        else:  # the request is prepared in the call's turn; its options are checked now
            (options or SamplingOptions()).with_overrides(**overrides)
            request = None
        prepare = functools.partial(self._planned, plan, options, overrides)
        run = functools.partial(self._run, request=request, produce=produce, prepare=prepare)
        return stream_class(run, call, self._reading)

    def _prepare(self, prompt, options, overrides, static_tokens=0):
        return prepare_request(self.tokenizer, self.metadata, prompt, options, overrides,
                               static_tokens, self.prefix_cache.prefixes)

    def _planned(self, plan, options, overrides):
        prompt, static_tokens = plan(self.prefix_cache.prefixes)
        return self._prepare(prompt, options, overrides, static_tokens)

    def _run(self, call: Call, request, produce, prepare) -> None:
        """A call's thread: its turn, then its generation; every outcome reaches the reader."""
        try:
            if not self._turns.acquire(call.cancel):
                return
            call.stats.queued_seconds = time.monotonic() - call.started
            try:
                call.state = "running"
                request = request or prepare()
                call.stats.prompt_tokens = len(request.ids)
                call.stats.cached_tokens = len(request.static_ids)
                if self._begin(request, call):
                    produce(call, request, self._engine.generator)
            finally:
                self._turns.release()
        except BaseException as error:  # noqa: BLE001  raised to the reader
            call.emit(error)
        finally:
            self._ended(call)
            call.end()

    def _ended(self, call: Call) -> None:
        """A call's last figures; its prompt speed teaches the estimates."""
        stats = self.last_generation = call.stats
        stats.seconds = time.monotonic() - call.started
        if call.cancel.is_set():
            stats.finish_reason = "cancelled"
        if stats.new_tokens and stats.first_token_seconds:
            self.prompt_speed.record(stats.read_tokens,  # the prompt pass, not the wait
                                     stats.first_token_seconds - stats.queued_seconds)

    def _begin(self, request, call: Call) -> bool:
        """In the call's turn: a new seed reloads the model, the prefix is cached, a long
        pass announced. False when the call was cancelled meanwhile."""
        if self._engine.generator is None:
            raise ModelLoadError(f"{self.path} was closed: load the model again")
        if call.cancel.is_set():
            return False
        seed = request.options.seed
        if seed is not None and seed != self._engine.fresh_seed:
            self._engine.load(seed)  # a model load: see LoadedGenerator.load
            self.prefix_cache.clear()
        self._engine.fresh_seed = None
        self._announce(request, call)
        if request.cache_prefix and not call.cancel.is_set():
            self.prefix_cache.remember(request.static_ids)
        return not call.cancel.is_set()

    def _announce(self, request, call: Call) -> None:
        """Counts the tokens this call reads and tells about a long pass."""
        cached = request.static_ids and request.static_ids in self.prefix_cache
        tokens = len(request.ids) - (len(request.static_ids) if cached else 0)
        call.stats.read_tokens = tokens
        if tokens >= self.long_prompt_tokens:
            call.announce(PromptNotice(tokens, self.prompt_speed.estimate(tokens)))
