"""The usage log in one SQLite file, shared by every worker process on the host.

One row per hour and combination, its counts summed by an UPSERT; a batch is one ``BEGIN
IMMEDIATE`` transaction, so it is written whole or not at all, and a worker waits (up to
``BUSY_TIMEOUT``) while another writes. WAL mode lets the others read meanwhile.

Each process opens its own connection, on first use: a connection must never cross a fork
(SQLite's locks are per process, so a copy would write without them), and gunicorn forks its
workers after the app, and this store, are built. A thread-safe lock guards the connection,
which the flush thread and the query route share.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proxyapi.usage.records import (
    COUNTS,
    HOUR,
    UsageEntry,
    UsageRow,
    combine,
    hours,
    in_range,
    is_key_name,
    kept_since,
    retention,
    span_of,
    summarize,
)

# A write waits this long for another process's to finish. Each is one small transaction (a
# few ms), so a wait this long means a stuck disk; the flush then fails and is tried again.
BUSY_TIMEOUT = 5.0
# Old rows are deleted at most this often (per process); deleting is cheap, but not free.
PRUNE_EVERY = HOUR

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage (
    hour INTEGER NOT NULL,
    key TEXT NOT NULL,
    route TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    cache_hit INTEGER NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in COUNTS)},
    PRIMARY KEY (hour, key, route, provider, model, cache_hit)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_by_key ON usage (key, hour);
"""
_COLUMNS = ("hour", "key", "route", "provider", "model", "cache_hit", *COUNTS)
_UPSERT = (
    f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (hour, key, route, provider, model, cache_hit) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTS)
)
# A count no real row reaches (a quadrillion tokens in an hour); with at most 24 rows summed
# per group, a planted value this large still cannot overflow SQLite's SUM.
_MAX_COUNT = 10**15
# What this store writes; a row planted otherwise is skipped, not summed (SQLite's columns
# hold any type, whatever they are declared as).
_SOUND = " AND ".join(
    [
        "typeof(hour) = 'integer' AND hour % 3600 = 0",
        *(f"typeof({name}) = 'text'" for name in ("key", "route", "provider", "model")),
        "typeof(cache_hit) = 'integer' AND cache_hit IN (0, 1)",
        *(f"typeof({name}) = 'integer' AND {name} BETWEEN 0 AND {_MAX_COUNT}" for name in COUNTS),
    ]
)
_DIMENSIONS = "start, key, route, provider, model, cache_hit"
# Summed to the hour or day (the first parameter) here, so a month is a few rows per
# combination to read back, not one per hour.
_SELECT = (
    f"SELECT hour - hour % ? AS start, key, route, provider, model, cache_hit, "
    f"{', '.join(f'SUM({name})' for name in COUNTS)} "
    f"FROM usage WHERE hour >= ? AND hour < ? AND {_SOUND}"
)

# Connections a forked child inherited. Closing one there could checkpoint or delete the
# parent's WAL file; letting it be garbage-collected would close it too. It is kept, unused.
_INHERITED: list[sqlite3.Connection] = []


class SQLiteUsageStore:
    """Usage in a SQLite file at ``path``, in a folder the caller has made private."""

    def __init__(
        self, path: str | Path, retention_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.retention_days = retention(retention_days)
        self.clock = clock
        # Created private (0600) before SQLite opens it; its -wal and -shm files take its mode.
        # O_NOFOLLOW: a symbolic link planted in its place is refused.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._pruned = float("-inf")
        # The schema is made now, so a bad path fails at startup, and the connection closed
        # again: the process that builds the app forks the workers.
        with self._connection() as conn:
            conn.executescript(_SCHEMA)
        self.close()
        method = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (m := method()) is not None and m())

    def _after_fork(self) -> None:
        # The parent's threads are gone: a lock one of them held would never be released.
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun here, explicitly (BEGIN IMMEDIATE).
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not every commit: a crashed process
            # loses nothing, a power cut at most the last moments of usage.
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This process's connection, opened on first use, held under the lock."""
        with self._lock:
            if self._conn is not None and self._pid != os.getpid():
                _INHERITED.append(self._conn)
                self._conn = None
            if self._conn is None:
                self._conn = self._open()
                self._pid = os.getpid()
            yield self._conn

    def add(self, entries: Sequence[UsageEntry]) -> None:
        """Add a batch in one transaction, deleting expired rows first once an hour."""
        now = self.clock()
        rows = [
            (*combo, *counts)
            for combo, counts in combine(entries).items()
            if in_range(combo[0], now, self.retention_days)
        ]
        prune = now - self._pruned >= PRUNE_EVERY
        if not rows and not prune:
            return
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if prune:
                    conn.execute(
                        "DELETE FROM usage WHERE hour < ?",
                        (kept_since(now, self.retention_days),),
                    )
                conn.executemany(_UPSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if prune:
                self._pruned = now

    def query(
        self,
        start: float,
        end: float,
        group: str = "day",
        keys: Collection[str] | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> list[UsageRow]:
        """The totals of the hours that overlap ``[start, end)``; see :class:`UsageStore`."""
        span = span_of(group)
        wanted = hours(start, end, self.clock(), self.retention_days)
        if not wanted or (keys is not None and not keys):
            return []
        sql = _SELECT
        args: list[Any] = [span, wanted.start, wanted.stop]
        if keys is not None:
            # One parameter however many keys (SQLite caps the number of parameters).
            sql += " AND key IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(sorted(k for k in keys if is_key_name(k))))
        for column, value in (("model", model), ("provider", provider)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += f" GROUP BY {_DIMENSIONS}"
        with self._connection() as conn:
            found = conn.execute(sql, args).fetchall()
        sound = [
            ((start, key, route, provider, model, hit == 1), counts)
            for start, key, route, provider, model, hit, *counts in found
            if is_key_name(key)
        ]
        return summarize(sound, group)

    def close(self) -> None:
        """Close this process's connection; a later call opens a new one."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
                self._conn = None
