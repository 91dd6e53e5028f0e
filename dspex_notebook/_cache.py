"""The client's value cache: TTL plus LRU, LFU or FIFO eviction, with hit statistics.

I/O-free and synchronous on purpose: a hit is a dict lookup plus bookkeeping (well under a
microsecond) and never touches the event loop, so ``await session.get_variable(x)`` on a hit costs
about as much as a method call. The clock is injectable for tests.

Lists and dicts are copied on the way in and out, so a caller mutating a value it got cannot
change what the next reader sees (arrays are stored read-only instead). In a notebook the IO
thread writes while the kernel thread reads: every operation is a single GIL-atomic dict step or
tolerates the entry vanishing in between.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MISS = object()  #: returned by :meth:`ValueCache.get` when there is no fresh entry
_MUTABLE = (list, dict)


def _copy_json(value: Any) -> Any:
    """Copy a JSON-shaped value (lists and dicts of scalars) so callers cannot edit the cache."""
    if type(value) is list:
        return [_copy_json(v) for v in value]
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    return value
POLICIES = ("lru", "lfu", "fifo")


class ValueCache:
    """``key -> value`` with time-to-live and bounded size.

    Parameters:
        ttl: seconds an entry stays fresh; 0 disables caching entirely.
        max_size: entries kept before evicting.
        policy: ``"lru"`` (least recently used), ``"lfu"`` (least frequently used) or
            ``"fifo"`` (oldest insert).
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(self, ttl: float = 1.0, max_size: int = 1000, policy: str = "lru",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, list[Any]] = OrderedDict()  # key -> [value, expires, uses]
        self._clock = clock
        self.hits = self.misses = self.evictions = 0
        self.ttl, self.max_size, self.policy = 1.0, 1000, "lru"
        self.configure(ttl, max_size, policy)

    def configure(self, ttl: float | None = None, max_size: int | None = None,
                  policy: str | None = None) -> None:
        """Change settings; shrinking ``max_size`` evicts immediately."""
        if ttl is not None:
            if ttl < 0:
                raise ValueError(f"cache ttl must be >= 0 seconds, got {ttl!r}")
            self.ttl = float(ttl)
            if ttl == 0:
                self._entries.clear()
        if max_size is not None:
            if max_size < 1:
                raise ValueError(f"cache max_size must be >= 1, got {max_size!r}")
            self.max_size = int(max_size)
        if policy is not None:
            if policy not in POLICIES:
                raise ValueError(f"eviction policy must be one of {POLICIES}, got {policy!r}")
            self.policy = policy
        while len(self._entries) > self.max_size:
            self._evict()

    def get(self, key: str) -> Any:
        """The fresh value for ``key``, or :data:`MISS`."""
        entry = self._entries.get(key)
        if entry is None or entry[1] < self._clock():
            self.misses += 1
            if entry is not None:
                self._entries.pop(key, None)
            return MISS
        self.hits += 1
        if self.policy == "lru":
            try:
                self._entries.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile (notebook IO thread)
                pass
        elif self.policy == "lfu":
            entry[2] += 1
        value = entry[0]
        return _copy_json(value) if type(value) in _MUTABLE else value

    def put(self, key: str, value: Any) -> None:
        """Cache ``value`` (lists and dicts are copied in and out; arrays should be read-only)."""
        if self.ttl <= 0:
            return
        if type(value) in _MUTABLE:
            value = _copy_json(value)
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            entry[0], entry[1] = value, self._clock() + self.ttl
            if self.policy == "lru":
                try:
                    entries.move_to_end(key)
                except KeyError:  # invalidated by another thread meanwhile
                    entries[key] = entry
            return
        if len(entries) >= self.max_size:
            self._evict()
        entries[key] = [value, self._clock() + self.ttl, 0]

    def invalidate(self, *keys: str) -> int:
        """Drop ``keys``; return how many were cached."""
        entries, n = self._entries, 0
        for key in keys:
            if entries.pop(key, None) is not None:
                n += 1
        return n

    def clear(self) -> None:
        self._entries.clear()

    def _evict(self) -> None:
        try:
            if self.policy == "lfu":
                # snapshot first: another thread may change the dict while min() iterates
                victim = min(list(self._entries.items()), key=lambda kv: kv[1][2])[0]
                del self._entries[victim]
            else:  # lru keeps recency order, fifo insertion order: both evict the first
                self._entries.popitem(last=False)
        except (KeyError, ValueError, RuntimeError):  # emptied/changed by another thread
            return
        self.evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    def info(self) -> dict[str, Any]:
        """``size``, ``ttl``, ``max_size``, ``eviction_policy``, hit/miss/eviction counts."""
        total = self.hits + self.misses
        return {
            "size": len(self._entries),
            "ttl": self.ttl,
            "max_size": self.max_size,
            "eviction_policy": self.policy,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
            "eviction_count": self.evictions,
        }
