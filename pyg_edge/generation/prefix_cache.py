"""The static prefixes CTranslate2 holds in its prompt cache, kept to a bound.

CTranslate2 keeps the state of every static prefix it has seen and offers no eviction: the
only way to empty its cache is to unload the model and load it again. Each cached prefix
of a long prompt holds about 1 GB at the 2.7B shape (benchmarks/results/memory.md), and
one is enough once smart context keeps a full chat's prefix stable
(benchmarks/results/api_replay.md).
"""

import logging
from collections.abc import Callable

logger = logging.getLogger("pyg_edge")

MAX_CACHED_PREFIXES = 1


class PrefixCache:
    """Which prefixes are cached; a new one past the limit empties the cache by a reload.

    Args:
      reload: Unloads and loads the model again (which empties CTranslate2's cache).
      limit: The most prefixes kept.
    """

    def __init__(self, reload: Callable[[], None], limit: int = MAX_CACHED_PREFIXES):
        self._reload = reload
        self._limit = limit
        self._prefixes = set()

    @property
    def prefixes(self) -> frozenset:
        """The cached prefixes, as tuples of token ids."""
        return frozenset(self._prefixes)

    def __contains__(self, static_ids) -> bool:
        return tuple(static_ids) in self._prefixes

    def needs_reload(self, static_ids) -> bool:
        """Whether remembering static_ids will empty the cache first."""
        static_ids = tuple(static_ids)
        return bool(static_ids) and static_ids not in self._prefixes and (
            len(self._prefixes) >= self._limit)

    def remember(self, static_ids) -> None:
        """Records static_ids as cached, reloading first when the cache is full."""
        static_ids = tuple(static_ids)
        if not static_ids or static_ids in self._prefixes:
            return
        if len(self._prefixes) >= self._limit:
            logger.info("dropping %d cached prompt prefixes", len(self._prefixes))
            self._reload()
            self._prefixes.clear()
        self._prefixes.add(static_ids)

    def clear(self) -> None:
        """Forgets every prefix (after a load, which starts with an empty cache)."""
        self._prefixes.clear()
