"""The usage log in one SQLite file, shared by every worker process on the host.

One row per hour and combination, its counts summed by an UPSERT; a batch is one ``BEGIN
IMMEDIATE`` transaction, so it is written whole or not at all, and a worker waits (up to
5 s, ``proxyapi.sqlite_file.BUSY_TIMEOUT``) while another writes. WAL mode lets the others
read meanwhile. Each process has its own connection (:mod:`proxyapi.sqlite_file`), which the
flush thread and the query route share.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from proxyapi.sqlite_file import ProcessConnection
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


class SQLiteUsageStore:
    """Usage in a SQLite file at ``path``, in a folder the caller has made private."""

    def __init__(
        self, path: str | Path, retention_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.retention_days = retention(retention_days)
        self.clock = clock
        # In WAL mode NORMAL syncs at checkpoints, not every commit: a crashed process loses
        # nothing, a power cut at most the last moments of usage.
        self._db = ProcessConnection(self.path, "NORMAL")
        self._pruned = float("-inf")
        # The schema is made now, so a bad path fails at startup, and the connection closed
        # again: the process that builds the app forks the workers.
        with self._connection() as conn:
            conn.executescript(_SCHEMA)
        self.close()

    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.connection()

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
        self._db.close()
