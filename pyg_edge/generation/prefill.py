"""Keeping every prompt pass exact on a model converted with a prefill chunk.

A model converted with `prefill_chunk` W (pyg_edge_convert.gpt_neo.check_prefill_chunk)
has CTranslate2's decoder-level sliding window: a prompt pass longer than W is read in
chunks of W tokens, and chunk i > 0 sees `W + c + 1` keys for its query c. That is every
earlier token only while at most two chunks are read with nothing cached before them, so
(measured on the tiny fixtures, tests/runtime/test_prefill.py):

- a first pass (the static prefix, or the whole prompt but its last token when there is
  no prefix) is exact up to 2 * W tokens;
- the pass after a cached prefix (the dynamic part but its last token, which is the
  first decoding step) is exact up to W tokens;
- decoding, one token at a time, is always exact.

exact_cut moves the static/dynamic cut of a prompt so that both passes stay within those
limits; a prompt longer than 3 * W + 1 tokens has no exact cut and is refused.
"""

from pyg_edge.errors import PromptTooLongError


def exact_cut(total: int, cut: int, chunk: int) -> int:
    """The static prefix length nearest to cut whose prompt passes are all exact.

    Args:
      total: Tokens in the prompt.
      cut: The static prefix length wanted (0 for none), below total.
      chunk: The model's prefill chunk; 0 (no chunking) keeps cut as it is.

    Returns:
      cut itself when its passes are exact, else the nearest length that is: the
      dynamic part is shortened to chunk + 1 tokens, or the prefix to 2 * chunk.

    Raises:
      PromptTooLongError: no cut makes both passes exact (total > 3 * chunk + 1).
    """
    if not chunk:
        return cut
    if cut == 0 and total - 1 <= 2 * chunk:
        return 0
    low, high = max(1, total - 1 - chunk), min(2 * chunk, total - 1)
    if low > high:
        raise PromptTooLongError(
            f"prompt is {total} tokens; this model reads at most {3 * chunk + 1} exactly "
            f"(converted with prefill chunk {chunk}): shorten the prompt or convert it "
            f"again with a larger --prefill-chunk"
        )
    return min(max(cut, low), high)


def prompt_passes(total: int, cut: int) -> tuple:
    """The lengths of the prompt passes CTranslate2 makes: (prefix pass, dynamic pass).

    The last prompt token is fed as the first decoding step, so it is in neither pass.
    """
    return (cut, total - cut - 1) if cut else (0, total - 1)


class PromptSpeed:
    """How fast this machine reads prompts, from the model's own past prompt passes.

    A running average of tokens per second over passes of at least MIN_TOKENS (shorter
    ones are dominated by fixed costs and would promise too much for a long prompt).
    Reading grows faster than linearly with length (attention), so the estimate is only
    given for lengths up to twice the longest pass measured; past that it says nothing.
    """

    MIN_TOKENS = 64
    _WEIGHT = 0.5  # of the newest pass: machines are shared, recent passes matter most

    def __init__(self):
        self.tokens_per_second = None
        self.longest = 0

    def record(self, tokens: int, seconds: float) -> None:
        """Adds one prompt pass: tokens read in seconds (to the first generated token)."""
        if tokens < self.MIN_TOKENS or seconds <= 0:
            return
        rate = tokens / seconds
        old = self.tokens_per_second
        self.tokens_per_second = rate if old is None else old + self._WEIGHT * (rate - old)
        self.longest = max(self.longest, tokens)

    def estimate(self, tokens: int) -> float | None:
        """Seconds to read tokens, or None before a comparable pass was measured."""
        if self.tokens_per_second is None or tokens > 2 * self.longest:
            return None
        return tokens / self.tokens_per_second
