"""The client's variable cache: TTL plus LRU/LFU/FIFO eviction, revisions, consistent batches.

I/O-free and synchronous on purpose: a hit is a dict lookup plus bookkeeping (well under a
microsecond) and never touches the event loop, so ``await session.get_variable(x)`` on a hit
costs about as much as a method call. The clock is injectable for tests.

Coherence (docs/watch.md): entries are keyed by variable name and remember two revisions,
``mod`` (the write that produced the value) and ``read`` (a revision at which the value was
known to be current). While the session's watch hub is connected and caught up it sets
:attr:`VariableCache.coherent_revision` and updates entries from events, so entries are exact to
within one event delivery and are served regardless of TTL; when the stream drops it is set
back to -1 and entries are served only within their TTL. :meth:`put` never installs a value
older than the newest write seen for that name (:meth:`note_revision`), so a read racing an
invalidation cannot bring back an older value. :meth:`get_consistent` serves a bulk read only
when every entry was current at one common revision (the "valid at one revision" rule), and
the hub applies each revision under a sequence counter (:meth:`begin` / :meth:`end`), so a
reader on another thread never mixes two revisions.

Lists and dicts are copied on the way in and out, so a caller mutating a value it got cannot
change what the next reader sees (arrays are stored read-only instead). In a notebook the IO
thread writes while the kernel thread reads: every operation is a single GIL-atomic dict step or
tolerates the entry vanishing in between.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger("dspex_notebook.cache")

MISS = object()  #: returned by :meth:`VariableCache.get` when there is no fresh entry
_MUTABLE = (list, dict)
POLICIES = ("lru", "lfu", "fifo")
# entry layout (a list: cheaper than an object on the hit path)
_VALUE, _EXPIRES, _USES, _MOD, _READ = range(5)


def _copy_json(value: Any) -> Any:
    """Copy a JSON-shaped value (lists and dicts of scalars) so callers cannot edit the cache."""
    if type(value) is list:
        return [_copy_json(v) for v in value]
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    return value


class VariableCache:
    """``name -> value`` with time-to-live, bounded size, revisions and invalidation callbacks.

    Parameters:
        ttl: seconds an entry stays fresh when not kept coherent by a watch; 0 disables caching.
        max_size: entries kept before evicting.
        policy: ``"lru"`` (least recently used), ``"lfu"`` (least frequently used) or
            ``"fifo"`` (oldest insert).
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(self, ttl: float = 1.0, max_size: int = 1000, policy: str = "lru",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, list[Any]] = OrderedDict()
        self._clock = clock
        self.hits = self.misses = self.evictions = 0
        # per-key counts: hits live in each entry (entry[_USES], also LFU's count) and are
        # folded into _retired_hits when the entry goes, so a hit costs no extra dict update
        self._retired_hits: Counter[str] = Counter()
        self._key_misses: Counter[str] = Counter()
        self.ttl, self.max_size, self.policy = 1.0, 1000, "lru"
        self._lru = True
        #: revision up to which the watch hub has applied every event, or -1 (not coherent)
        self.coherent_revision = -1
        self._seq = 0  # odd while the hub applies a revision (see begin/end)
        #: replies read before this revision are not installed (raise_read_floor)
        self.read_floor = 0
        self._newest: dict[str, int] = {}  # name -> newest write revision seen
        self._subs: dict[str, tuple[str, Callable[[str, str], Any]]] = {}
        self._sub_ids = itertools.count(1)
        #: maps an identifier to the key entries are stored under (the session sets it to map
        #: variable ids to names, so subscriptions by id work)
        self.key_of: Callable[[str], str] = lambda ident: ident
        self.configure(ttl, max_size, policy)

    def configure(self, ttl: float | None = None, max_size: int | None = None,
                  policy: str | None = None) -> None:
        """Change settings; shrinking ``max_size`` evicts immediately."""
        if ttl is not None:
            if ttl < 0:
                raise ValueError(f"cache ttl must be >= 0 seconds, got {ttl!r}")
            self.ttl = float(ttl)
            if ttl == 0:
                self._drop_all()
        if max_size is not None:
            if max_size < 1:
                raise ValueError(f"cache max_size must be >= 1, got {max_size!r}")
            self.max_size = int(max_size)
        if policy is not None:
            if policy not in POLICIES:
                raise ValueError(f"eviction policy must be one of {POLICIES}, got {policy!r}")
            self.policy = policy
            self._lru = policy == "lru"
        while len(self._entries) > self.max_size:
            self._evict()

    # ------------------------------------------------------------------------------------------
    # reads

    def get(self, key: str) -> Any:
        """The fresh value for ``key``, or :data:`MISS`."""
        entry = self._entries.get(key)
        if entry is None or (self.coherent_revision < 0 and entry[_EXPIRES] < self._clock()):
            return self._miss(key, entry)
        self.hits += 1
        entry[_USES] += 1
        if self._lru:
            try:
                self._entries.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile (notebook IO thread)
                pass
        value = entry[_VALUE]
        if type(value) in _MUTABLE:
            return _copy_json(value)
        return value

    def _miss(self, key: str, entry: list[Any] | None) -> Any:
        self.misses += 1
        self._key_misses[key] += 1
        if entry is not None:
            self._drop(key)
        return MISS

    def key_hits(self, key: str) -> int:
        """Hits of ``key`` so far (also while it was evicted in between)."""
        entry = self._entries.get(key)
        return self._retired_hits[key] + (entry[_USES] if entry is not None else 0)

    def key_misses(self, key: str) -> int:
        return self._key_misses[key]

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        if entry[_USES]:
            self._retired_hits[key] += entry[_USES]
        return True

    def _drop_all(self) -> list[str]:
        keys = list(self._entries)
        for key in keys:
            self._drop(key)
        return keys

    def get_consistent(self, keys: Iterable[str]) -> dict[str, Any] | None:
        """All ``keys`` from the cache if every entry is fresh and all were current at one
        common revision, else None (the caller fetches them together). Counts hits only when
        served."""
        seq = self._seq
        if seq & 1:
            return None  # the hub is applying a revision right now
        now = self._clock()
        coherent = self.coherent_revision
        out: dict[str, Any] = {}
        newest_mod, oldest_read = 0, None
        entries = self._entries
        for key in keys:
            entry = entries.get(key)
            if entry is None or (entry[_EXPIRES] < now and coherent < 0):
                return None
            out[key] = entry[_VALUE]
            if entry[_MOD] > newest_mod:
                newest_mod = entry[_MOD]
            read = entry[_READ] if entry[_READ] > coherent else coherent
            if oldest_read is None or read < oldest_read:
                oldest_read = read
        if oldest_read is not None and newest_mod > oldest_read:
            return None  # some value was written after another was last known current
        if self._seq != seq:
            return None
        self.hits += len(out)
        for key, value in out.items():
            entry = entries.get(key)
            if entry is not None:
                entry[_USES] += 1
            if type(value) in _MUTABLE:
                out[key] = _copy_json(value)
        return out

    def count_misses(self, keys: Iterable[str]) -> None:
        """Count ``keys`` as missed (a bulk read that had to go to the server)."""
        for key in keys:
            self.misses += 1
            self._key_misses[key] += 1

    def revision_of(self, key: str) -> int | None:
        """The write revision of the cached value (None if not cached)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[_MOD]

    # ------------------------------------------------------------------------------------------
    # writes

    def note_revision(self, key: str, revision: int) -> None:
        """A write of ``key`` at ``revision`` happened: older values may not be installed."""
        if revision > self._newest.get(key, -1):
            self._newest[key] = revision

    def put(self, key: str, value: Any, mod_revision: int = 0, read_revision: int = 0) -> bool:
        """Cache ``value`` (written at ``mod_revision``, current at ``read_revision``) unless a
        newer write of ``key`` is known; return whether it was installed."""
        if self.ttl <= 0:
            return False
        read_revision = max(read_revision, mod_revision)
        if mod_revision < self._newest.get(key, -1) or read_revision < self.read_floor:
            self._drop(key)  # whatever is there is not newer than what we know
            return False
        self.note_revision(key, mod_revision)
        if type(value) in _MUTABLE:
            value = _copy_json(value)
        entries = self._entries
        entry = entries.get(key)
        expires = self._clock() + self.ttl
        if entry is not None:
            entry[_VALUE], entry[_EXPIRES], entry[_MOD], entry[_READ] = (
                value, expires, mod_revision, read_revision)
            if self.policy == "lru":
                try:
                    entries.move_to_end(key)
                except KeyError:  # invalidated by another thread meanwhile
                    entries[key] = entry
            return True
        if len(entries) >= self.max_size:
            self._evict()
        entries[key] = [value, expires, 0, mod_revision, read_revision]
        return True

    def update(self, key: str, value: Any, revision: int) -> bool:
        """Apply a watched write: refresh the entry if ``key`` is cached (the hub calls this
        between :meth:`begin` and :meth:`end`)."""
        self.note_revision(key, revision)
        entry = self._entries.get(key)
        if entry is None:
            return False
        if revision < entry[_MOD]:
            return False
        entry[_VALUE] = _copy_json(value) if type(value) in _MUTABLE else value
        entry[_MOD] = entry[_READ] = revision
        entry[_EXPIRES] = self._clock() + self.ttl
        return True

    def begin(self) -> None:
        """Start applying one revision (readers of :meth:`get_consistent` back off)."""
        self._seq += 1

    def end(self, revision: int | None = None) -> None:
        """Done applying; with ``revision``, every event up to it has been applied."""
        if revision is not None and self.coherent_revision >= 0:
            self.coherent_revision = max(self.coherent_revision, revision)
        self._seq += 1

    def raise_read_floor(self, revision: int) -> None:
        """Forget what was read before ``revision`` and refuse such replies from now on: the
        hub joined a shared watch stream at ``revision`` and did not see the events before."""
        if revision > self.read_floor:
            self.read_floor = revision
            stale = [k for k, e in self._entries.items() if e[_READ] < revision]
            for key in stale:
                self._drop(key)

    def oldest_read_revision(self) -> int:
        """The lowest store revision an entry is known to be current at (0: no entry knows).

        A watch that starts after values were cached replays from here, so that a write
        committed between a read and the stream's start still reaches the entry."""
        reads = [e[_READ] for e in self._entries.values() if e[_READ] > 0]
        return min(reads) if reads else 0

    def invalidate(self, *keys: str, reason: str = "invalidated") -> int:
        """Drop ``keys``; return how many were cached. Invalidation subscribers are told."""
        n = 0
        for key in keys:
            if self._drop(key):
                n += 1
            if self._subs:
                self._notify(key, reason)
        return n

    async def invalidate_pattern(self, pattern: str, reason: str = "") -> int:
        """Invalidate every cached name matching the regular expression ``pattern`` (searched,
        as ``re.search`` would, but by a linear-time engine); return how many."""
        from ._patterns import regex_matcher

        matcher = regex_matcher(pattern, "invalidate_pattern")
        keys = [k for k in list(self._entries) if matcher(k)]
        return self.invalidate(*keys, reason=reason or f"pattern {pattern!r}")

    def clear(self, reason: str = "cleared") -> None:
        """Drop every entry and forget known revisions (e.g. the server's store changed)."""
        keys = self._drop_all()
        self._newest.clear()
        self.read_floor = 0
        if self._subs:
            for key in keys:
                self._notify(key, reason)

    # ------------------------------------------------------------------------------------------
    # the spec's VariableCache extras

    async def get_batch(self, var_ids: list[str],
                        fetch_missing: Callable[[list[str]], Awaitable[dict[str, Any]]] | None = None,
                        ) -> dict[str, Any]:
        """Cached values of ``var_ids``; the others from ``await fetch_missing(missing)``
        (which returns ``{key: value}``; those are cached too). Without ``fetch_missing`` the
        result holds only what was cached."""
        out: dict[str, Any] = {}
        missing: list[str] = []
        for key in var_ids:
            value = self.get(key)
            if value is MISS:
                missing.append(key)
            else:
                out[key] = value
        if missing and fetch_missing is not None:
            # the newest write of each key seen before the fetch: the fetched value is at least
            # that new, and put() refuses it if a newer write is seen while fetching
            seen = {key: self._newest.get(key, 0) for key in missing}
            fetched = await fetch_missing(missing)
            for key, value in fetched.items():
                out[key] = value
                if key in seen:  # cached too, as promised above
                    self.put(key, value, seen[key], seen[key])
        return {k: out[k] for k in var_ids if k in out}

    def subscribe_invalidation(self, var_id: str, callback: Callable[[str, str], Any]) -> str:
        """Call ``callback(var_id, reason)`` (a function or coroutine function) whenever
        ``var_id``'s entry is invalidated; return the subscription id."""
        sub_id = f"inv-{next(self._sub_ids)}"
        self._subs[sub_id] = (var_id, callback)
        return sub_id

    def unsubscribe_invalidation(self, subscription_id: str) -> bool:
        return self._subs.pop(subscription_id, None) is not None

    def _notify(self, key: str, reason: str) -> None:
        key_of = self.key_of
        for var_id, callback in list(self._subs.values()):
            if var_id != key and key_of(var_id) != key:  # subscribed by id, keyed by name
                continue
            try:
                result = callback(key, reason)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    task.add_done_callback(_log_failure)
            except Exception:  # a subscriber's bug must not break the cache
                log.exception("invalidation callback for %r failed", key)

    # ------------------------------------------------------------------------------------------

    def _evict(self) -> None:
        try:
            if self.policy == "lfu":
                # snapshot first: another thread may change the dict while min() iterates
                victim = min(list(self._entries.items()), key=lambda kv: kv[1][_USES])[0]
            else:  # lru keeps recency order, fifo insertion order: both evict the first
                victim = next(iter(self._entries))
            if not self._drop(victim):
                return
        except (KeyError, ValueError, RuntimeError):  # emptied/changed by another thread
            return
        self.evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def info(self) -> dict[str, Any]:
        """``size``, ``ttl``, ``max_size``, ``eviction_policy``, hit/miss/eviction counts and
        ``coherent`` (kept exact by a live watch)."""
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
            "coherent": self.coherent_revision >= 0,
        }


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("invalidation callback failed", exc_info=task.exception())
