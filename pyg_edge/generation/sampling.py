"""Sampling options, with PygmalionAI gradio-ui's defaults (the prompt format's own banned
markers are the chat layer's: pyg_edge.chat.prompt.PYGMALION_BANNED)."""

from dataclasses import dataclass, fields, replace

from pyg_edge.errors import OptionsError, UnknownOptionError
from pyg_edge.generation.token_probs import MAX_TOP_LOGPROBS


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick tokens. Defaults are PygmalionAI gradio-ui's.

    Attributes:
      temperature: Softmax temperature; 0 means greedy (always the likeliest token).
      top_k: Sample among the k likeliest tokens; 0 means no limit.
      top_p: Sample among the likeliest tokens whose probabilities sum to p; 1 means no limit.
      repetition_penalty: Above 1 makes tokens already in the text less likely.
      no_repeat_ngram_size: Never repeat an n-gram of this size; 0 turns it off.
      max_new_tokens: Most tokens to generate.
      min_new_tokens: Fewest tokens to generate before the end token may come (a chat
        reply is never empty).
      seed: Seeds sampling for repeatable output; None for a different reply each time.
      stop: Strings that end the reply (not included in it).
      banned: Strings the model may not write.
      banned_ids: Token ids the model may not write (a client's token bans).
      top_logprobs: Report each generated token's log-probability (PygModel's
        last_generation.token_logprobs, and each streamed piece's .logprobs) with this many
        likeliest alternatives (0: the chosen token's only); None reports nothing.
    """

    temperature: float = 0.5
    top_k: int = 0
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    no_repeat_ngram_size: int = 0
    max_new_tokens: int = 196
    min_new_tokens: int = 1
    seed: int | None = None
    stop: tuple = ()
    banned: tuple = ()
    banned_ids: tuple = ()
    top_logprobs: int | None = None

    def __post_init__(self):
        checks = [
            ("temperature", self.temperature >= 0, ">= 0"),
            ("top_k", self.top_k >= 0, ">= 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0"),
            ("no_repeat_ngram_size", self.no_repeat_ngram_size >= 0, ">= 0"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("min_new_tokens", 0 <= self.min_new_tokens <= self.max_new_tokens,
             "in [0, max_new_tokens]"),
        ]
        if self.top_logprobs is not None:
            checks.append(("top_logprobs", 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS,
                           f"None or in [0, {MAX_TOP_LOGPROBS}]"))
        for name, valid, expected in checks:
            if not valid:
                raise OptionsError(f"{name} is {getattr(self, name)!r}, expected {expected}")

    def with_overrides(self, **overrides) -> "SamplingOptions":
        """A copy with some fields changed; an unknown name raises UnknownOptionError (a
        TypeError) listing the valid ones."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise UnknownOptionError(
                f"unknown sampling option {sorted(unknown)[0]!r}; expected one of: "
                + ", ".join(sorted(known))
            )
        return replace(self, **overrides)

    def ctranslate2_kwargs(self) -> dict:
        """The matching arguments of ctranslate2.Generator.generate_tokens."""
        greedy = self.temperature == 0
        return {
            "max_length": self.max_new_tokens,
            "min_length": self.min_new_tokens,
            "sampling_temperature": 1.0 if greedy else self.temperature,
            "sampling_topk": 1 if greedy else self.top_k,
            "sampling_topp": 1.0 if greedy else self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }
