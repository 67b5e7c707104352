"""A converted model loaded with CTranslate2, generating streamed text."""

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from pyg_edge.chat.prompt import Prompt
from pyg_edge.cpu.gemm_backend import load_ctranslate2, packs_weights
from pyg_edge.cpu.tuning import apply_cpu_tuning, choose_cpu_tuning, release_freed_memory
from pyg_edge.errors import ModelLoadError, PromptTooLongError, PygEdgeError
from pyg_edge.generation.model_folder import DEVICES, auto_compute_type, pick_device, read_metadata
from pyg_edge.generation.prefill import PromptSpeed, exact_cut
from pyg_edge.generation.replies import Replies, check_reply_count, sample_replies
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import GenerationStats
from pyg_edge.generation.stopping import StopFilter
from pyg_edge.generation.token_probs import LogprobTrail, steps_with_logits, token_logprob
from pyg_edge.generation.tokenizer import TextTokenizer

logger = logging.getLogger("pyg_edge")

# Each cached prefix of a 1,400-token prompt holds ~0.9 GB at the 2.7B shape (DESIGN.md 3).
# One is enough: smart context keeps a full chat's prefix stable, a growing chat's next
# prefix replaces the last, and emptying the cache (a reload) takes 0.9 s there with
# unpacked weights (exact-vnni), 1.4-2.7 s with packed ones.
MAX_CACHED_PREFIXES = 1
# Prompt passes at least this long are announced to on_long_prompt.
LONG_PROMPT_TOKENS = 256
# CTranslate2's "no seed" value: threads seed themselves from std::random_device.
_UNSEEDED = 2**32 - 1
# Models still open at interpreter exit are closed first: a CTranslate2 generator torn down
# by static destructors can abort the process ("terminate called without an active
# exception", seen in about 1 of 15 test child processes that never closed their model).
_open_models = weakref.WeakSet()
atexit.register(lambda: [model.close() for model in list(_open_models)])


@dataclass
class _Request:
    """One generation call, prepared: options, the prompt's ids split at the cached prefix."""

    options: SamplingOptions
    ids: list
    static_ids: list
    dynamic_ids: list
    stops: tuple
    trim: bool
    eos: int
    # False for a prefix only the prefill chunk asked for: caching it would push out ones
    # that later prompts share (pyg_edge.generation.prefill.exact_cut).
    cache_prefix: bool = True


class PygModel:
    """A pyg-edge model folder (from `pyg-edge convert`) ready to generate.

    Args:
      path: The converted model folder.
      device: "auto" (CUDA when a GPU is visible), "cpu" or "cuda".
      compute_type: "auto" for the fastest exact type on the device, or any type
        CTranslate2 accepts ("int8", "float32", "int8_float16", ...).
      cpu_threads: Threads for CPU inference; 0 lets CTranslate2 choose.
      seed: Seeds sampling at load: the same seed and the same calls give the same text.
      cpu_tuning: On CPU, apply the process-wide settings measured fastest for this kind
        of machine (pyg_edge.cpu.tuning) before the first model loads; False, or
        PYG_EDGE_CPU_TUNING=0 in the environment, leaves CTranslate2's defaults.
      gemm: The CPU GEMM backend (pyg_edge.cpu.gemm_backend): "auto" picks the fastest one
        proven exact on this CPU, or "onednn", "mkl-vnni", "exact-vnni", "exact-avx2"; None reads
        PYG_EDGE_GEMM. Process-wide: only the first model loaded in a process decides.

    Attributes:
      prompt_speed: This machine's prompt reading speed, measured on past generations.
      on_long_prompt: None, or called as on_long_prompt(tokens, seconds) before a prompt
        pass of at least long_prompt_tokens (LONG_PROMPT_TOKENS) that are not cached:
        seconds is prompt_speed's estimate, or None before one could be made (the CLI
        chat shows it, so a long pass is never silent).

    Raises:
      ModelLoadError: the folder is not a converted model, or the device refuses it.
    """

    def __init__(self, path, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0, seed: int | None = None, cpu_tuning: bool = True,
                 gemm: str | None = None):
        self.path = os.fspath(path)
        self.metadata = read_metadata(self.path)
        if device not in DEVICES:
            expected = ", ".join(DEVICES)
            raise ModelLoadError(f"unknown device {device!r}; expected one of: {expected}")
        try:
            self._ct2 = load_ctranslate2(gemm)
        except PygEdgeError as error:
            raise ModelLoadError(str(error)) from None
        self.device = pick_device(self._ct2, device)
        if self.device == "cpu" and cpu_tuning:
            apply_cpu_tuning(choose_cpu_tuning())
        self.compute_type = (
            auto_compute_type(self.metadata["quantization"], self.device)
            if compute_type == "auto" else compute_type
        )
        self._cpu_threads = cpu_threads
        self._lock = threading.Lock()
        self._generator = None
        self.last_generation = GenerationStats()
        self.prompt_speed = PromptSpeed()
        self.on_long_prompt = None
        self.long_prompt_tokens = LONG_PROMPT_TOKENS
        self._load_generator(seed)
        _open_models.add(self)
        self.tokenizer = TextTokenizer.from_model_folder(self.path)
        logger.info("loaded %s on %s (%s)", self.path, self.device, self.compute_type)

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
        self._cached_prefixes = set()

    @property
    def context_length(self) -> int:
        return self.metadata["context_length"]

    @property
    def prefill_chunk(self) -> int:
        """Tokens per chunk of a long prompt pass (pyg_edge.generation.prefill); 0 for one pass."""
        return self.metadata.get("prefill_chunk", 0)

    @property
    def cached_prefixes(self) -> frozenset:
        """The static prefixes (tuples of token ids) CTranslate2 holds in its cache now."""
        return frozenset(self._cached_prefixes)

    def stream(
        self,
        prompt,
        options: SamplingOptions | None = None,
        cancel: threading.Event | None = None,
        static_tokens: int = 0,
        **overrides,
    ) -> Iterator[str]:
        """Generates a continuation of prompt, yielding text as it is produced.

        Yielded text never holds part of a stop string or of a UTF-8 character. Stop
        iterating, or set cancel, to end generation early.

        Args:
          prompt: A str, continued as it is (a raw completion), or a Prompt from
            build_prompt: its stop strings then apply, its static prefix is cached across
            calls, and the reply is trimmed of surrounding whitespace.
          options: Sampling options (defaults: SamplingOptions()).
          cancel: An Event that stops generation when set.
          static_tokens: For a str prompt, how many of its leading tokens to give
            CTranslate2 as a static prefix, cached across calls (pyg_edge.chat.prefix_planner
            chooses it); at least one token always stays after it.
          **overrides: Fields of SamplingOptions to change for this call.

        Raises:
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context.
          ValueError: static_tokens is negative, or given with a Prompt.
        """
        started = time.monotonic()
        request = self._prepare(prompt, options, overrides, static_tokens)
        self.last_generation = stats = GenerationStats(len(request.ids),
                                                       len(request.static_ids))
        try:
            stop_filter = StopFilter(request.stops, trim=request.trim)
            yield from self._stream_ids(request, stop_filter, cancel, stats, started)
        finally:
            stats.seconds = time.monotonic() - started
            self._record_speed(stats)

    def generate(self, prompt, options: SamplingOptions | None = None, **overrides) -> str:
        """Like stream(), but returns the whole text."""
        return "".join(self.stream(prompt, options, **overrides))

    def stream_replies(self, prompt, n: int, options: SamplingOptions | None = None,
                       cancel: threading.Event | None = None, static_tokens: int = 0,
                       **overrides) -> Replies:
        """Samples n replies to prompt from one pass over it, in one batch.

        Iterating the result yields the first reply's text as stream() would; the other
        replies are in its .texts once iteration ends (see pyg_edge.generation.replies.Replies).
        Greedy options (temperature 0 or top_k 1) give n copies of the one greedy reply.

        Args:
          prompt, options, cancel, static_tokens, **overrides: As for stream().
          n: How many replies, 1 to MAX_REPLIES; each holds its own copy of the
            prompt's state (about 1 GB at 1,500 tokens on the 2.7B shape).

        Raises:
          ValueError: n is not a whole number from 1 to MAX_REPLIES.
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context.
        """
        n = check_reply_count(n)
        request = self._prepare(prompt, options, overrides, static_tokens)
        return Replies(n, lambda result: self._stream_replies(request, result, cancel))

    def generate_replies(self, prompt, n: int, options: SamplingOptions | None = None,
                         **overrides) -> list:
        """Like stream_replies(), but returns the n texts."""
        return self.stream_replies(prompt, n, options, **overrides).wait()

    def close(self) -> None:
        """Frees the model's memory; the object cannot generate afterwards."""
        if self._generator is not None:
            self._generator.unload_model()
            self._generator = None
            release_freed_memory()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens + max_new_tokens > self.context_length:
            raise PromptTooLongError(
                f"prompt is {prompt_tokens} tokens and max_new_tokens {max_new_tokens}, "
                f"the context is {self.context_length}: shorten the prompt or lower max_new_tokens"
            )

    def _prepare(self, prompt, options, overrides: dict, static_tokens: int = 0) -> _Request:
        """Options, token ids and stop rules of one call, checked to fit the context."""
        options = (options or SamplingOptions()).with_overrides(**overrides)
        chat = isinstance(prompt, Prompt)
        _check_static_tokens(static_tokens, chat)
        text = prompt.text if chat else prompt
        ids = self.tokenizer.encode(text)
        self._check_fits(len(ids), options.max_new_tokens)
        if chat:
            cut = self._static_cut(ids, text, prompt.static_prefix)
        else:  # CTranslate2 needs at least one token after the prefix
            cut = max(0, min(static_tokens, len(ids) - 1))
        # A model with a prefill chunk reads only some pass lengths exactly (prefill.py).
        exact = exact_cut(len(ids), cut, self.prefill_chunk)
        static_ids, dynamic_ids = ids[:exact], ids[exact:]
        stops = options.stop + (prompt.stop_strings if chat else ())
        # Raw completions keep their surrounding spaces; chat replies are trimmed.
        return _Request(options, ids, static_ids, dynamic_ids, stops, trim=chat,
                        eos=self.metadata["eos_token_id"],
                        cache_prefix=exact == cut or tuple(static_ids) in self._cached_prefixes)

    def _static_cut(self, ids: list, text: str, static: str) -> int:
        """Where the static prefix ends in ids, at a token boundary of the whole text."""
        if not static or not text.startswith(static):
            return 0
        # CTranslate2 needs at least one token after the prefix
        return min(self.tokenizer.prefix_length(ids, static), len(ids) - 1)

    def _stream_ids(self, request, stop_filter, cancel, stats, started):
        decoder = self.tokenizer.stream_decoder()
        eos, top = request.eos, request.options.top_logprobs
        trail = LogprobTrail(request.trim) if top is not None else None
        with self._turn(request) as generator:
            prompt = self.tokenizer.tokens(request.dynamic_ids)
            kwargs = self._generation_kwargs(request)
            steps = (generator.generate_tokens(prompt, **kwargs) if trail is None
                     else steps_with_logits(generator, prompt, kwargs))
            try:
                for step in steps:
                    if step.token_id == eos:
                        stats.finish_reason = "stop"
                        break
                    stats.new_tokens += 1
                    if stats.new_tokens == 1:
                        stats.first_token_seconds = time.monotonic() - started
                    text = decoder.push(step.token_id)
                    if trail is not None:
                        trail.add(token_logprob(step.logits, step.token_id, top,
                                                self.tokenizer.decode), text)
                    piece = stop_filter.push(text)
                    if piece or stop_filter.stopped:
                        yield from self._shown(piece, trail, stats, stop_filter.stopped)
                    if stop_filter.stopped:
                        stats.finish_reason = "stop"
                        return
                    if cancel is not None and cancel.is_set():
                        stats.finish_reason = "cancelled"
                        return
                tail = stop_filter.push(decoder.flush())
                tail += "" if stop_filter.stopped else stop_filter.finish()
                yield from self._shown(tail, trail, stats, final=True)
            finally:
                steps.close()

    @staticmethod
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

    def _stream_replies(self, request, result, cancel):
        started = time.monotonic()
        self.last_generation = stats = GenerationStats(len(request.ids),
                                                       len(request.static_ids))
        try:
            with self._turn(request) as generator:
                yield from sample_replies(generator, self.tokenizer, request, result, cancel,
                                          self._generation_kwargs(request), stats, started)
        finally:
            stats.seconds = time.monotonic() - started
            stats.new_tokens = sum(result.new_tokens)
            stats.finish_reason = result.finish_reasons[0]
            self._record_speed(stats)

    @contextlib.contextmanager
    def _turn(self, request):
        """Holds the model for one generation: a new seed reloads it, the prefix is cached."""
        with self._lock:
            if self._generator is None:
                raise ModelLoadError(f"{self.path} was closed: load the model again")
            seed = request.options.seed
            if seed is not None and seed != self._fresh_seed:
                self._load_generator(seed)  # costs a model load: see _load_generator
            self._fresh_seed = None
            self._announce(request)
            if request.cache_prefix:
                self._remember_prefix(tuple(request.static_ids))
            yield self._generator

    def _announce(self, request) -> None:
        """Counts the tokens this turn reads and tells on_long_prompt about a long pass."""
        static = tuple(request.static_ids)
        cached = static in self._cached_prefixes
        tokens = len(request.ids) - (len(static) if cached else 0)
        self.last_generation.read_tokens = tokens
        if self.on_long_prompt is not None and tokens >= self.long_prompt_tokens:
            self.on_long_prompt(tokens, self.prompt_speed.estimate(tokens))

    def _record_speed(self, stats: GenerationStats) -> None:
        if stats.new_tokens and stats.first_token_seconds:
            self.prompt_speed.record(stats.read_tokens, stats.first_token_seconds)

    def _generation_kwargs(self, request) -> dict:
        """generate_tokens/generate_batch arguments besides the dynamic prompt tokens."""
        tokens = self.tokenizer.tokens
        banned = self._banned_sequences(request)
        return dict(
            static_prompt=tokens(request.static_ids) or None,
            cache_static_prompt=request.cache_prefix,
            suppress_sequences=banned or None,
            end_token=tokens([self.metadata["eos_token_id"]]),
            **request.options.ctranslate2_kwargs(),
        )

    def _remember_prefix(self, static_ids: tuple) -> None:
        """Bounds CTranslate2's static-prompt cache, which keeps every prefix it has seen.

        It offers no eviction, so past MAX_CACHED_PREFIXES distinct prefixes the model is
        unloaded and loaded again, which empties the cache.
        """
        if not static_ids or static_ids in self._cached_prefixes:
            return
        if len(self._cached_prefixes) >= MAX_CACHED_PREFIXES:
            logger.info("dropping %d cached prompt prefixes", len(self._cached_prefixes))
            # Reloading empties the cache: 0.9 s at the 2.7B shape with unpacked weights
            # and a kept heap, 2.7 s with packed ones (benchmarks/bench_chat_turn.py).
            self._generator.unload_model()
            self._release_after_load()  # before the load, whose peak may hold two copies
            self._generator.load_model()
            self._release_after_load()
            self._cached_prefixes = set()
        self._cached_prefixes.add(static_ids)

    def _release_after_load(self) -> None:
        """Returns freed heap memory to the system around a load that packs its weights:
        other loads free little, and the next passes would fault in what they reuse."""
        if self.device != "cpu" or packs_weights():
            release_freed_memory()

    def _banned_sequences(self, request) -> list:
        """Token sequences to suppress: the banned strings that no stop string ends first.

        A banned string that contains a stop string can never reach the reply (the stop
        ends it there), and suppressing it would keep the stop from firing: with "<START>"
        both banned and a stop, a model ending its turn with "\n<START>" was pushed to
        write "\n<START." and go on.
        """
        banned = [b for b in request.options.banned if not any(s in b for s in request.stops)]
        variants = {tuple(self.tokenizer.encode(p + s)) for s in banned for p in ("", " ")}
        variants |= {(i,) for i in request.options.banned_ids}
        return [self.tokenizer.tokens(list(v)) for v in variants if v]


def _check_static_tokens(static_tokens, chat: bool) -> None:
    if not isinstance(static_tokens, int) or static_tokens < 0:
        raise ValueError(f"static_tokens is {static_tokens!r}, expected an int >= 0")
    if chat and static_tokens:
        raise ValueError("static_tokens applies to str prompts; a Prompt has its static_prefix")
