"""The static prefixes CTranslate2 holds in its prompt cache, kept within a memory budget.

CTranslate2 keeps the state of every static prefix it has seen and offers no eviction: the
only way to empty its cache is to unload the model and load it again (a reload: 0.9 to
2.7 s at the 2.7B shape). Each cached prefix holds the keys and values of its tokens
(float32: 0.66 MB a token at the 2.7B shape, about 1 GB for a long chat's prefix), so the
cache keeps as many prefixes as its budget holds: two windows chatting with two characters
keep both, and alternating between them reads no prompt again. A new prefix past the
budget empties the cache by a reload (logged), and so does one whose chat moved on when
the prefixes it outdates hold more than the others: a cached prefix that starts as the new
one starts (RELATED_TOKENS, or all of it: the same card) is of no more use, so a single
chat keeps one prefix, as it did when one was all the cache kept. Two windows with the
same character are one chat to this rule.
"""

import logging
import os
from collections.abc import Callable

logger = logging.getLogger("pyg_edge")

# The budget when none is given: this share of the memory available once the model is in.
DEFAULT_BUDGET_SHARE = 0.25
_FALLBACK_BUDGET = 2 << 30  # where the available memory cannot be read
# Prefixes that share this many leading tokens (or all of the shorter) belong to one chat.
RELATED_TOKENS = 32


def default_budget() -> int:
    """DEFAULT_BUDGET_SHARE of the memory available now (MemAvailable), or 2 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * DEFAULT_BUDGET_SHARE)
    except (OSError, ValueError):
        pass
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else -1
    return int(pages * os.sysconf("SC_PAGE_SIZE") * DEFAULT_BUDGET_SHARE) if pages > 0 \
        else _FALLBACK_BUDGET


class PrefixCache:
    """Which prefixes are cached; a new one past the budget empties the cache by a reload.

    Args:
      reload: Unloads and loads the model again (which empties CTranslate2's cache).
      bytes_per_token: What a cached token holds (keys and values of every layer).
      budget: The most bytes the cached prefixes may hold; one prefix is always kept,
        whatever its size.

    Attributes:
      reloads: How many times the cache was emptied by a reload.
    """

    def __init__(self, reload: Callable[[], None], bytes_per_token: int, budget: int):
        self._reload = reload
        self.bytes_per_token = bytes_per_token
        self.budget = budget
        self._prefixes = {}  # prefix -> None, oldest first
        self.reloads = 0

    @classmethod
    def for_model(cls, reload, metadata: dict, budget: int | None = None) -> "PrefixCache":
        """The cache of a model with this metadata; budget None: default_budget()."""
        return cls(reload, bytes_per_token(metadata),
                   default_budget() if budget is None else budget)

    @property
    def prefixes(self) -> frozenset:
        """The cached prefixes, as tuples of token ids."""
        return frozenset(self._prefixes)

    @property
    def used_bytes(self) -> int:
        return sum(len(p) for p in self._prefixes) * self.bytes_per_token

    def __contains__(self, static_ids) -> bool:
        return tuple(static_ids) in self._prefixes

    def needs_reload(self, static_ids) -> bool:
        """Whether remembering static_ids will empty the cache first."""
        static_ids = tuple(static_ids)
        if not static_ids or static_ids in self._prefixes or not self._prefixes:
            return False
        over = self.used_bytes + len(static_ids) * self.bytes_per_token > self.budget
        outdated = sum(len(p) for p in self._prefixes if _related(p, static_ids))
        return over or outdated > sum(map(len, self._prefixes)) - outdated

    def remember(self, static_ids) -> None:
        """Records static_ids as cached, reloading first when needs_reload says so."""
        static_ids = tuple(static_ids)
        if not static_ids or static_ids in self._prefixes:
            return
        if self.needs_reload(static_ids):
            logger.info("emptying the prompt cache by a reload: %d prefixes, %.0f MB (budget "
                        "%.0f MB), for a new prefix of %d tokens", len(self._prefixes),
                        self.used_bytes / 1e6, self.budget / 1e6, len(static_ids))
            self._reload()
            self.reloads += 1
            self._prefixes.clear()
        self._prefixes[static_ids] = None

    def clear(self) -> None:
        """Forgets every prefix (after a load, which starts with an empty cache)."""
        self._prefixes.clear()

    def empty(self) -> None:
        """Frees what the cached prefixes hold, by a reload (none when nothing is cached)."""
        if self._prefixes:
            self._reload()
            self.reloads += 1
            self._prefixes.clear()


def _related(a: tuple, b: tuple) -> bool:
    """Whether two prefixes start alike: RELATED_TOKENS, or all of the shorter."""
    size = min(RELATED_TOKENS, len(a), len(b))
    return a[:size] == b[:size]


def bytes_per_token(metadata: dict, float_bytes: int = 4) -> int:
    """Keys and values of every layer for one token, as CTranslate2 caches them (float32
    on a CPU); 0 where the model's shape is not in its metadata."""
    config = metadata.get("source", {}).get("config", {})
    layers, hidden = config.get("num_layers", 0), config.get("hidden_size", 0)
    return 2 * layers * hidden * float_bytes
