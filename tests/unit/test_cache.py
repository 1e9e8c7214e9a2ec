"""The cache store, keys and rules, single flight and warming: no app, no socket."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from cachelib import FileSystemCache, SimpleCache
from werkzeug.datastructures import RequestCacheControl
from werkzeug.http import parse_cache_control_header

from proxyapi.cache.keys import cache_key, cacheable, is_deterministic
from proxyapi.cache.memory import MemoryTier
from proxyapi.cache.responses import HIT, MISS, REFRESH, ResponseCache
from proxyapi.cache.store import GENERATION_REFRESH, CacheStore
from proxyapi.cache.upkeep import Upkeep
from proxyapi.config import CacheConfig
from proxyapi.deadline import Deadline
from proxyapi.providers.base import Operation, Usage
from proxyapi.upstream import Answer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
TARGETS = [("up", "m")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(
    config: CacheConfig | None = None,
    backend: Any = None,
    clock: Clock | None = None,
    memory: MemoryTier | None = None,
) -> CacheStore:
    return CacheStore(
        backend or SimpleCache(), config or CacheConfig(), "simple", memory, clock or Clock()
    )


# ---------------------------------------------------------------- keys and rules


def test_key_ignores_parameter_order_and_framing() -> None:
    a = cache_key(Operation.CHAT, CHAT, TARGETS, "alice")
    reordered = dict(reversed(list(CHAT.items())))
    assert cache_key(Operation.CHAT, reordered, TARGETS, "alice") == a
    streamed = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    assert cache_key(Operation.CHAT, streamed, TARGETS, "alice") == a


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.0001},
        {"max_tokens": 5},
        {"some_new_parameter": True},
        {"messages": [{"role": "user", "content": "hi "}]},
        {"model": "m2"},
    ],
)
def test_any_parameter_change_changes_the_key(change: dict[str, Any]) -> None:
    assert cache_key(Operation.CHAT, {**CHAT, **change}, TARGETS, "alice") != cache_key(
        Operation.CHAT, CHAT, TARGETS, "alice"
    )


def test_tenant_route_and_targets_are_part_of_the_key() -> None:
    base = cache_key(Operation.CHAT, CHAT, TARGETS, "alice")
    assert cache_key(Operation.CHAT, CHAT, TARGETS, "bob") != base
    assert cache_key(Operation.COMPLETIONS, CHAT, TARGETS, "alice") != base
    assert cache_key(Operation.CHAT, CHAT, [("other", "m")], "alice") != base


@pytest.mark.parametrize(
    ("op", "body", "deterministic"),
    [
        (Operation.EMBEDDINGS, {"input": "x", "temperature": 1}, True),
        (Operation.CHAT, {"temperature": 0}, True),
        (Operation.CHAT, {"temperature": 0, "n": 1}, True),
        (Operation.CHAT, {"temperature": 0, "n": 2}, False),
        (Operation.CHAT, {"seed": 7}, True),
        (Operation.CHAT, {}, False),
        (Operation.CHAT, {"temperature": 0.7, "seed": 7}, False),
        (Operation.COMPLETIONS, {"temperature": 0.0}, True),
    ],
)
def test_deterministic_rule(op: Operation, body: dict[str, Any], deterministic: bool) -> None:
    assert is_deterministic(op, body) is deterministic
    assert cacheable(op, body, "deterministic") is deterministic
    assert cacheable(op, body, "all") is True
    assert cacheable(op, body, "off") is False


# ---------------------------------------------------------------- the store


def test_store_interface() -> None:
    clock = Clock()
    s = store(clock=clock)
    assert s.get("responses", "a") is None
    assert s.set("responses", "a", {"v": 1})
    assert s.get("responses", "a").value == {"v": 1}  # type: ignore[union-attr]
    assert s.ttl("responses", "a") == 1800
    clock.now += 100
    assert s.ttl("responses", "a") == 1700
    assert s.expire("responses", "a", 10)
    assert s.ttl("responses", "a") == 10
    assert s.set_many("models", {"x": 1, "y": 2}) == 2
    assert set(s.get_many("models", ["x", "y", "z"])) == {"x", "y"}
    assert s.delete_many("models", ["x", "z"]) == 1
    clock.now += 11
    assert s.get("responses", "a") is None  # expired by its own clock
    counts = s.stats()["categories"]
    assert counts["responses"]["hits"] == 1 and counts["responses"]["misses"] == 2
    assert counts["responses"]["expirations"] == 1


def test_clear_one_category_keeps_the_others() -> None:
    s = store()
    s.set("responses", "k", 1)
    s.set("models", "k", 2)
    s.clear("responses")
    assert s.get("responses", "k") is None
    assert s.get("models", "k").value == 2  # type: ignore[union-attr]
    s.clear()
    assert s.get("models", "k") is None
    assert set(s.categories()) == {"responses", "models", "metadata"}


def test_two_workers_share_files_and_see_a_clear(tmp_path: Path) -> None:
    one = store(backend=FileSystemCache(str(tmp_path), threshold=0))
    two = store(backend=FileSystemCache(str(tmp_path), threshold=0))
    one.set("responses", "k", b"answer")
    assert two.get("responses", "k").value == b"answer"  # type: ignore[union-attr]
    one.clear("responses")
    time.sleep(GENERATION_REFRESH + 0.05)  # how long a worker trusts the generation it read
    assert two.get("responses", "k") is None


def test_sweep_removes_expired_files(tmp_path: Path) -> None:
    s = CacheStore(FileSystemCache(str(tmp_path), threshold=0), CacheConfig(), "filesystem")
    s.set("responses", "short", b"x", ttl=1)
    s.set("responses", "long", b"y", ttl=100)
    files_before = s.backend_size()["entries"]
    time.sleep(2.1)
    assert s.cleanup_expired() >= 1
    assert s.backend_size()["entries"] == files_before - 1  # type: ignore[operator]
    assert s.get("responses", "long").value == b"y"  # type: ignore[union-attr]


class Broken(SimpleCache):
    def get(self, key: str) -> Any:
        raise redis.ConnectionError("down")

    def set(self, key: str, value: Any, timeout: Any = None) -> Any:
        raise redis.ConnectionError("down")


def test_backend_errors_fail_open_and_are_counted() -> None:
    s = store(backend=Broken())
    assert s.get("responses", "k") is None
    assert s.set("responses", "k", 1) is False
    assert s.stats()["categories"]["responses"]["errors"] >= 2


def test_smart_ttl_extends_often_read_entries_only() -> None:
    clock = Clock()
    config = CacheConfig(
        ttl={"responses": 100, "models": 100, "metadata": 100},
        min_accesses=3,
        min_hit_rate=0.75,
        max_ttl=350,
    )
    s = store(config, clock=clock)
    s.set("responses", "hot", 1)
    s.set("responses", "cold", 1)
    for _ in range(3):
        assert s.get("responses", "hot") is not None
    assert s.ttl("responses", "hot") == 200  # doubled after 3 hits
    s.get("responses", "cold")
    assert s.ttl("responses", "cold") == 100  # read once: base TTL
    for _ in range(10):
        s.get("responses", "hot")
    assert s.ttl("responses", "hot") == 350  # capped
    assert s.stats()["totals"]["ttl_extensions"] == 2


def test_smart_ttl_needs_a_high_hit_rate() -> None:
    clock = Clock()
    config = CacheConfig(min_accesses=2, min_hit_rate=0.9)
    s = store(config, clock=clock)
    for _ in range(3):
        s.get("responses", "flaky")  # misses
    s.set("responses", "flaky", 1)
    s.get("responses", "flaky")
    s.get("responses", "flaky")
    assert s.stats()["totals"].get("ttl_extensions", 0) == 0  # 2 hits / 5 lookups


class Counting(SimpleCache):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: str) -> Any:
        self.reads += 1
        return super().get(key)


def test_memory_tier_answers_repeated_reads_and_drops_stale_copies() -> None:
    backend = Counting()
    memory = MemoryTier(1_000_000, 100, clock=time.time)
    s = CacheStore(backend, CacheConfig(smart_ttl=False), "simple", memory)
    s.set("responses", "k", b"v1")
    reads = backend.reads
    for _ in range(5):
        assert s.get("responses", "k").value == b"v1"  # type: ignore[union-attr]
    assert backend.reads == reads  # no backend read at all
    # Another worker changes the shared entry: the sampled check finds the stale copy.
    other = CacheStore(backend, CacheConfig(smart_ttl=False), "simple")
    other.set("responses", "k", b"v2")
    assert s.check_consistency(10) == 1
    assert s.get("responses", "k").value == b"v2"  # type: ignore[union-attr]
    totals = s.stats()["totals"]
    assert totals["inconsistencies"] == 1 and totals["consistency_checks"] == 1


# ---------------------------------------------------------------- response caching


def control(header: str) -> RequestCacheControl:
    return parse_cache_control_header(header, cls=RequestCacheControl)


def test_client_controls() -> None:
    rc = ResponseCache(store(), CacheConfig(), atomic_add=False)
    plan = rc.plan(Operation.CHAT, CHAT, "/v1/chat/completions", "alice", TARGETS, control(""))
    assert plan.key and plan.read and plan.write and plan.max_age is None
    no_cache = rc.plan(
        Operation.CHAT, CHAT, "/v1/chat/completions", "a", TARGETS, control("no-cache")
    )
    assert not no_cache.read and no_cache.write
    no_store = rc.plan(
        Operation.CHAT, CHAT, "/v1/chat/completions", "a", TARGETS, control("no-store")
    )
    assert no_store.read and not no_store.write
    assert rc.plan(Operation.CHAT, CHAT, "/p", "a", TARGETS, control("max-age=5")).max_age == 5
    hot = rc.plan(
        Operation.CHAT,
        {**CHAT, "temperature": 1},
        "/v1/chat/completions",
        "a",
        TARGETS,
        control(""),
    )
    assert hot.key is None  # not deterministic: bypass


def test_route_modes() -> None:
    config = CacheConfig(routes={"/v1/chat/completions": "all", "/v1/embeddings": "off"})
    rc = ResponseCache(store(), config, atomic_add=False)
    warm = {**CHAT, "temperature": 1}
    assert rc.plan(Operation.CHAT, warm, "/v1/chat/completions", "a", TARGETS, control("")).key
    assert (
        rc.plan(
            Operation.EMBEDDINGS, {"input": "x"}, "/v1/embeddings", "a", TARGETS, control("")
        ).key
        is None
    )


def test_single_flight_makes_one_call_for_ten_concurrent_requests() -> None:
    rc = ResponseCache(store(), CacheConfig(), atomic_add=False)
    plan = rc.plan(Operation.CHAT, CHAT, "/v1/chat/completions", "alice", TARGETS, control(""))
    calls: list[int] = []

    def fetch() -> Answer:
        calls.append(1)
        time.sleep(0.3)
        return Answer("up", b'{"choices": []}', 1, Usage(1, 2, 3))

    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(rc.serve(plan, fetch, Deadline.after(5)).x_cache)
        )
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(results) == [HIT] * 9 + [MISS]
    hit = rc.serve(plan, fetch, Deadline.after(5))
    assert hit.x_cache == HIT and hit.answer.usage == Usage(1, 2, 3) and hit.answer.attempts == 0


def test_no_cache_refreshes_and_no_store_does_not_store() -> None:
    rc = ResponseCache(store(), CacheConfig(), atomic_add=False)
    calls: list[int] = []

    def fetch() -> Answer:
        calls.append(1)
        return Answer("up", b'{"n": %d}' % len(calls), 1)

    args = (Operation.CHAT, CHAT, "/v1/chat/completions", "alice", TARGETS)
    assert rc.serve(rc.plan(*args, control("no-store")), fetch, Deadline.after(5)).x_cache == MISS
    assert rc.serve(rc.plan(*args, control("")), fetch, Deadline.after(5)).x_cache == MISS
    refreshed = rc.serve(rc.plan(*args, control("no-cache")), fetch, Deadline.after(5))
    assert refreshed.x_cache == REFRESH and refreshed.answer.body == b'{"n": 3}'
    hit = rc.serve(rc.plan(*args, control("")), fetch, Deadline.after(5))
    assert hit.x_cache == HIT and hit.answer.body == b'{"n": 3}'
    assert len(calls) == 3


# ---------------------------------------------------------------- warming


def test_warming_reloads_models_before_they_expire_and_only_hot_metadata() -> None:
    clock = Clock()
    config = CacheConfig(
        ttl={"responses": 100, "models": 100, "metadata": 100}, min_accesses=2, smart_ttl=False
    )
    s = store(config, clock=clock)
    upkeep = Upkeep(s)
    loads: list[str] = []
    upkeep.remember("models", "all", lambda: loads.append("models") or "fresh")
    upkeep.remember("metadata", "cold", lambda: loads.append("cold") or "x")
    upkeep.remember("responses", "never", lambda: loads.append("responses") or "x")
    s.set("models", "all", "old")
    s.set("metadata", "cold", "old")
    assert upkeep.warm() == 0  # plenty of TTL left
    clock.now += 85  # 15% of the TTL left: below warm_before (20%)
    assert upkeep.warm() == 1
    assert loads == ["models"]  # the cold metadata entry and responses are left alone
    assert s.get("models", "all").value == "fresh"  # type: ignore[union-attr]
    assert s.stats()["categories"]["models"]["warmups"] == 1


def test_the_file_cache_is_capped_by_count_oldest_first(tmp_path: Path) -> None:
    import os

    s = CacheStore(
        FileSystemCache(str(tmp_path), threshold=0), CacheConfig(max_files=50), "filesystem"
    )
    for i in range(80):
        s.set("responses", f"k{i}", {"n": i})
        # Date the file just written (the only one with today's mtime) i seconds after 2001.
        for entry in os.scandir(tmp_path):
            if entry.stat().st_mtime > 1_500_000_000:
                os.utime(entry.path, (1_000_000_000 + i, 1_000_000_000 + i))
    assert s.writes_since_sweep == 80
    assert s.cleanup_expired() == 80 - 45
    assert len(os.listdir(tmp_path)) == 45 and s.writes_since_sweep == 0
    assert s.get("responses", "k0") is None and s.get("responses", "k79") is not None


def test_upkeep_remembers_a_bounded_number_of_loaders() -> None:
    from proxyapi.cache.upkeep import MAX_WARMED, Upkeep

    upkeep = Upkeep(store())
    for i in range(MAX_WARMED + 10):
        upkeep.remember("models", f"k{i}", lambda: [])
    assert len(upkeep.loaders) == MAX_WARMED and len(upkeep.reads) == MAX_WARMED
    assert ("models", "k0") not in upkeep.loaders
