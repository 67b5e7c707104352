"""A converted model loaded with CTranslate2, generating streamed text, one call at a time."""

import atexit
import functools
import logging
import os
import threading
import time
import weakref

from pyg_edge.cpu.gemm_backend import packs_weights
from pyg_edge.cpu.setup import ctranslate2_module
from pyg_edge.cpu.tuning import release_freed_memory
from pyg_edge.errors import ModelLoadError, PygEdgeError
from pyg_edge.generation import loading
from pyg_edge.generation.generate import stream_pieces
from pyg_edge.generation.model_folder import DEVICES, auto_compute_type, pick_device, read_metadata
from pyg_edge.generation.prefill import PromptSpeed
from pyg_edge.generation.prefix_cache import PrefixCache
from pyg_edge.generation.replies import Replies, ReplyResults, check_reply_count, sample_replies
from pyg_edge.generation.request import generation_kwargs, prepare_request
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import GenerationStats, PromptNotice
from pyg_edge.generation.streams import Call, TextStream
from pyg_edge.generation.tokenizer import TextTokenizer
from pyg_edge.generation.turns import TurnQueue

logger = logging.getLogger("pyg_edge")

# Prompt passes at least this long are announced to on_long_prompt.
LONG_PROMPT_TOKENS = 256
# CTranslate2's "no seed" value: threads seed themselves from std::random_device.
_UNSEEDED = 2**32 - 1
# Models still open at interpreter exit are closed first: a CTranslate2 generator torn down
# by static destructors can abort the process ("terminate called without an active
# exception", seen in about 1 of 15 test child processes that never closed their model).
_open_models = weakref.WeakSet()
atexit.register(lambda: [model.close() for model in list(_open_models)])


class PygModel:
    """A pyg-edge model folder (from `pyg-edge convert`) ready to generate.

    One generation runs at a time; calls from several threads (or asyncio tasks) wait their
    turn in arrival order. Each call returns a stream that carries its own figures
    (stream.stats). See docs/embedding.md for the thread contract.

    Args:
      path: The converted model folder.
      device: "auto" (CUDA when a GPU computes, else the CPU), "cpu" or "cuda".
      compute_type: "auto" for the fastest exact type on the device, or any type
        CTranslate2 accepts ("int8", "float32", "int8_float16", ...).
      cpu_threads: Threads for CPU inference; 0 lets CTranslate2 choose.
      seed: Seeds sampling at load: the same seed and the same calls give the same text.
      cpu_tuning: Apply glibc's heap settings when this load makes pyg-edge's process-wide
        settings (pyg_edge.cpu.setup.prepare, which an app may call itself first).
      gemm: The CPU GEMM backend for pyg_edge.cpu.setup.prepare; None reads PYG_EDGE_GEMM.
        Process-wide: the first load (or prepare call) in a process decides.
      progress: Called as progress(phase, fraction) through the load: phases
        loading.CHECKING_CPU, READING_WEIGHTS and READY; fraction is None where unknown.

    Attributes:
      prompt_speed: This machine's prompt reading speed, measured on past generations.
      last_generation: The figures of the latest call to end.

    Raises:
      ModelLoadError: the folder is not a converted model, or the device refuses it.
    """

    def __init__(self, path, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0, seed: int | None = None, cpu_tuning: bool = True,
                 gemm: str | None = None, progress=None):
        report = loading.progress_reporter(progress)
        self.path = os.fspath(path)
        self.metadata = read_metadata(self.path)
        if device not in DEVICES:
            raise ModelLoadError(f"unknown device {device!r}; expected one of: "
                                 + ", ".join(DEVICES))
        report(loading.CHECKING_CPU)
        try:
            self._ct2 = ctranslate2_module(gemm, keep_heap=cpu_tuning)
        except PygEdgeError as error:
            raise ModelLoadError(str(error)) from None
        self._cpu_threads = cpu_threads
        self._turns = TurnQueue()
        self._reading = threading.local()  # which stream each thread reads (re-entry)
        self._generator = None
        self.prefix_cache = PrefixCache(self._reload)
        self.last_generation = GenerationStats()
        self.prompt_speed = PromptSpeed()
        self.long_prompt_tokens = LONG_PROMPT_TOKENS
        self.tokenizer = TextTokenizer.from_model_folder(self.path)
        report(loading.READING_WEIGHTS, 0.0)
        self._open(pick_device(self._ct2, device), compute_type, seed, device == "auto")
        report(loading.READING_WEIGHTS, 1.0)
        _open_models.add(self)
        logger.info("loaded %s on %s (%s)", self.path, self.device, self.compute_type)
        report(loading.READY, 1.0)

    def _open(self, device: str, compute_type: str, seed, fall_back: bool) -> None:
        """Loads on device; a CUDA device that cannot compute falls back to the CPU."""
        self.device = device
        self.compute_type = (auto_compute_type(self.metadata["quantization"], device)
                             if compute_type == "auto" else compute_type)
        self._load_generator(seed)
        if device != "cuda":
            return
        failure = loading.probe_device(self._generator, self.tokenizer.tokens(
            [self.metadata["eos_token_id"]])[0])
        if failure is None:
            return
        self.close()
        if not fall_back:
            raise loading.cuda_error(self.path, failure)
        logger.warning("CUDA cannot compute (%s): running %s on the CPU", failure, self.path)
        self._open("cpu", "auto" if compute_type == "auto" else compute_type, seed, False)

    def _load_generator(self, seed: int | None) -> None:
        """(Re)creates the CTranslate2 generator, its sampler seeded with seed if given.

        CTranslate2 seeds each worker thread's random generator once, when that thread
        first samples (OpenNMT/CTranslate2#1757), so a seed only takes effect on a new
        generator: with one worker thread, the same seed then gives the same outputs.
        """
        if self._generator is not None:
            self._generator.unload_model()
            self._generator = None
            self._release_after_load()
        self._ct2.set_random_seed(_UNSEEDED if seed is None else seed)
        try:
            self._generator = self._ct2.Generator(
                self.path, device=self.device, compute_type=self.compute_type,
                intra_threads=self._cpu_threads, inter_threads=1,
            )
        except (RuntimeError, ValueError) as error:
            raise ModelLoadError(f"cannot load {self.path} on {self.device}: {error}") from None
        self._release_after_load()
        self._fresh_seed = seed
        self.prefix_cache.clear()

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

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return self._turns.waiting

    def stream(self, prompt, options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, static_tokens: int = 0, *,
               on_long_prompt=None, notices: bool = False, plan=None,
               **overrides) -> TextStream:
        """Generates a continuation of prompt; iterate the result (or `async for` it) for
        its text as it is produced.

        Yielded text never holds part of a stop string or of a UTF-8 character. Close the
        stream, or set cancel, to end generation early: iteration then ends within 0.1 s,
        whether the call is waiting for its turn, the model reloads or reads the prompt.

        Args:
          prompt: A str, continued as it is (a raw completion), or a Prompt from
            build_prompt: its stop strings then apply, its static prefix is cached across
            calls, and the reply is trimmed of surrounding whitespace.
          options: Sampling options (defaults: SamplingOptions()).
          cancel: An Event that stops generation when set.
          static_tokens: For a str prompt, how many of its leading tokens to give
            CTranslate2 as a static prefix, cached across calls; at least one token
            always stays after it.
          on_long_prompt: None, or called as on_long_prompt(tokens, seconds), from the
            generation's thread, before a prompt pass of at least long_prompt_tokens that
            are not cached; seconds is prompt_speed's estimate, or None before one exists.
          notices: Also yield a PromptNotice before such a pass (for async readers).
          plan: None, or called as plan(cached_prefixes) once the call's turn comes,
            returning (prompt, static_tokens) to use instead (smart context and prefix
            planning: pyg_edge.chat.completions).
          **overrides: Fields of SamplingOptions to change for this call.

        Raises:
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context
            (with plan: when iterated).
          OptionsError: an option has an invalid value (UnknownOptionError: no such one).
        """
        call = Call(cancel, GenerationStats(), notices, on_long_prompt)
        return self._new_call(TextStream, call, prompt, options, overrides, static_tokens,
                              plan, self._generate_text)

    def generate(self, prompt, options: SamplingOptions | None = None, **overrides) -> str:
        """Like stream(), but returns the whole text."""
        return "".join(self.stream(prompt, options, **overrides))

    def stream_replies(self, prompt, n: int, options: SamplingOptions | None = None,
                       cancel: threading.Event | None = None, static_tokens: int = 0, *,
                       on_long_prompt=None, notices: bool = False, plan=None,
                       **overrides) -> Replies:
        """Samples n replies to prompt from one pass over it, in one batch.

        Iterating the result yields the first reply's text as stream() would; the other
        replies are in its .texts once iteration ends (see pyg_edge.generation.replies).
        Greedy options (temperature 0 or top_k 1) give n copies of the one greedy reply.

        Args:
          prompt, options, cancel, static_tokens, on_long_prompt, notices, plan,
            **overrides: As for stream().
          n: How many replies, 1 to MAX_REPLIES; each holds its own copy of the
            prompt's state (about 1 GB at 1,500 tokens on the 2.7B shape).

        Raises:
          OptionsError: n is not a whole number from 1 to MAX_REPLIES.
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context.
        """
        results = ReplyResults(check_reply_count(n))
        call = Call(cancel, GenerationStats(), notices, on_long_prompt)
        return self._new_call(functools.partial(Replies, results), call, prompt, options,
                              overrides, static_tokens, plan,
                              functools.partial(self._generate_replies, results=results))

    def generate_replies(self, prompt, n: int, options: SamplingOptions | None = None,
                         **overrides) -> list:
        """Like stream_replies(), but returns the n texts."""
        return self.stream_replies(prompt, n, options, **overrides).wait()

    def close(self) -> None:
        """Stops every call, waiting or running, and frees the model's memory; the object
        cannot generate afterwards. Waits for a running prompt pass to end."""
        if self._generator is None:
            return
        self._turns.cancel_all()
        self._turns.acquire()
        try:
            if self._generator is not None:
                self._generator.unload_model()
                self._generator = None
                release_freed_memory()
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
        else:  # checked now, prepared in the call's turn
            request = None
            (options or SamplingOptions()).with_overrides(**overrides)
        run = functools.partial(self._run, request=request, produce=produce,
                                prepare=functools.partial(self._planned, plan, options,
                                                          overrides))
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
                call.stats.finish_reason = "cancelled"
                return
            try:
                call.state = "running"
                request = request or prepare()
                call.stats.prompt_tokens = len(request.ids)
                call.stats.cached_tokens = len(request.static_ids)
                if self._begin(request, call):
                    produce(call, request, self._generator)
                else:
                    call.stats.finish_reason = "cancelled"
            finally:
                self._turns.release()
        except BaseException as error:  # noqa: BLE001  raised to the reader
            call.emit(error)
        finally:
            call.stats.seconds = time.monotonic() - call.started
            if call.cancel.is_set():
                call.stats.finish_reason = "cancelled"
            self.last_generation = call.stats
            self._record_speed(call.stats)
            call.end()

    def _begin(self, request, call: Call) -> bool:
        """In the call's turn: a new seed reloads the model, the prefix is cached, a long
        pass announced. False when the call was cancelled meanwhile."""
        if self._generator is None:
            raise ModelLoadError(f"{self.path} was closed: load the model again")
        seed = request.options.seed
        if call.cancel.is_set():
            return False
        if seed is not None and seed != self._fresh_seed:
            self._load_generator(seed)  # costs a model load: see _load_generator
        self._fresh_seed = None
        self._announce(request, call)
        if request.cache_prefix and not call.cancel.is_set():
            self.prefix_cache.remember(request.static_ids)
        return not call.cancel.is_set()

    def _announce(self, request, call: Call) -> None:
        """Counts the tokens this call reads and tells about a long pass."""
        cached = request.static_ids and request.static_ids in self.prefix_cache
        tokens = len(request.ids) - (len(request.static_ids) if cached else 0)
        call.stats.read_tokens = tokens
        if tokens < self.long_prompt_tokens:
            return
        notice = PromptNotice(tokens, self.prompt_speed.estimate(tokens))
        if call.notices:
            call.emit(notice)
        if call.on_long_prompt is not None:
            call.on_long_prompt(notice.tokens, notice.seconds)

    def _generate_text(self, call, request, generator):
        kwargs = generation_kwargs(self.tokenizer, request)
        for piece in stream_pieces(generator, self.tokenizer, request, kwargs, call):
            call.emit(piece)

    def _generate_replies(self, call, request, generator, results):
        kwargs = generation_kwargs(self.tokenizer, request)
        for piece in sample_replies(generator, self.tokenizer, request, results, call.cancel,
                                    kwargs, call.stats, call.started):
            call.emit(piece)
        call.stats.new_tokens = sum(results.new_tokens)
        call.stats.finish_reason = results.finish_reasons[0]

    def _reload(self) -> None:
        """Unloads and loads the model again, which empties CTranslate2's prompt cache."""
        self._generator.unload_model()
        self._release_after_load()  # before the load, whose peak may hold two copies
        self._generator.load_model()
        self._release_after_load()

    def _record_speed(self, stats: GenerationStats) -> None:
        if stats.new_tokens and stats.first_token_seconds:
            self.prompt_speed.record(stats.read_tokens, stats.first_token_seconds)

    def _release_after_load(self) -> None:
        """Returns freed heap memory to the system around a load that packs its weights:
        other loads free little, and the next passes would fault in what they reuse."""
        if self.device != "cpu" or packs_weights():
            release_freed_memory()

