"""The usage log: every answered request's tokens, queryable by key, model, provider and time.

A request's tokens are handed to a :class:`UsageRecorder` (in memory, microseconds); its thread
writes them once a second to a :class:`UsageStore`, summed per UTC hour and combination (key,
route, provider, model, cache hit):

- :class:`SQLiteUsageStore`: one file shared by the workers of one host (embedded mode);
- :class:`RedisUsageStore`: shared by every host (distributed mode), Cluster-safe.

Money is not stored: a query returns units, and the caller prices them, so a price fixed later
applies to the past too.
"""

from __future__ import annotations

from proxyapi.usage.recorder import MAX_PENDING, UsageDropped, UsageRecorder
from proxyapi.usage.records import (
    UNITS,
    UsageEntry,
    UsageRow,
    UsageStore,
    UsageWriteError,
)
from proxyapi.usage.redis_store import RedisUsageStore
from proxyapi.usage.sqlite_store import SQLiteUsageStore

__all__ = [
    "MAX_PENDING",
    "UNITS",
    "RedisUsageStore",
    "SQLiteUsageStore",
    "UsageDropped",
    "UsageEntry",
    "UsageRecorder",
    "UsageRow",
    "UsageStore",
    "UsageWriteError",
]
