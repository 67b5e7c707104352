"""The figures of one generation (each call's stream carries its own), and the notice of a
long prompt pass."""

from dataclasses import dataclass, field


@dataclass
class GenerationStats:
    """Figures of one generation.

    Attributes:
      prompt_tokens: Tokens in the prompt.
      cached_tokens: Of those, tokens in the static prefix given to the cache.
      read_tokens: Of those, tokens the prompt pass read (not found in the cache).
      new_tokens: Tokens generated (the end token not counted).
      first_token_seconds: From the call to the first generated token.
      queued_seconds: Of those, the time the call waited for its turn (other calls).
      seconds: From the call to the end of generation.
      finish_reason: "stop" (end token or stop string), "length" (max_new_tokens),
        or "cancelled" (the caller's cancel, while queued, loading or generating).
      token_logprobs: With SamplingOptions.top_logprobs, a TokenLogprob per token of the
        reply's text (pyg_edge.generation.token_probs).
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    read_tokens: int = 0
    new_tokens: int = 0
    first_token_seconds: float = 0.0
    queued_seconds: float = 0.0
    seconds: float = 0.0
    finish_reason: str = "length"
    token_logprobs: list = field(default_factory=list)


@dataclass(frozen=True)
class PromptNotice:
    """A long prompt pass about to start, for the caller to show (on_long_prompt).

    Attributes:
      tokens: Prompt tokens to read that are not cached.
      seconds: The model's estimate from this machine's past passes, or None.
    """

    tokens: int
    seconds: float | None
