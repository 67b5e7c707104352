"""Static prefixes for raw-text prompts, so API turns reuse CTranslate2's prompt cache.

KoboldAI, KoboldCpp and /v1/completions clients send the whole prompt as text on every
turn. CTranslate2 keeps the state of a static prefix across calls (`static_prompt`), keyed
on its exact tokens, so a turn only processes what follows a prefix it has seen. The
planner picks that prefix as a token-count cut of the prompt's own token list (the model
input stays the same as an uncached run), from what it has seen of recent prompts:

- A prefix already cached that the prompt starts with is reused while the tokens after it
  stay few (max_tail): a new prefix costs a pass over all its tokens, paid once.
- A prompt that extends the latest one, when that one extended its own predecessor (a chat
  that grows by the reply and the user's next message), or the same prompt again (a
  regenerate), is frozen up to its last few tokens: the next turn will start with all of it.
- Otherwise (a chat that has filled the context and drops its oldest messages each turn,
  an edited message) a prompt is frozen inside the part every related recent prompt
  shares (the card), rounded down to a block.
- Past max_tail, a new prefix is only worth its pass when it caches min_gain more tokens
  than the cached one it replaces.
- On a model with a prefill chunk, the pass after a prefix is exact only up to the chunk
  (pyg_edge.generation.prefill): a prefix that leaves more after it is of no use there, so a prompt
  that shares only a short card with the recent ones is frozen up to its end instead (the
  whole pass is paid either way; a regenerate then costs nothing).

How many prefixes CTranslate2 keeps is bounded by PygModel (MAX_CACHED_PREFIXES).
"""

import logging
from collections import deque

logger = logging.getLogger("pyg_edge")

# Tokens left after the prefix of a growing prompt: the closing "\n{char}:" line.
DYNAMIC_TAIL = 8
# A prompt "extends" a recent one when it keeps all of it but this many last tokens
# (a frontend's trailing space merges into the next word).
END_SLACK = 4
# Cuts inside a shared beginning are rounded down to this many tokens, so near-equal
# prompts (an edit, a regenerate after a trim) pick the same prefix.
BLOCK = 32


class PrefixPlanner:
    """Chooses the static prefix of each raw prompt from the recent ones.

    Args:
      context_length: The model's context, which scales the thresholds.
      prefill_chunk: The model's prefill chunk (pyg_edge.generation.prefill), 0 for none.
      recent: How many recent prompts to compare a new one with.
      keep_cached: Reuse a cached prefix for as long as the rest of the prompt is one
        exact pass (max_tail becomes the chunk, or the context): no new prefix, so no
        model reload, while a chat grows. The server does so with smart context, which
        cuts the prompt when the rest outgrows that pass (pyg_edge.chat.smart_context).

    Attributes:
      max_tail: A cached prefix is reused while at most this many tokens follow it (an
        eighth of the context: 256 for 2,048; what such a tail costs at the 2.7B shape is
        in benchmarks/results/chat_turn.md).
      min_prefix: No prefix shorter than this is worth a cache entry; recent prompts that
        share fewer tokens with a new one are unrelated to it (another chat).
      min_gain: Past max_tail, a new prefix must cache this many more tokens than the
        one it replaces to be worth its pass.
      max_pass: The most tokens a prefix may leave after it (the chunk, and the last
        token, which is the first decoding step), or None for no limit.
    """

    def __init__(self, context_length: int, prefill_chunk: int = 0, recent: int = 4,
                 keep_cached: bool = False):
        self.max_tail = max(context_length // 8, 16)
        self.min_prefix = max(context_length // 16, 8)
        self.min_gain = self.max_tail // 2
        self.max_pass = prefill_chunk + 1 if prefill_chunk else None
        if keep_cached:
            self.max_tail = self.max_pass or context_length
        self._recent = deque(maxlen=recent)

    def plan(self, ids, cached=()) -> int:
        """How many leading tokens of a prompt to give CTranslate2 as its static prefix.

        Args:
          ids: The prompt's token ids.
          cached: The prefixes (tuples of ids) CTranslate2 holds now.

        Returns:
          A token count from 0 (no prefix) to len(ids) - 1.
        """
        ids = tuple(ids)
        reuse = _longest_cached(ids, cached)
        fresh = self._stable_cut(ids)
        if not self._usable(ids, reuse):
            reuse = 0
        if not self._usable(ids, fresh):  # a card too short for the chunk: freeze it all
            fresh = max(0, len(ids) - DYNAMIC_TAIL)
        if reuse and (len(ids) - reuse <= self.max_tail or fresh - reuse < self.min_gain):
            return reuse
        if fresh >= self.min_prefix and fresh > reuse:
            logger.debug("new static prefix of %d tokens (was %d)", fresh, reuse)
            return fresh
        return reuse

    def outgrown(self, ids, cached=()) -> bool:
        """Whether a cached prefix that ids start with leaves more than max_tail after it."""
        reuse = _longest_cached(tuple(ids), cached)
        return bool(reuse) and len(ids) - reuse > self.max_tail

    def _usable(self, ids: tuple, cut: int) -> bool:
        """Whether a prefix of cut tokens leaves a pass the model reads exactly."""
        return self.max_pass is None or len(ids) - cut <= self.max_pass

    def _stable_cut(self, ids: tuple) -> int:
        """Where a new prefix would end: as far as the next turns will likely keep; records ids.

        The end of the prompt, for a regenerate (the same prompt again) and for a chat that
        grows (this prompt extends the latest one, which extended the one before it: a chat
        that has filled its context and dropped messages once will drop more). Else the
        part that every related recent prompt shares (the card), rounded down to a block.
        """
        related = [(len(r), grew, common) for r, grew in self._recent
                   if (common := _common_length(ids, r)) >= self.min_prefix]
        # (length of an earlier prompt, whether it extended its own latest, shared tokens)
        extends = [common >= length - END_SLACK for length, _, common in related]
        repeat = any(common >= length - END_SLACK and len(ids) <= length + END_SLACK
                     for length, _, common in related)
        grows = not related or (extends[-1] and related[-1][1])
        self._recent.append((ids, not related or extends[-1]))
        if repeat or grows:
            cut = len(ids) - DYNAMIC_TAIL
        else:
            cut = min(common for _, _, common in related) // BLOCK * BLOCK
        return max(0, min(cut, len(ids) - 1))


def _longest_cached(ids: tuple, cached) -> int:
    """The length of the longest cached prefix that ids start with and go beyond."""
    return max((len(p) for p in cached if len(p) < len(ids) and ids[:len(p)] == p), default=0)


def _common_length(a: tuple, b: tuple) -> int:
    """How many leading tokens a and b share."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):  # stops at the shorter
        if x != y:
            return i
    return min(len(a), len(b))
