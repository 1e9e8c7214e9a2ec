"""A per-process in-memory tier in front of the shared cache backend (Redis or files).

It holds the entries themselves (objects, never pickles), bounded both by total size in bytes
(the bytes of a value, or an estimate of what an object holds: :func:`approx_size`) and by
number of entries. When a new entry does not fit, expired entries go first, then the lowest
priority, and among equal priorities the least recently used.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

# Added to every entry's size: approximates Python's per-object bookkeeping (the entry record,
# the dict and OrderedDict slots, the key and value object headers), so that many tiny entries
# cannot hold far more real memory than max_bytes says.
ENTRY_OVERHEAD = 100
# The expiry heap drops stale records lazily; it is rebuilt once it holds this many more than
# twice the live entries, which keeps it O(entries) at an amortized O(1) cost per operation.
HEAP_SLACK = 64

_DEFAULT_RNG = random.Random()


@dataclass
class MemoryTierStats:
    """Counters of one memory tier, plus its current size."""

    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    sets: int = 0
    # Entries removed to make room, by either bound.
    evictions: int = 0
    # Sets that had to evict because of the byte bound (memory pressure), once per set.
    pressure_events: int = 0
    # Entries found expired: on get, by purge_expired, or while making room on set.
    expirations: int = 0


@dataclass(slots=True)
class _Entry:
    value: Any
    expires_at: float
    priority: int
    size: int
    # Unique per stored version, so that a heap record of a replaced entry is recognized as stale.
    seq: int


def entry_size(key: str, value: bytes) -> int:
    """Return the bytes an entry counts against max_bytes."""
    return len(key.encode()) + len(value) + ENTRY_OVERHEAD


def approx_size(value: Any) -> int:
    """Estimate the bytes an object holds: its strings and bytes, plus a little per item."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (bytes, str)):
            total += len(item) + 40
        elif isinstance(item, dict):
            total += 64
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += 56
            stack.extend(item)
        else:
            total += 32
    return total


class MemoryTier:
    """A size- and count-bounded map of serialized entries with expiry; thread-safe.

    Structure: a dict of entries, one OrderedDict per priority level in recency order (oldest
    first, moved to the end on use), and a min-heap of expiry times with lazily dropped stale
    records. get, delete and a set that fits are O(1) amortized plus O(log n) for the heap; each
    eviction costs O(P) to find the lowest level, P being the number of distinct priorities in
    use (a handful in practice). Dropping k expired entries costs O(k log n). keys, sample and
    clear with a prefix are O(n). ``len()`` counts expired entries not yet dropped.
    """

    def __init__(
        self, max_bytes: int, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, not {max_entries}")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._levels: dict[int, OrderedDict[str, None]] = {}
        self._expiry: list[tuple[float, int, str]] = []
        self._bytes = 0
        self._seq = 0
        self._stats = MemoryTierStats()

    def get(self, key: str) -> tuple[Any, float] | None:
        """Return (value, expires_at) and mark it recently used; None if absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._stats.misses += 1
                return None
            if entry.expires_at <= now:
                self._remove(key, entry)
                self._stats.expirations += 1
                self._stats.misses += 1
                return None
            self._levels[entry.priority].move_to_end(key)
            self._stats.hits += 1
            return entry.value, entry.expires_at

    def set(
        self,
        key: str,
        value: Any,
        expires_at: float,
        priority: int = 0,
        size: int | None = None,
    ) -> bool:
        """Store value until expires_at (clock time); False if it can never fit (larger than
        max_bytes) or is already expired, in which case any older value of the key is dropped.

        ``size`` is what the value holds, for values other than bytes (:func:`approx_size`).
        """
        if size is None:
            size = entry_size(key, value)
        else:
            size += len(key.encode()) + ENTRY_OVERHEAD
        now = self._clock()
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                # Replaced or refused alike: an older value must not outlive a newer write.
                self._remove(key, old)
            if size > self.max_bytes or expires_at <= now:
                return False
            self._make_room(size, now)
            self._seq += 1
            entry = _Entry(value, expires_at, priority, size, self._seq)
            self._entries[key] = entry
            self._levels.setdefault(priority, OrderedDict())[key] = None
            self._bytes += size
            self._push_expiry(key, entry)
            self._stats.sets += 1
            return True

    def delete(self, key: str) -> bool:
        """Remove key; False if it was not there."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            self._remove(key, entry)
            return True

    def clear(self, prefix: str = "") -> int:
        """Remove every key starting with prefix (all keys by default); return how many."""
        with self._lock:
            if not prefix:
                count = len(self._entries)
                self._entries.clear()
                self._levels.clear()
                self._expiry.clear()
                self._bytes = 0
                return count
            doomed = [key for key in self._entries if key.startswith(prefix)]
            for key in doomed:
                self._remove(key, self._entries[key])
            return len(doomed)

    def keys(self) -> list[str]:
        """Return a snapshot of the live (unexpired) keys, for sampling."""
        now = self._clock()
        with self._lock:
            return [key for key, entry in self._entries.items() if entry.expires_at > now]

    def sample(self, n: int, rng: random.Random | None = None) -> list[str]:
        """Return up to n distinct live keys chosen at random."""
        if n <= 0:
            return []
        live = self.keys()
        return (rng or _DEFAULT_RNG).sample(live, min(n, len(live)))

    def purge_expired(self) -> int:
        """Drop every expired entry; return how many."""
        now = self._clock()
        with self._lock:
            return self._drop_expired(now)

    def stats(self) -> MemoryTierStats:
        """Return a copy of the counters with the current entry count and size."""
        with self._lock:
            return replace(self._stats, entries=len(self._entries), bytes=self._bytes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _make_room(self, size: int, now: float) -> None:
        """Drop expired, then evict, until an entry of ``size`` fits; the lock is held."""
        if not self._overflows(size):
            return
        self._drop_expired(now)
        pressure = False
        while self._overflows(size):
            # Cannot run dry: size <= max_bytes and max_entries >= 1, so an empty tier fits.
            pressure = pressure or self._bytes + size > self.max_bytes
            lowest = min(self._levels)
            victim = next(iter(self._levels[lowest]))
            self._remove(victim, self._entries[victim])
            self._stats.evictions += 1
        if pressure:
            self._stats.pressure_events += 1

    def _overflows(self, size: int) -> bool:
        return self._bytes + size > self.max_bytes or len(self._entries) + 1 > self.max_entries

    def _drop_expired(self, now: float) -> int:
        """Drop the entries expired at ``now`` and count them; the lock is held."""
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, seq, key = heapq.heappop(self._expiry)
            entry = self._entries.get(key)
            if entry is not None and entry.seq == seq:
                self._remove(key, entry)
                dropped += 1
        self._stats.expirations += dropped
        return dropped

    def _remove(self, key: str, entry: _Entry) -> None:
        """Forget one entry; its heap record goes stale and is dropped later; the lock is held."""
        del self._entries[key]
        level = self._levels[entry.priority]
        del level[key]
        if not level:
            del self._levels[entry.priority]
        self._bytes -= entry.size

    def _push_expiry(self, key: str, entry: _Entry) -> None:
        if len(self._expiry) > 2 * len(self._entries) + HEAP_SLACK:
            self._expiry = [(e.expires_at, e.seq, k) for k, e in self._entries.items()]
            heapq.heapify(self._expiry)
        heapq.heappush(self._expiry, (entry.expires_at, entry.seq, key))

    def _check_invariants(self) -> None:
        """Assert the internal structures agree with each other; for tests only."""
        with self._lock:
            assert self._bytes == sum(e.size for e in self._entries.values())
            assert self._bytes <= self.max_bytes
            assert len(self._entries) <= self.max_entries
            assert sum(len(level) for level in self._levels.values()) == len(self._entries)
            for priority, level in self._levels.items():
                assert level, "empty priority levels are removed"
                for key in level:
                    assert self._entries[key].priority == priority
            live = {(seq, key) for _, seq, key in self._expiry}
            for key, entry in self._entries.items():
                assert (entry.seq, key) in live, "every entry has a heap record"
