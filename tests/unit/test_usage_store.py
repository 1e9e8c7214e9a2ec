"""The usage log: both stores give the same exact answers, across processes and hosts, and
skip what they did not write; the recorder loses nothing to a short store outage."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from proxyapi.usage import (
    UNITS,
    RedisUsageStore,
    SQLiteUsageStore,
    UsageDropped,
    UsageEntry,
    UsageRecorder,
    UsageRow,
    UsageStore,
    UsageWriteError,
)

MIDNIGHT = 1_800_057_600  # a UTC midnight (2027-01-16)
HOUR, DAY = 3600, 86400
RETENTION = 30


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(at: float, key: str = "alice", model: str = "gpt-4o", **kw: Any) -> UsageEntry:
    fields: dict[str, Any] = {"route": "chat", "provider": "openai", "cache_hit": False}
    fields.update(kw)
    return UsageEntry(at=at, key=key, model=model, **fields)


def totals(rows: list[UsageRow]) -> dict[str, int]:
    return {name: sum(getattr(r, name) for r in rows) for name in ("requests", *UNITS)}


@pytest.fixture
def clock() -> Clock:
    return Clock(MIDNIGHT + 12 * HOUR)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: Clock) -> Iterator[SQLiteUsageStore]:
    store = SQLiteUsageStore(tmp_path / "usage.sqlite3", RETENTION, clock=clock)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, clock: Clock) -> UsageStore:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store")  # type: ignore[no-any-return]
    return RedisUsageStore(request.getfixturevalue("redis_client"), "ns", RETENTION, clock=clock)


# --- both stores ------------------------------------------------------------------------


def test_hours_and_days_across_a_utc_midnight(store: UsageStore) -> None:
    store.add(
        [
            entry(MIDNIGHT - 1800, input_tokens=10, output_tokens=1),
            entry(MIDNIGHT - 10, input_tokens=20, output_tokens=2, reasoning_tokens=1),
            entry(MIDNIGHT + 5, input_tokens=30, cache_read_tokens=7),
            entry(MIDNIGHT + HOUR + 1, input_tokens=40, cache_write_tokens=3),
        ]
    )
    store.add([entry(MIDNIGHT + HOUR + 2, cache_write_1h_tokens=5)])  # summed with the last
    by_hour = store.query(MIDNIGHT - DAY, MIDNIGHT + DAY, group="hour")
    assert [(r.start, r.requests, r.input_tokens) for r in by_hour] == [
        (MIDNIGHT - HOUR, 2, 30),
        (MIDNIGHT, 1, 30),
        (MIDNIGHT + HOUR, 2, 40),
    ]
    by_day = store.query(MIDNIGHT - DAY, MIDNIGHT + DAY)
    assert by_day == [
        UsageRow(MIDNIGHT - DAY, "alice", "chat", "openai", "gpt-4o", False, 2, 30, 0, 0, 0, 3, 1),
        UsageRow(MIDNIGHT, "alice", "chat", "openai", "gpt-4o", False, 3, 70, 7, 3, 5, 0, 0),
    ]


def test_filters_keys_and_order(store: UsageStore) -> None:
    at = MIDNIGHT + 60
    store.add(
        [
            entry(at, "bob", input_tokens=1),
            entry(at, "alice", "gpt-4o", provider="openai", input_tokens=2),
            entry(at, "alice", "gpt-4o", provider="azure", input_tokens=4),
            entry(at, "alice", "claude", provider="anthropic", route="messages", input_tokens=8),
            entry(at, "alice", "claude", provider="anthropic", cache_hit=True, input_tokens=16),
            entry(at, "carol", "gpt-4o", route="embeddings", input_tokens=32),
        ]
    )
    everything = store.query(MIDNIGHT, MIDNIGHT + DAY)
    assert [(r.key, r.provider, r.model, r.route, r.cache_hit) for r in everything] == [
        ("alice", "anthropic", "claude", "chat", True),
        ("alice", "anthropic", "claude", "messages", False),
        ("alice", "azure", "gpt-4o", "chat", False),
        ("alice", "openai", "gpt-4o", "chat", False),
        ("bob", "openai", "gpt-4o", "chat", False),
        ("carol", "openai", "gpt-4o", "embeddings", False),
    ]
    assert totals(everything)["input_tokens"] == 63

    def tokens(**kw: Any) -> int:
        return totals(store.query(MIDNIGHT, MIDNIGHT + DAY, **kw))["input_tokens"]

    assert tokens(keys=["alice"]) == 30
    assert tokens(keys={"bob", "carol"}) == 33
    assert tokens(keys=[]) == 0
    assert tokens(keys=["nobody", "not a key!", "{ns:usage}"]) == 0
    assert tokens(model="gpt-4o") == 39
    assert tokens(provider="anthropic") == 24
    assert tokens(keys=["alice"], model="gpt-4o", provider="azure") == 4


def test_a_query_reads_the_hours_that_overlap_it(store: UsageStore) -> None:
    store.add([entry(MIDNIGHT + 10, input_tokens=1), entry(MIDNIGHT + HOUR, input_tokens=2)])

    def tokens(start: float, end: float) -> int:
        return totals(store.query(start, end, group="hour"))["input_tokens"]

    assert tokens(MIDNIGHT, MIDNIGHT + HOUR) == 1  # end is not in [start, end)
    assert tokens(MIDNIGHT + 1800, MIDNIGHT + HOUR) == 1  # its hour overlaps
    assert tokens(MIDNIGHT + 1800, MIDNIGHT + HOUR + 1) == 3
    assert tokens(MIDNIGHT + HOUR, MIDNIGHT + HOUR) == 0
    assert tokens(MIDNIGHT + DAY, MIDNIGHT) == 0
    assert tokens(0, 1e12) == 3  # clipped to what is kept, not a lookup per day since 1970


def test_bad_group_and_malformed_entries_are_refused(store: UsageStore) -> None:
    with pytest.raises(ValueError, match="group"):
        store.query(MIDNIGHT, MIDNIGHT + DAY, group="week")
    for bad in (
        entry(MIDNIGHT, key="a|b"),
        entry(MIDNIGHT, key=""),
        entry(MIDNIGHT, input_tokens=-1),
        entry(MIDNIGHT, output_tokens=1.5),  # type: ignore[arg-type]
        entry(MIDNIGHT, output_tokens=True),  # type: ignore[arg-type]
        entry(float("nan")),
    ):
        with pytest.raises(ValueError, match="usage"):
            store.add([bad])
    assert store.query(MIDNIGHT, MIDNIGHT + DAY) == []


def test_names_with_bars_and_unprintable_or_long_text(store: UsageStore) -> None:
    odd = "acme|v2%7C|%25|"
    store.add(
        [
            entry(MIDNIGHT, model=odd, provider="p|q", route="chat|x", input_tokens=1),
            entry(MIDNIGHT, model="m\x00\n", input_tokens=2),
            entry(MIDNIGHT, model="x" * 1000, input_tokens=4),
        ]
    )
    rows = store.query(MIDNIGHT, MIDNIGHT + DAY)
    assert {(r.model, r.provider, r.route, r.input_tokens) for r in rows} == {
        (odd, "p|q", "chat|x", 1),
        ("m??", "openai", "chat", 2),
        ("x" * 256, "openai", "chat", 4),
    }
    assert [r.input_tokens for r in store.query(MIDNIGHT, MIDNIGHT + DAY, model=odd)] == [1]


def test_retention(store: UsageStore, clock: Clock) -> None:
    now = clock.now
    store.add(
        [
            entry(now - 40 * DAY, input_tokens=1),  # already past retention: not written
            entry(now - 29 * DAY, input_tokens=2),
            entry(now, input_tokens=4),
            entry(now + 2 * DAY, input_tokens=8),  # from a clock far ahead: not written
        ]
    )
    assert totals(store.query(now - 60 * DAY, now + 9 * DAY))["input_tokens"] == 6
    clock.now += 2 * DAY
    assert totals(store.query(now - 60 * DAY, now + 9 * DAY))["input_tokens"] == 4


# --- SQLite -----------------------------------------------------------------------------


def rows_in(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT hour, input_tokens FROM usage ORDER BY hour").fetchall()
    finally:
        conn.close()


def plant(path: Path, *rows: tuple[Any, ...]) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO usage (hour, key, route, provider, model, cache_hit, requests, "
                "input_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        conn.close()


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "usage.sqlite3"
    store = SQLiteUsageStore(path, RETENTION, clock=clock)
    store.add([entry(MIDNIGHT, input_tokens=1)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in tmp_path.glob("usage.sqlite3-*"):
        assert stat.S_IMODE(extra.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    store.close()
    store.close()  # twice is fine
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(OSError):
        SQLiteUsageStore(tmp_path / "link", RETENTION)


def test_sqlite_skips_rows_it_did_not_write(sqlite_store: SQLiteUsageStore) -> None:
    sqlite_store.add([entry(MIDNIGHT, input_tokens=5)])
    h = MIDNIGHT + HOUR
    plant(
        sqlite_store.path,
        (h, "alice", "chat", "openai", "m1", 0, 1, -3),  # negative
        (h, "alice", "chat", "openai", "m2", 0, 1, "lots"),  # text
        (h, "alice", "chat", "openai", "m3", 0, 1, 2.5),  # not whole
        (h, "alice", "chat", "openai", "m4", 0, "x", 1),
        (h, "alice", "chat", "openai", "m5", 2, 1, 1),  # not a cache hit flag
        (h + 1, "alice", "chat", "openai", "m6", 0, 1, 1),  # not an hour
        (h, "al ice", "chat", "openai", "m7", 0, 1, 1),  # not a key name
        (h, "alice", b"chat", "openai", "m8", 0, 1, 1),  # a blob, not text
        (h, "alice", "chat", "openai", "m9", 0, 1, 7),  # sound: counted
    )
    rows = sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY, group="hour")
    assert [(r.start, r.model, r.input_tokens) for r in rows] == [
        (MIDNIGHT, "gpt-4o", 5),
        (h, "m9", 7),
    ]


def test_sqlite_deletes_old_rows_at_most_once_an_hour(
    sqlite_store: SQLiteUsageStore, clock: Clock
) -> None:
    sqlite_store.add([entry(clock.now, input_tokens=1)])  # the first add prunes
    old = int(clock.now - 31 * DAY) // HOUR * HOUR
    plant(sqlite_store.path, (old, "alice", "chat", "openai", "gpt-4o", 0, 1, 100))
    clock.now += 30 * 60
    sqlite_store.add([entry(clock.now, input_tokens=1)])
    assert len(rows_in(sqlite_store.path)) == 2  # kept until the next prune (never read)
    assert totals(sqlite_store.query(0, 1e12))["input_tokens"] == 2
    clock.now += 31 * 60
    sqlite_store.add([])  # a flush with nothing new still prunes when it is due
    assert [tokens for _, tokens in rows_in(sqlite_store.path)] == [2]


# --- Redis ------------------------------------------------------------------------------


def test_redis_layout(redis_client: redis.Redis, clock: Clock) -> None:
    store = RedisUsageStore(redis_client, "ns", RETENTION, clock=clock)
    store.add(
        [
            entry(MIDNIGHT + 2 * HOUR, input_tokens=5, output_tokens=1),
            entry(MIDNIGHT + 3 * HOUR, "bob", "a|b", cache_hit=True),
        ]
    )
    assert sorted(redis_client.keys("*")) == [
        b"{ns:usage:alice}:20270116",
        b"{ns:usage:bob}:20270116",
        b"{ns:usage}:keys:20270116",
    ]
    assert redis_client.hgetall("{ns:usage:alice}:20270116") == {
        b"02|chat|openai|gpt-4o|0|requests": b"1",
        b"02|chat|openai|gpt-4o|0|input_tokens": b"5",
        b"02|chat|openai|gpt-4o|0|output_tokens": b"1",
    }
    assert redis_client.hgetall("{ns:usage:bob}:20270116") == {
        b"03|chat|openai|a%7Cb|1|requests": b"1"
    }
    assert redis_client.smembers("{ns:usage}:keys:20270116") == {b"alice", b"bob"}
    # Expires when the day's last hour is retention_days old (the clock is 12:00 that day).
    expected = 12 * HOUR + RETENTION * DAY
    for name in redis_client.keys("*"):
        assert expected - 5 <= redis_client.ttl(name) <= expected


def test_redis_skips_what_it_did_not_write(redis_client: redis.Redis, clock: Clock) -> None:
    store = RedisUsageStore(redis_client, "ns", RETENTION, clock=clock)
    store.add([entry(MIDNIGHT, input_tokens=5)])
    day = "{ns:usage:alice}:20270116"
    redis_client.hset(
        day,
        mapping={
            "01|chat|openai|m|0|input_tokens": "-3",
            "02|chat|openai|m|0|input_tokens": "12abc",
            "03|chat|openai|m|0|input_tokens": " 7",
            "04|chat|openai|m|0|input_tokens": "1_000",
            "05|chat|openai|m|0|input_tokens": "²",
            "06|chat|openai|m|0|input_tokens": "9" * 25,
            "24|chat|openai|m|0|input_tokens": "1",
            "7|chat|openai|m|0|input_tokens": "1",
            "08|chat|openai|m|2|input_tokens": "1",
            "09|chat|openai|m|0|dollars": "1",
            "10|chat|openai|m|0": "1",
            "11|chat|openai|m|0|x|input_tokens": "1",
            b"12|chat|openai|\xff|0|input_tokens": "1",
            "13|chat|openai|m|0|input_tokens": "4",  # sound: counted
        },
    )
    redis_client.set("{ns:usage:bob}:20270116", "not a hash")
    redis_client.sadd("{ns:usage}:keys:20270116", "bob", "no such key!", b"\xff")
    rows = store.query(MIDNIGHT, MIDNIGHT + DAY, group="hour")
    assert [(r.start, r.key, r.model, r.input_tokens) for r in rows] == [
        (MIDNIGHT, "alice", "gpt-4o", 5),
        (MIDNIGHT + 13 * HOUR, "alice", "m", 4),
    ]
    assert totals(store.query(MIDNIGHT, MIDNIGHT + DAY, keys=["bob"]))["requests"] == 0


def test_redis_raises_only_what_it_refused(redis_client: redis.Redis, clock: Clock) -> None:
    store = RedisUsageStore(redis_client, "ns", RETENTION, clock=clock)
    redis_client.set("{ns:usage:bob}:20270116", "in the way")
    batch = [entry(MIDNIGHT, "alice", input_tokens=3), entry(MIDNIGHT, "bob", input_tokens=4)]
    with pytest.raises(UsageWriteError) as caught:
        store.add(batch)
    assert [(e.key, e.requests, e.input_tokens) for e in caught.value.unwritten] == [("bob", 1, 4)]
    redis_client.delete("{ns:usage:bob}:20270116")
    store.add(caught.value.unwritten)
    rows = store.query(MIDNIGHT, MIDNIGHT + DAY)
    assert [(r.key, r.requests, r.input_tokens) for r in rows] == [("alice", 1, 3), ("bob", 1, 4)]


def test_redis_with_a_decoding_client(redis_url: str, clock: Clock) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisUsageStore(client, "ns", RETENTION, clock=clock)
        store.add([entry(MIDNIGHT, model="a|b", input_tokens=3)])
        rows = store.query(MIDNIGHT, MIDNIGHT + DAY)
        assert [(r.model, r.input_tokens) for r in rows] == [("a|b", 3)]
    finally:
        client.close()


# --- the recorder -----------------------------------------------------------------------


class Flaky:
    """A store that fails while ``down``, and counts the batches it was given."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store
        self.down = False
        self.batches = 0

    def add(self, entries: Any) -> None:
        self.batches += 1
        if self.down:
            raise ConnectionError("the store is down")
        self.store.add(entries)

    def query(self, *args: Any, **kwargs: Any) -> list[UsageRow]:
        return self.store.query(*args, **kwargs)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def recorder_for() -> Iterator[Callable[..., UsageRecorder]]:
    made: list[UsageRecorder] = []

    def make(store: UsageStore, **kw: Any) -> UsageRecorder:
        recorder = UsageRecorder(store, **{"flush_interval": 3600, **kw})
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


def test_a_failed_flush_is_kept_reported_and_written_later(
    sqlite_store: SQLiteUsageStore, recorder_for: Callable[..., UsageRecorder]
) -> None:
    flaky = Flaky(sqlite_store)
    errors: list[Exception] = []
    recorder = recorder_for(flaky, on_error=errors.append)
    flaky.down = True
    for _ in range(3):
        recorder.record(entry(MIDNIGHT, input_tokens=10))
    recorder.flush()
    recorder.record(entry(MIDNIGHT, input_tokens=1))
    recorder.record(entry(MIDNIGHT + HOUR, "bob", input_tokens=2))
    recorder.flush()
    assert [str(e) for e in errors] == ["the store is down"] * 2
    assert sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY) == []
    flaky.down = False
    recorder.flush()
    rows = sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY)
    assert [(r.key, r.requests, r.input_tokens) for r in rows] == [("alice", 4, 31), ("bob", 1, 2)]
    recorder.flush()  # nothing left: nothing written twice
    assert flaky.batches == 3
    assert totals(sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY))["input_tokens"] == 33


def test_only_what_the_store_refused_is_kept(
    redis_client: redis.Redis, clock: Clock, recorder_for: Callable[..., UsageRecorder]
) -> None:
    errors: list[Exception] = []
    store = RedisUsageStore(redis_client, "ns", RETENTION, clock=clock)
    recorder = recorder_for(store, on_error=errors.append)
    redis_client.set("{ns:usage:bob}:20270116", "in the way")
    recorder.record(entry(MIDNIGHT, "alice", input_tokens=3))
    recorder.record(entry(MIDNIGHT, "bob", input_tokens=4))
    recorder.flush()
    assert len(errors) == 1 and isinstance(errors[0], UsageWriteError)
    redis_client.delete("{ns:usage:bob}:20270116")
    recorder.flush()
    rows = store.query(MIDNIGHT, MIDNIGHT + DAY)
    assert [(r.key, r.requests, r.input_tokens) for r in rows] == [("alice", 1, 3), ("bob", 1, 4)]


def test_the_backlog_is_bounded(
    sqlite_store: SQLiteUsageStore, recorder_for: Callable[..., UsageRecorder]
) -> None:
    flaky = Flaky(sqlite_store)
    errors: list[Exception] = []
    recorder = recorder_for(flaky, on_error=errors.append, max_pending=3)
    flaky.down = True
    for i in range(5):
        recorder.record(entry(MIDNIGHT + i * HOUR, input_tokens=1))
    recorder.flush()
    assert [type(e) for e in errors] == [ConnectionError, UsageDropped]
    assert "2 usage combinations dropped" in str(errors[1])
    flaky.down = False
    recorder.flush()
    rows = sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY, group="hour")
    assert [r.start for r in rows] == [MIDNIGHT + i * HOUR for i in (2, 3, 4)]  # the newest


def test_malformed_entries_are_reported_not_raised(
    sqlite_store: SQLiteUsageStore, recorder_for: Callable[..., UsageRecorder]
) -> None:
    errors: list[Exception] = []
    recorder = recorder_for(sqlite_store, on_error=errors.append)
    recorder.record(entry(MIDNIGHT, key="bad key"))
    recorder.record(entry(MIDNIGHT, input_tokens=-5))
    recorder.record(entry(MIDNIGHT, input_tokens=5))
    recorder.close()
    assert len(errors) == 2 and all(isinstance(e, ValueError) for e in errors)
    assert totals(sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY))["input_tokens"] == 5


def test_the_thread_flushes_and_close_flushes(
    sqlite_store: SQLiteUsageStore, recorder_for: Callable[..., UsageRecorder]
) -> None:
    recorder = recorder_for(sqlite_store, flush_interval=0.01)
    recorder.record(entry(MIDNIGHT, input_tokens=1))
    deadline = time.monotonic() + 5
    while not sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert totals(sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY))["input_tokens"] == 1
    slow = recorder_for(sqlite_store)  # its thread would wait an hour
    slow.record(entry(MIDNIGHT, input_tokens=2))
    slow.close()
    assert totals(sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY))["input_tokens"] == 3


def test_flush_waits_for_a_flush_under_way(
    sqlite_store: SQLiteUsageStore, recorder_for: Callable[..., UsageRecorder]
) -> None:
    """The query route flushes before it reads: it must see what was recorded before."""
    entered, release = threading.Event(), threading.Event()

    class Slow(Flaky):
        def add(self, entries: Any) -> None:
            entered.set()
            release.wait(5)
            super().add(entries)

    recorder = recorder_for(Slow(sqlite_store))
    recorder.record(entry(MIDNIGHT, input_tokens=1))
    background = threading.Thread(target=recorder.flush)
    background.start()
    assert entered.wait(5)
    recorder.record(entry(MIDNIGHT, input_tokens=2))  # recording is not held up meanwhile
    threading.Timer(0.05, release.set).start()
    recorder.flush()  # waits for the first, then writes the second
    background.join(5)
    assert totals(sqlite_store.query(MIDNIGHT, MIDNIGHT + DAY))["input_tokens"] == 3


def test_recording_sums_in_memory_per_combination(
    recorder_for: Callable[..., UsageRecorder],
) -> None:
    class Nowhere:
        def add(self, entries: Any) -> None: ...
        def query(self, *args: Any, **kwargs: Any) -> list[UsageRow]:
            return []

        def close(self) -> None: ...

    recorder = recorder_for(Nowhere())
    entries = [
        entry(MIDNIGHT + i % 3 * HOUR, f"k{i % 20}", f"m{i % 5}", input_tokens=i)
        for i in range(20_000)
    ]
    for e in entries:
        recorder.record(e)
    # Memory grows with combinations, not requests (bench/accounting.py measures the time).
    assert len(recorder._pending) == 60  # lcm(3, 20, 5) combinations
    assert sum(counts[1] for counts in recorder._pending.values()) == sum(range(20_000))


# --- exact across processes and hosts -----------------------------------------------------

PROCESSES, EACH = 4, 500


def workload(worker: int) -> list[UsageEntry]:
    """What one process records: 500 requests over several combinations, across midnight."""
    return [
        entry(
            MIDNIGHT - HOUR + (i * 37 % 7200),
            f"k{(worker + i) % 3}",
            f"m{i % 4}",
            provider=("openai", "azure")[i % 2],
            cache_hit=i % 5 == 0,
            input_tokens=i + worker,
            cache_read_tokens=i % 7,
            output_tokens=2 * i + 1,
            reasoning_tokens=i % 3,
            cache_write_tokens=i % 2,
            cache_write_1h_tokens=worker,
        )
        for i in range(EACH)
    ]


def expected(entries: list[UsageEntry]) -> dict[str, int]:
    return {name: sum(getattr(e, name) for e in entries) for name in ("requests", *UNITS)}


def run_in_processes(target: Callable[[int], None], count: int) -> None:
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        # Python 3.12+ warns of forking a process with threads; gunicorn does it too.
        warnings.filterwarnings("ignore", message=".*use of fork\\(\\) may lead to deadlocks")
        procs = [context.Process(target=target, args=(i,)) for i in range(count)]
        for proc in procs:
            proc.start()
    for proc in procs:
        proc.join(30)
    assert [proc.exitcode for proc in procs] == [0] * count


def record_all(recorder: UsageRecorder, entries: list[UsageEntry]) -> None:
    errors: list[Exception] = []
    recorder.on_error = errors.append
    for i, e in enumerate(entries):
        recorder.record(e)
        if i % 100 == 0:
            time.sleep(0.002)  # let the flush thread write while the others do
    recorder.close()
    assert not errors, errors


def check_totals(store: UsageStore, entries: list[UsageEntry]) -> None:
    day_rows = store.query(MIDNIGHT - DAY, MIDNIGHT + DAY)
    hour_rows = store.query(MIDNIGHT - DAY, MIDNIGHT + DAY, group="hour")
    assert totals(day_rows) == totals(hour_rows) == expected(entries)
    assert {r.start for r in day_rows} == {MIDNIGHT - DAY, MIDNIGHT}
    for key in ("k0", "k1", "k2"):
        mine = [e for e in entries if e.key == key]
        assert totals(store.query(MIDNIGHT - DAY, MIDNIGHT + DAY, keys=[key])) == expected(mine)
    azure = [e for e in entries if e.provider == "azure" and e.model == "m1"]
    rows = store.query(MIDNIGHT - DAY, MIDNIGHT + DAY, model="m1", provider="azure")
    assert totals(rows) == expected(azure)


def in_a_fresh_interpreter(function: str, *args: str) -> None:
    """Run one of this module's functions in a new Python process.

    For the tests that fork: this test process holds threads that earlier tests left (fake
    servers, apps' background threads), and one of them holding a lock at the fork leaves the
    child waiting on it forever (seen: a child stuck in a flush, once in a few full runs).
    """
    code = (
        f"import sys; from tests.unit.test_usage_store import {function}; {function}(*sys.argv[1:])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_sqlite_is_exact_across_worker_processes(tmp_path: Path) -> None:
    in_a_fresh_interpreter("sqlite_across_forks", str(tmp_path))


def sqlite_across_forks(folder: str) -> None:
    clock = Clock(MIDNIGHT + 12 * HOUR)
    store = SQLiteUsageStore(Path(folder) / "usage.sqlite3", RETENTION, clock=clock)
    recorder = UsageRecorder(store, flush_interval=3600)
    # The parent has a backlog and an open connection when the workers fork (as a gunicorn
    # master would not, but might): they must neither write it again nor use its connection.
    early = [entry(MIDNIGHT - 1, input_tokens=1000, output_tokens=1)] * 7
    for e in early:
        recorder.record(e)
    store.query(MIDNIGHT, MIDNIGHT + 1)
    recorder.flush_interval = 0.005  # the workers' threads write while the others record
    run_in_processes(lambda worker: record_all(recorder, workload(worker)), PROCESSES)
    recorder.close()
    try:
        everything = early + [e for w in range(PROCESSES) for e in workload(w)]
        assert len(everything) == 2007
        check_totals(store, everything)
    finally:
        store.close()


def test_redis_is_exact_across_hosts(redis_url: str) -> None:
    in_a_fresh_interpreter("redis_across_forks", redis_url)


def redis_across_forks(redis_url: str) -> None:
    clock = Clock(MIDNIGHT + 12 * HOUR)

    def host(worker: int) -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            store = RedisUsageStore(client, "ns", RETENTION, clock=clock)
            record_all(UsageRecorder(store, flush_interval=0.005), workload(worker))
        finally:
            client.close()

    run_in_processes(host, 2)
    client = redis.Redis.from_url(redis_url)
    try:
        check_totals(
            RedisUsageStore(client, "ns", RETENTION, clock=clock),
            [e for w in range(2) for e in workload(w)],
        )
        assert RedisUsageStore(client, "other", RETENTION, clock=clock).query(0, 1e12) == []
    finally:
        client.close()


def test_entries_are_frozen_and_default_to_one_request() -> None:
    e = entry(MIDNIGHT)
    assert (e.requests, e.input_tokens) == (1, 0)
    assert replace(e, requests=3).requests == 3
    with pytest.raises(AttributeError):
        e.key = "bob"  # type: ignore[misc]
