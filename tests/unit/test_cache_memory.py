"""The in-memory cache tier: bounds, expiry, priority-then-LRU eviction and thread safety."""

from __future__ import annotations

import random
import threading
import time

import pytest

from proxyapi.cache.memory import ENTRY_OVERHEAD, MemoryTier, entry_size

FAR = 1_000.0  # an expiry the fake clock never reaches unless a test says so


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tier(max_bytes: int = 1_000_000, max_entries: int = 1000) -> tuple[MemoryTier, FakeClock]:
    clock = FakeClock()
    return MemoryTier(max_bytes, max_entries, clock=clock), clock


def test_entry_size_counts_key_value_and_overhead() -> None:
    assert entry_size("ké", b"abc") == 3 + 3 + ENTRY_OVERHEAD


@pytest.mark.parametrize(("max_bytes", "max_entries"), [(0, 1), (-1, 1), (1, 0), (1, -5)])
def test_bounds_must_be_positive(max_bytes: int, max_entries: int) -> None:
    with pytest.raises(ValueError):
        MemoryTier(max_bytes, max_entries)


def test_set_get_delete() -> None:
    mem, _ = tier()
    assert mem.get("a") is None
    assert mem.set("a", b"one", FAR)
    assert mem.get("a") == (b"one", FAR)
    assert len(mem) == 1
    assert mem.delete("a")
    assert not mem.delete("a")
    assert mem.get("a") is None
    stats = mem.stats()
    assert (stats.hits, stats.misses, stats.sets, stats.entries, stats.bytes) == (1, 2, 1, 0, 0)
    mem._check_invariants()


def test_clear_by_prefix_and_all() -> None:
    mem, _ = tier()
    for key in ("chat:1", "chat:2", "emb:1", "emb:2", "emb:3"):
        mem.set(key, b"v", FAR)
    assert mem.clear("chat:") == 2
    assert sorted(mem.keys()) == ["emb:1", "emb:2", "emb:3"]
    assert mem.clear("nothing") == 0
    assert mem.clear() == 3
    assert len(mem) == 0
    assert mem.stats().bytes == 0
    mem._check_invariants()


def test_get_of_expired_entry_removes_it() -> None:
    mem, clock = tier()
    mem.set("a", b"v", 10.0)
    clock.advance(9.9)
    assert mem.get("a") == (b"v", 10.0)
    clock.advance(0.1)  # expires_at <= now is expired
    assert mem.get("a") is None
    assert len(mem) == 0
    stats = mem.stats()
    assert (stats.hits, stats.misses, stats.expirations) == (1, 1, 1)
    mem._check_invariants()


def test_purge_expired_drops_only_expired_entries() -> None:
    mem, clock = tier()
    mem.set("soon", b"v", 5.0)
    mem.set("later", b"v", 50.0)
    mem.set("replaced", b"v", 5.0)
    mem.set("replaced", b"v", 60.0)  # its old expiry must not remove the new value
    clock.advance(10)
    assert mem.purge_expired() == 1
    assert sorted(mem.keys()) == ["later", "replaced"]
    assert mem.purge_expired() == 0
    assert mem.stats().expirations == 1
    mem._check_invariants()


def test_already_expired_value_is_refused_and_drops_the_old_value() -> None:
    mem, clock = tier()
    mem.set("a", b"old", FAR)
    clock.advance(10)
    assert not mem.set("a", b"new", 10.0)
    assert mem.get("a") is None
    mem._check_invariants()


def test_lru_within_a_priority_and_get_refreshes_recency() -> None:
    mem, _ = tier(max_entries=3)
    for key in ("a", "b", "c"):
        mem.set(key, b"v", FAR)
    assert mem.get("a") is not None  # now b is the least recently used
    mem.set("d", b"v", FAR)
    assert sorted(mem.keys()) == ["a", "c", "d"]
    mem.set("c", b"v2", FAR)  # a set is a use too: a is now the oldest
    mem.set("e", b"v", FAR)
    assert sorted(mem.keys()) == ["c", "d", "e"]
    assert mem.stats().evictions == 2
    mem._check_invariants()


def test_lower_priority_goes_before_a_more_recently_used_higher_priority() -> None:
    mem, _ = tier(max_entries=3)
    mem.set("important", b"v", FAR, priority=5)
    mem.set("low-new", b"v", FAR, priority=0)
    mem.set("mid", b"v", FAR, priority=1)
    mem.get("low-new")
    mem.set("x", b"v", FAR, priority=5)
    assert sorted(mem.keys()) == ["important", "mid", "x"]
    mem.set("y", b"v", FAR, priority=5)
    assert sorted(mem.keys()) == ["important", "x", "y"]
    mem.set("z", b"v", FAR, priority=5)  # all equal now: plain LRU
    assert sorted(mem.keys()) == ["x", "y", "z"]
    mem._check_invariants()


def test_expired_entries_go_before_any_live_one() -> None:
    mem, clock = tier(max_entries=2)
    mem.set("stale", b"v", 5.0, priority=9)
    mem.set("live", b"v", FAR, priority=0)
    clock.advance(10)
    mem.set("new", b"v", FAR)
    assert sorted(mem.keys()) == ["live", "new"]
    stats = mem.stats()
    assert (stats.expirations, stats.evictions, stats.pressure_events) == (1, 0, 0)


def test_byte_bound_eviction_counts_pressure() -> None:
    size = entry_size("k0", b"x" * 100)
    mem, _ = tier(max_bytes=3 * size, max_entries=100)
    for i in range(3):
        assert mem.set(f"k{i}", b"x" * 100, FAR)
    assert mem.stats().bytes == 3 * size
    assert mem.set("k3", b"x" * 100, FAR)
    assert sorted(mem.keys()) == ["k1", "k2", "k3"]
    big = b"x" * (2 * size - entry_size("kb", b""))  # needs two slots: two evictions, one event
    assert mem.set("kb", big, FAR)
    assert sorted(mem.keys()) == ["k3", "kb"]
    stats = mem.stats()
    assert (stats.evictions, stats.pressure_events) == (3, 2)
    assert stats.bytes == 3 * size
    mem._check_invariants()


def test_count_bound_eviction_is_not_pressure() -> None:
    mem, _ = tier(max_bytes=1_000_000, max_entries=2)
    for key in ("a", "b", "c", "d"):
        mem.set(key, b"v", FAR)
    stats = mem.stats()
    assert (stats.evictions, stats.pressure_events, stats.entries) == (2, 0, 2)
    mem._check_invariants()


def test_replacing_a_key_updates_bytes_priority_and_expiry() -> None:
    mem, _ = tier(max_entries=2)
    mem.set("a", b"short", 10.0, priority=0)
    mem.set("a", b"a much longer value", 20.0, priority=3)
    assert mem.stats().bytes == entry_size("a", b"a much longer value")
    assert mem.get("a") == (b"a much longer value", 20.0)
    mem.set("a", b"", 30.0, priority=3)
    assert mem.stats().bytes == entry_size("a", b"")
    assert len(mem) == 1
    # Replacing needs no room: a full tier keeps its other entry.
    mem.set("b", b"v", FAR, priority=0)
    mem.set("a", b"again", FAR, priority=3)
    assert sorted(mem.keys()) == ["a", "b"]
    assert mem.stats().evictions == 0
    mem.set("c", b"v", FAR, priority=0)  # a now outranks b
    assert sorted(mem.keys()) == ["a", "c"]
    mem._check_invariants()


def test_entry_larger_than_max_bytes_is_refused_without_evicting() -> None:
    mem, _ = tier(max_bytes=500, max_entries=10)
    mem.set("a", b"v", FAR)
    mem.set("b", b"v", FAR)
    assert not mem.set("huge", b"x" * 500, FAR)
    assert sorted(mem.keys()) == ["a", "b"]
    stats = mem.stats()
    assert (stats.evictions, stats.pressure_events, stats.sets) == (0, 0, 2)
    # The exact bound fits.
    assert mem.set("fits", b"x" * (500 - entry_size("fits", b"")), FAR)
    assert mem.keys() == ["fits"]
    mem._check_invariants()


def test_refused_replacement_drops_the_old_value() -> None:
    mem, _ = tier(max_bytes=500, max_entries=10)
    mem.set("a", b"old", FAR)
    assert not mem.set("a", b"x" * 500, FAR)
    assert mem.get("a") is None
    mem._check_invariants()


def test_sample_returns_distinct_live_keys() -> None:
    mem, clock = tier()
    for i in range(20):
        mem.set(f"live{i}", b"v", FAR)
    for i in range(5):
        mem.set(f"dead{i}", b"v", 1.0)
    clock.advance(2)
    rng = random.Random(7)
    picked = mem.sample(8, rng)
    assert len(picked) == 8
    assert len(set(picked)) == 8
    assert all(key.startswith("live") for key in picked)
    assert sorted(mem.sample(100, rng)) == sorted(f"live{i}" for i in range(20))
    assert mem.sample(0) == []
    assert len(mem.sample(3)) == 3


def test_stats_are_copies() -> None:
    mem, _ = tier()
    before = mem.stats()
    before.hits = 99
    mem.set("a", b"v", FAR)
    after = mem.stats()
    assert after.hits == 0
    assert (before.sets, after.sets) == (0, 1)
    assert after is not mem.stats()


def test_many_threads_keep_the_invariants() -> None:
    mem = MemoryTier(max_bytes=20_000, max_entries=64)
    stop = time.monotonic() + 0.5
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < stop:
                key = f"k{rng.randrange(200)}"
                op = rng.random()
                if op < 0.5:
                    value = b"x" * rng.randrange(0, 600)
                    ttl = rng.choice((0.001, 0.01, 10.0))
                    mem.set(key, value, time.monotonic() + ttl, priority=rng.randrange(3))
                elif op < 0.85:
                    mem.get(key)
                elif op < 0.95:
                    mem.delete(key)
                elif op < 0.97:
                    mem.sample(5, rng)
                elif op < 0.99:
                    mem.purge_expired()
                else:
                    mem.clear(f"k{rng.randrange(10)}")
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    mem._check_invariants()
    stats = mem.stats()
    assert stats.entries <= 64
    assert stats.bytes <= 20_000
    assert stats.sets > 0
    assert stats.evictions > 0
    assert stats.pressure_events > 0
