"""One cache interface over a flask-caching backend: categories, TTLs, statistics.

Entries are plain data (dicts, bytes, lists) wrapped with when they were stored, for how
long and under which key, ``pxc:<category>:<generation>:<key>``, and written as JSON
(:mod:`proxyapi.cache.codec`, never a pickle); an entry read back under another key than its
own is refused like a malformed one. Clearing a category gives it a new
generation (a random token kept in the backend and re-read at most every
``GENERATION_REFRESH`` seconds), so every backend can clear one category without listing keys;
the old entries expire on their own (and the sweep removes their files).

Backend errors never reach a client: the store fails open (a miss, a skipped write), logs and
counts them. Smart TTL keeps per-process access counts and writes an entry back only when its
TTL is extended, never on every hit. An optional per-process memory tier answers repeated
reads without touching the backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import struct
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import redis
from cachelib import BaseCache, FileSystemCache, RedisCache

from proxyapi.cache.codec import Entry, EntryCodec
from proxyapi.cache.memory import MemoryTier, approx_size
from proxyapi.config import CacheConfig

log = logging.getLogger(__name__)

PREFIX = "pxc"
# How long a worker trusts the category generations it read (how fast a clear elsewhere is
# seen).
GENERATION_REFRESH = 1.0
# Eviction priority in the memory tier: answers cost tokens to make again, model lists only
# an upstream call; but the lists are read by every client, so they stay longest.
PRIORITY = {"responses": 0, "metadata": 1, "models": 2}
# Per-process access counts kept for smart TTL before the oldest half is forgotten.
MAX_TRACKED_KEYS = 10_000
# What a backend may raise; anything else is a bug and is not swallowed.
BACKEND_ERRORS = (redis.RedisError, OSError, EOFError, struct.error)
# A generation as clear() writes it; anything else read back is ignored.
_GENERATION = re.compile(r"^[0-9a-f]{1,32}$")
# A generation entry lives as long as the backend keeps it (about ten years).
_GENERATION_TTL = 10 * 365 * 86400

__all__ = ["BACKEND_ERRORS", "CacheStore", "Entry"]


class CacheStore:
    """The cache interface used by every part of the gateway."""

    def __init__(
        self,
        backend: BaseCache,
        config: CacheConfig,
        kind: str,
        memory: MemoryTier | None = None,
        clock: Callable[[], float] = time.time,
        observer: Callable[[str, str], None] | None = None,
        on_redis_error: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.kind = kind
        self.memory = memory
        self.clock = clock
        # Told (category, "hit" | "miss") of every counted lookup: the Prometheus counter.
        self.observer = observer
        self.on_redis_error = on_redis_error
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._generations: dict[str, tuple[float, str]] = {}
        self._access: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._logged_at = 0.0
        # Entries written since the last sweep (the upkeep sweeps early after many).
        self.writes_since_sweep = 0
        # The backend's serializer: plain JSON, checked on read (see proxyapi.cache.codec).
        codec = getattr(backend, "serializer", None)
        self.codec = codec if isinstance(codec, EntryCodec) else None

    # ------------------------------------------------------------------ plumbing

    def _safe(self, category: str, what: str, call: Callable[[], Any], default: Any) -> Any:
        try:
            return call()
        except BACKEND_ERRORS as exc:
            self.counts[category]["errors"] += 1
            if self.on_redis_error is not None and isinstance(exc, redis.RedisError):
                self.on_redis_error("cache")
            now = time.monotonic()
            if now - self._logged_at > 60:  # once a minute says enough about an outage
                self._logged_at = now
                log.warning(
                    "cache %s failed (%s: %s): serving without the cache",
                    what,
                    exc.__class__.__name__,
                    exc,
                )
            return default

    def _generation(self, category: str) -> str:
        now = time.monotonic()
        cached = self._generations.get(category)
        if cached is not None and now - cached[0] < GENERATION_REFRESH:
            return cached[1]
        gen_key = f"{PREFIX}:gen:{category}"
        stored = self._safe(category, "read", lambda: self.backend.get(gen_key), None)
        gen = "0"
        if (
            isinstance(stored, Entry)
            and stored.key == gen_key
            and isinstance(stored.value, str)
            and _GENERATION.match(stored.value)
        ):
            gen = stored.value
        self._generations[category] = (now, gen)
        return gen

    def full_key(self, category: str, key: str) -> str:
        """The backend key of ``key`` in ``category``."""
        return f"{PREFIX}:{category}:{self._generation(category)}:{key}"

    def _ttl(self, category: str, ttl: int | None) -> int:
        return ttl if ttl is not None else self.config.ttl.get(category, 300)

    def _remember(self, full: str, entry: Entry, category: str) -> None:
        if self.memory is not None:
            self.memory.set(
                full,
                entry,
                entry.expires_at,
                PRIORITY.get(category, 0),
                size=approx_size(entry.value),
            )

    def _read(self, category: str, full: str) -> Entry | None:
        """The backend's entry under ``full``, if it is one this gateway stored there."""
        raw = self._safe(category, "read", lambda: self.backend.get(full), None)
        if not isinstance(raw, Entry):
            return None
        if raw.key != full:  # copied from another key: refused like a malformed value
            if self.codec is not None:
                self.codec.refuse("an entry stored under another key", "misplaced")
            return None
        return raw

    # ------------------------------------------------------------------ the interface

    def get(self, category: str, key: str, quiet: bool = False) -> Entry | None:
        """Return the live entry for ``key``, or None (a miss).

        ``quiet`` reads without counting a hit or miss (the gateway's own polling and upkeep).
        """
        full = self.full_key(category, key)
        entry: Entry | None = None
        if self.memory is not None:
            found = self.memory.get(full)
            if found is not None:
                entry = found[0]
        if entry is None:
            entry = self._read(category, full)
            if entry is not None:
                self._remember(full, entry, category)
        now = self.clock()
        if entry is not None and entry.expires_at <= now:
            self.counts[category]["expirations"] += 1
            entry = None
        if quiet:
            return entry
        self.counts[category]["hits" if entry is not None else "misses"] += 1
        if self.observer is not None:
            self.observer(category, "hit" if entry is not None else "miss")
        if self.config.smart_ttl:
            entry = self._smart_ttl(category, full, entry, now)
        return entry

    def set(self, category: str, key: str, value: Any, ttl: int | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds (the category's TTL by default)."""
        entry = Entry(value, self.clock(), self._ttl(category, ttl))
        return self._write(category, self.full_key(category, key), entry)

    def _write(self, category: str, full: str, entry: Entry) -> bool:
        entry = dataclasses.replace(entry, key=full)
        timeout = max(1, int(entry.expires_at - self.clock()) + 1)
        stored = self._safe(
            category, "write", lambda: self.backend.set(full, entry, timeout=timeout), False
        )
        if stored:
            self.counts[category]["sets"] += 1
            self.writes_since_sweep += 1
            self._remember(full, entry, category)
        return bool(stored)

    def add(self, category: str, key: str, value: Any, ttl: int | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (atomic on Redis, best effort on files)."""
        full = self.full_key(category, key)
        entry = Entry(value, self.clock(), self._ttl(category, ttl), key=full)
        return bool(
            self._safe(
                category, "write", lambda: self.backend.add(full, entry, timeout=entry.ttl), False
            )
        )

    def delete(self, category: str, key: str) -> bool:
        """Remove ``key``."""
        full = self.full_key(category, key)
        if self.memory is not None:
            self.memory.delete(full)
        deleted = self._safe(category, "delete", lambda: self.backend.delete(full), False)
        if deleted:
            self.counts[category]["deletes"] += 1
        return bool(deleted)

    def get_many(self, category: str, keys: Iterable[str]) -> dict[str, Entry]:
        """Return the live entries among ``keys``."""
        found = {}
        for key in keys:
            entry = self.get(category, key)
            if entry is not None:
                found[key] = entry
        return found

    def set_many(self, category: str, values: Mapping[str, Any], ttl: int | None = None) -> int:
        """Store several values; return how many were stored."""
        return sum(self.set(category, k, v, ttl) for k, v in values.items())

    def delete_many(self, category: str, keys: Iterable[str]) -> int:
        """Remove several keys; return how many existed."""
        return sum(self.delete(category, k) for k in keys)

    def expire(self, category: str, key: str, ttl: int) -> bool:
        """Give ``key`` ``ttl`` more seconds from now; False if it is not there."""
        entry = self.get(category, key, quiet=True)
        if entry is None:
            return False
        now = self.clock()
        renewed = Entry(
            entry.value, entry.stored_at, int(now - entry.stored_at) + ttl, entry.extensions
        )
        return self._write(category, self.full_key(category, key), renewed)

    def ttl(self, category: str, key: str) -> float | None:
        """Seconds ``key`` has left, or None if it is not there."""
        entry = self.get(category, key, quiet=True)
        return None if entry is None else max(0.0, entry.expires_at - self.clock())

    def clear(self, category: str | None = None) -> None:
        """Drop every entry of ``category`` (of every category by default)."""
        for cat in [category] if category else list(self.config.ttl):
            gen = uuid.uuid4().hex[:12]
            gen_key = f"{PREFIX}:gen:{cat}"
            stored = Entry(gen, self.clock(), _GENERATION_TTL, key=gen_key)
            write = partial(self.backend.set, gen_key, stored, timeout=0)
            self._safe(cat, "write", write, None)
            self._generations[cat] = (time.monotonic(), gen)
            if self.memory is not None:
                self.memory.clear(f"{PREFIX}:{cat}:")
            self.counts[cat]["clears"] += 1

    def categories(self) -> dict[str, dict[str, Any]]:
        """Each category with its TTL and this worker's counters for it."""
        return {
            cat: {"ttl": ttl, **self._category_counts(cat)} for cat, ttl in self.config.ttl.items()
        }

    def cleanup_expired(self) -> int:
        """Remove expired entries the backend keeps (files), then the oldest files past
        ``max_files``; return how many."""
        self.writes_since_sweep = 0
        removed = 0
        if self.memory is not None:
            removed += self.memory.purge_expired()
        files = self.backend
        if isinstance(files, FileSystemCache):
            before = self._file_count()
            # cachelib has no public sweep (its own pruning counts files racily across
            # processes, so it is off): this is the one it runs internally.
            self._safe("responses", "sweep", partial(files._remove_expired, time.time()), None)
            removed += max(0, before - self._file_count())
            evicted = self._safe("responses", "sweep", self._cap_files, 0)
            self.counts["all"]["evictions"] += evicted
            removed += evicted
        self.counts["all"]["expirations"] += removed
        return removed

    def _cap_files(self) -> int:
        """Remove the oldest files until at most 90% of ``max_files`` are left."""
        directory = getattr(self.backend, "_path", None)
        limit = self.config.max_files
        if not directory:
            return 0
        entries = [e for e in os.scandir(directory) if e.is_file()]
        if len(entries) <= limit:
            return 0
        entries.sort(key=lambda e: e.stat().st_mtime)
        doomed = entries[: len(entries) - int(limit * 0.9)]
        for entry in doomed:
            with contextlib.suppress(FileNotFoundError):  # another worker's sweep got it
                os.remove(entry.path)
        log.info("cache: %d oldest files removed (over cache.max_files=%d)", len(doomed), limit)
        return len(doomed)

    # ------------------------------------------------------------------ smart TTL

    def _smart_ttl(self, category: str, full: str, entry: Entry | None, now: float) -> Entry | None:
        with self._lock:
            if len(self._access) > MAX_TRACKED_KEYS:
                for old in list(self._access)[: MAX_TRACKED_KEYS // 2]:
                    del self._access[old]
            counts = self._access.setdefault(full, [0, 0])
            counts[0 if entry is not None else 1] += 1
            hits, misses = counts
            due = (
                entry is not None
                and hits >= self.config.min_accesses
                and hits / (hits + misses) >= self.config.min_hit_rate
                and entry.ttl < self.config.max_ttl
            )
            if due:
                counts[0] = counts[1] = 0  # the next extension needs as many hits again
        if not due or entry is None:
            return entry
        extended = Entry(
            entry.value,
            entry.stored_at,
            min(entry.ttl * 2, self.config.max_ttl),
            entry.extensions + 1,
        )
        if self._write(category, full, extended):
            self.counts[category]["ttl_extensions"] += 1
            return extended
        return entry

    # ------------------------------------------------------------------ consistency

    def check_consistency(self, sample: int) -> int:
        """Compare sampled memory entries with the backend; drop the stale. Return how many."""
        if self.memory is None:
            return 0
        dropped = 0
        for full in self.memory.sample(sample):
            mine = self.memory.get(full)
            if mine is None:
                continue
            shared = self._read("all", full)
            self.counts["all"]["consistency_checks"] += 1
            if shared != mine[0]:
                self.memory.delete(full)
                self.counts["all"]["inconsistencies"] += 1
                dropped += 1
        return dropped

    # ------------------------------------------------------------------ statistics

    def _category_counts(self, category: str) -> dict[str, int]:
        c = self.counts[category]
        return {name: c[name] for name in ("hits", "misses", "sets", "deletes", "errors")}

    def _file_count(self) -> int:
        directory = getattr(self.backend, "_path", None)
        if not directory:
            return 0
        try:
            return sum(1 for e in os.scandir(directory) if e.is_file())
        except OSError:
            return 0

    def backend_size(self) -> dict[str, int | None]:
        """Entries and bytes the shared backend holds (what it can tell cheaply)."""
        if isinstance(self.backend, FileSystemCache):
            directory = self.backend._path  # cachelib keeps the folder here
            try:
                files = [e for e in os.scandir(directory) if e.is_file()]
            except OSError:
                return {"entries": None, "bytes": None}
            return {"entries": len(files), "bytes": sum(e.stat().st_size for e in files)}
        if isinstance(self.backend, RedisCache):
            client = self.backend._write_client
            try:
                keys = sum(
                    1 for _ in client.scan_iter(match=f"{self.backend.key_prefix}{PREFIX}:*")
                )
            except redis.RedisError:
                return {"entries": None, "bytes": None}
            return {"entries": keys, "bytes": None}
        return {"entries": None, "bytes": None}

    def stats(self) -> dict[str, Any]:
        """This worker's counters as plain data (summed over workers by the stats endpoint)."""
        totals: Counter[str] = Counter()
        per_category = {}
        for cat in self.config.ttl:
            per_category[cat] = dict(self.counts[cat])
            totals.update(self.counts[cat])
        totals.update(self.counts["all"])
        if self.codec is not None and self.codec.rejected:
            totals["rejected"] = self.codec.rejected
        memory = self.memory.stats() if self.memory is not None else None
        return {
            "totals": dict(totals),
            "categories": per_category,
            "memory": vars(memory) if memory is not None else None,
        }
