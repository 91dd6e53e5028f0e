"""VariableCache: TTL with an injected clock, LRU / LFU / FIFO eviction order, statistics."""

from __future__ import annotations

import pytest

from dspex_notebook._cache import MISS, POLICIES, VariableCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(policy="lru", ttl=10.0, max_size=3):
    clock = Clock()
    return VariableCache(ttl=ttl, max_size=max_size, policy=policy, clock=clock), clock


def test_ttl_expiry_with_injected_clock():
    cache, clock = make(ttl=10.0)
    cache.put("a", 1)
    clock.now += 9.999
    assert cache.get("a") == 1
    clock.now += 0.002  # past put-time + ttl
    assert cache.get("a") is MISS
    assert len(cache) == 0  # an expired entry is dropped when seen
    info = cache.info()
    assert (info["hits"], info["misses"]) == (1, 1)


def test_put_refreshes_the_ttl():
    cache, clock = make(ttl=10.0)
    cache.put("a", 1)
    clock.now += 8
    cache.put("a", 2)
    clock.now += 8
    assert cache.get("a") == 2  # 16 s after the first put, 8 s after the second


def test_ttl_zero_disables_and_clears():
    cache, _ = make(ttl=10.0)
    cache.put("a", 1)
    cache.configure(ttl=0)
    assert len(cache) == 0
    cache.put("b", 2)
    assert cache.get("b") is MISS and len(cache) == 0
    cache.configure(ttl=5)
    cache.put("b", 2)
    assert cache.get("b") == 2


def test_cached_none_and_falsy_values_are_hits():
    cache, _ = make()
    for key, value in (("n", None), ("z", 0), ("f", False), ("e", "")):
        cache.put(key, value)
        assert cache.get(key) == value and cache.get(key) is not MISS


def test_lru_evicts_least_recently_used():
    cache, _ = make("lru", max_size=3)
    for k in "abc":
        cache.put(k, k)
    assert cache.get("a") == "a"  # a is now the most recent; b the least
    cache.put("d", "d")
    assert cache.get("b") is MISS
    assert [cache.get(k) for k in "acd"] == ["a", "c", "d"]
    cache.put("c", "c2")  # an update counts as a use
    cache.put("e", "e")  # evicts a (order now: a, d, c)
    assert cache.get("a") is MISS
    assert cache.get("c") == "c2" and cache.get("d") == "d" and cache.get("e") == "e"
    assert cache.info()["eviction_count"] == 2


def test_fifo_evicts_oldest_insert_regardless_of_use():
    cache, _ = make("fifo", max_size=3)
    for k in "abc":
        cache.put(k, k)
    for _ in range(5):
        cache.get("a")
    cache.put("a", "a2")  # an update does not make it younger
    cache.put("d", "d")
    assert cache.get("a") is MISS
    assert [cache.get(k) for k in "bcd"] == ["b", "c", "d"]
    cache.put("e", "e")
    assert cache.get("b") is MISS


def test_lfu_evicts_least_frequently_used():
    cache, _ = make("lfu", max_size=3)
    for k in "abc":
        cache.put(k, k)
    for k, n in (("a", 3), ("b", 1), ("c", 2)):
        for _ in range(n):
            cache.get(k)
    cache.put("d", "d")  # b has the fewest uses
    assert cache.get("b") is MISS
    assert cache.get("a") == "a" and cache.get("c") == "c"
    cache.put("e", "e")  # d was never read: it goes
    assert cache.get("d") is MISS
    assert cache.get("e") == "e"


@pytest.mark.parametrize("policy", POLICIES)
def test_size_never_exceeds_max_size(policy):
    cache, clock = make(policy, max_size=5)
    for i in range(200):
        cache.put(f"k{i % 37}", i)
        cache.get(f"k{(i * 7) % 37}")
        clock.now += 0.01
        assert len(cache) <= 5
    assert cache.info()["eviction_count"] > 0


def test_shrinking_max_size_evicts_now():
    cache, _ = make("fifo", max_size=5)
    for k in "abcde":
        cache.put(k, k)
    cache.configure(max_size=2)
    assert len(cache) == 2
    assert cache.get("d") == "d" and cache.get("e") == "e"
    assert cache.info()["eviction_count"] == 3


def test_invalidate_and_clear():
    cache, _ = make()
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.invalidate("a", "zz") == 1
    assert cache.get("a") is MISS and cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0


def test_stats():
    cache, _ = make(max_size=10)
    assert cache.info()["hit_rate"] == 0.0  # no lookups yet: no division by zero
    cache.put("a", 1)
    for _ in range(3):
        cache.get("a")
    cache.get("b")
    info = cache.info()
    assert info == {"size": 1, "ttl": 10.0, "max_size": 10, "eviction_policy": "lru",
                    "hits": 3, "misses": 1, "hit_rate": 0.75, "eviction_count": 0,
                    "coherent": False}


@pytest.mark.parametrize("bad", [{"ttl": -1}, {"max_size": 0}, {"policy": "mru"}, {"policy": "LRU"}])
def test_bad_configuration(bad):
    cache, _ = make()
    with pytest.raises(ValueError):
        cache.configure(**bad)
    with pytest.raises(ValueError):
        VariableCache(**bad)
    assert cache.info()["eviction_policy"] == "lru" and cache.ttl == 10.0  # unchanged


def test_switching_policy_keeps_entries():
    cache, _ = make("lru", max_size=3)
    for k in "abc":
        cache.put(k, k)
    cache.configure(policy="fifo")
    cache.get("a")
    cache.put("d", "d")
    assert cache.get("a") is MISS  # fifo from now on: the oldest insert goes
    assert cache.get("b") == "b"
