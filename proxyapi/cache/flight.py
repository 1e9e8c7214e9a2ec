"""Single flight: identical concurrent cacheable requests make one upstream call, not many.

Within a worker, the first request for a key leads and the others wait on an event until it is
done, then read its answer from the cache. Across workers and hosts (Redis backend only, where
``add`` is atomic), the leader also takes a short lock in the cache; a request that finds the
lock taken polls the cache for the answer instead of calling upstream. A follower that waits in
vain (the leader failed, or took too long) calls upstream itself: waiting never turns into an
error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# How often a request waiting on another worker's call looks for its answer.
POLL_INTERVAL = 0.05


class SingleFlight:
    """Per-process registry of calls in flight, by cache key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, threading.Event] = {}

    @contextmanager
    def lead(self, key: str) -> Iterator[threading.Event | None]:
        """Yield None to the leader (who must make the call), else the leader's event."""
        with self._lock:
            running = self._calls.get(key)
            if running is None:
                done = self._calls[key] = threading.Event()
        if running is not None:
            yield running
            return
        try:
            yield None
        finally:
            with self._lock:
                self._calls.pop(key, None)
            done.set()


def wait_until(predicate: object, timeout: float) -> None:
    """Sleep in short steps until ``predicate()`` is true or ``timeout`` passes."""
    assert callable(predicate)
    until = time.monotonic() + timeout
    while time.monotonic() < until and not predicate():
        time.sleep(POLL_INTERVAL)
