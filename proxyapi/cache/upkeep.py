"""Background upkeep of the cache, one thread per worker process.

- Predictive warming: entries of the ``models`` category, and ``metadata`` entries read at
  least ``min_accesses`` times, whose loaders are known, are reloaded when less than
  ``warm_before`` of their TTL is left, so no client waits for them. Response entries are never
  reloaded in the background: that would spend the client's tokens. A short lock in the cache
  keeps several workers from reloading the same entry (exact on Redis, best effort on files).
- Sweep: expired files are removed every ``sweep_interval`` seconds, then the oldest past
  ``max_files``; after a tenth of ``max_files`` new entries the sweep runs early.
- Consistency: every ``consistency_interval`` seconds a sample of the memory tier is compared
  with the shared backend, and stale copies are dropped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from proxyapi.background import PerProcessThread
from proxyapi.cache.store import CacheStore

log = logging.getLogger(__name__)

# How often the upkeep thread wakes up.
TICK = 5.0
# How long one worker may hold the right to reload an entry.
WARM_LOCK_SECONDS = 30
WARMED_CATEGORIES = ("models", "metadata")
# Loaders remembered for warming, at most (the oldest is forgotten first).
MAX_WARMED = 1000


class Upkeep:
    """Loaders of warmable entries, and the thread that keeps the cache in shape."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store
        self.config = store.config
        self.loaders: dict[tuple[str, str], Callable[[], Any]] = {}
        self.reads: Counter[tuple[str, str]] = Counter()
        self._thread = PerProcessThread(self._loop, "proxyapi-cache")
        self._last_sweep = self._last_check = time.monotonic()

    def remember(self, category: str, key: str, loader: Callable[[], Any]) -> None:
        """Note how to reload ``key``, and that it was read once more."""
        if category in WARMED_CATEGORIES:
            entry = (category, key)
            if entry not in self.loaders and len(self.loaders) >= MAX_WARMED:
                oldest = next(iter(self.loaders))
                del self.loaders[oldest]
                self.reads.pop(oldest, None)
            self.loaders[entry] = loader
            self.reads[entry] += 1

    def start(self) -> None:
        """Start the upkeep thread of this process (once; safe to call often)."""
        self._thread.ensure_started()

    def _loop(self) -> None:
        while True:
            time.sleep(TICK)
            try:
                self.run_once()
            except Exception:  # a bug here must not end the thread: log it and go on
                log.exception("cache upkeep failed")

    def run_once(self) -> None:
        """Warm, sweep and check what is due now."""
        self.warm()
        now = time.monotonic()
        early = self.store.writes_since_sweep > self.config.max_files // 10
        if early or now - self._last_sweep >= self.config.sweep_interval:
            self._last_sweep = now
            self.store.cleanup_expired()
        if now - self._last_check >= self.config.consistency_interval:
            self._last_check = now
            self.store.check_consistency(self.config.consistency_sample)

    def warm(self) -> int:
        """Reload the warmable entries that are close to expiring; return how many."""
        warmed = 0
        for (category, key), loader in list(self.loaders.items()):
            if category == "metadata" and self.reads[(category, key)] < self.config.min_accesses:
                continue  # not hot
            entry = self.store.get(category, key, quiet=True)
            now = self.store.clock()
            if entry is not None and entry.expires_at - now > self.config.warm_before * entry.ttl:
                continue
            lock_key = f"warm:{category}:{key}"
            if not self.store.add("locks", lock_key, 1, ttl=WARM_LOCK_SECONDS):
                continue  # another worker is on it
            try:
                self.store.set(category, key, loader())
                self.store.counts[category]["warmups"] += 1
                warmed += 1
            except Exception as exc:  # a loader that fails keeps the old entry until it expires
                log.warning("could not warm cache entry %s/%s: %s", category, key, exc)
            finally:
                self.store.delete("locks", lock_key)
        return warmed
