"""Usage recorded off the request path: summed in memory, written by a thread every second.

:meth:`UsageRecorder.record` adds a request's tokens to an in-memory total per hour and
combination, under a lock, and returns: it costs about a microsecond and never waits for a
store. A daemon thread, started on the first record in each process (gunicorn forks workers
after the app is built), hands the totals to the store every ``flush_interval``: one batch, one
transaction or pipeline, whatever the traffic.

A batch the store did not take is kept and tried again at the next flush, summed with what
came in meanwhile, so nothing is lost to a short outage; beyond ``max_pending`` combinations
the oldest are dropped (and reported), so a long one cannot exhaust memory.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

from proxyapi.background import PerProcessThread
from proxyapi.usage.records import (
    COUNTS,
    HOUR,
    Combo,
    UsageEntry,
    UsageStore,
    UsageWriteError,
    as_entry,
    combine,
    prepared,
)

# Combinations (key, route, provider, model, cache hit, hour) kept while the store is down;
# each is a few hundred bytes, so this bounds the backlog to tens of MB.
MAX_PENDING = 100_000
log = logging.getLogger(__name__)


class UsageDropped(Exception):
    """Usage was lost: the store has been failing, and the backlog was full."""


class UsageRecorder:
    """Sums usage in this process and writes it to ``store`` from a background thread.

    ``on_error`` is told of each failed flush (and of entries refused as malformed, and of
    dropped backlog); without it they are logged. :meth:`close` does not close the store: it
    is the caller's.
    """

    def __init__(
        self,
        store: UsageStore,
        flush_interval: float = 1.0,
        on_error: Callable[[Exception], None] | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.on_error = on_error
        self.max_pending = max_pending
        self._thread = PerProcessThread(self._run, "proxyapi-usage")
        self._reset()
        method = weakref.WeakMethod(self._reset)
        os.register_at_fork(after_in_child=lambda: (m := method()) is not None and m())

    def _reset(self) -> None:
        # Also the start of a forked child: what the parent gathered is the parent's to write
        # (a copy written here would count twice), and a lock one of its threads held would
        # never be released here.
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: dict[Combo, list[int]] = {}
        self._stopped = threading.Event()

    def record(self, entry: UsageEntry) -> None:
        """Add one answered request's tokens; never blocks on I/O and never raises.

        A malformed entry (see :func:`~proxyapi.usage.records.checked`) is reported and
        dropped.
        """
        try:
            entry, counts = prepared(entry)
        except ValueError as exc:
            self._report(exc)
            return
        combo = (
            int(entry.at // HOUR) * HOUR,
            entry.key,
            entry.route,
            entry.provider,
            entry.model,
            bool(entry.cache_hit),
        )
        # acquire/release rather than ``with``: a few hundred ns less, on every request.
        self._lock.acquire()
        try:
            total = self._pending.get(combo)
            if total is not None:
                total[0] += counts[0]
                total[1] += counts[1]
                total[2] += counts[2]
                total[3] += counts[3]
                total[4] += counts[4]
                total[5] += counts[5]
                total[6] += counts[6]
                return
            self._pending[combo] = counts
        finally:
            self._lock.release()
        # A new combination: the first record in this process (a forked child starts with
        # none), or the first since a flush. The thread is started only then.
        if not self._stopped.is_set():
            self._thread.ensure_started()

    def flush(self) -> None:
        """Write what has been gathered, now; a failure is reported, and the batch kept.

        Returns once everything recorded before the call has been handed to the store (a
        flush already under way on another thread is waited for), so a query made next sees
        it.
        """
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            entries = [as_entry(combo, counts) for combo, counts in batch.items()]
            try:
                self.store.add(entries)
            except Exception as exc:
                self._report(exc)
                self._keep(exc.unwritten if isinstance(exc, UsageWriteError) else entries)

    def close(self) -> None:
        """Flush, and stop this process's flush thread (at worker exit)."""
        self._stopped.set()
        self.flush()

    def _keep(self, unwritten: list[UsageEntry]) -> None:
        """Put back what the store did not take, ahead of what came in since (oldest first)."""
        kept = combine(unwritten)
        with self._lock:
            for combo, counts in self._pending.items():
                total = kept.get(combo)
                if total is None:
                    kept[combo] = counts
                else:
                    for i in range(len(COUNTS)):
                        total[i] += counts[i]
            excess = len(kept) - self.max_pending
            if excess > 0:
                for combo in list(kept)[:excess]:
                    del kept[combo]
            self._pending = kept
        if excess > 0:
            self._report(
                UsageDropped(
                    f"{excess} usage combinations dropped: the store has been failing and "
                    f"at most {self.max_pending} are kept"
                )
            )

    def _run(self) -> None:
        stopped = self._stopped
        while not stopped.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # a bug here must not end the thread: report it
                self._report(exc)

    def _report(self, exc: Exception) -> None:
        if self.on_error is None:
            log.warning("usage: %s", exc)
            return
        try:
            self.on_error(exc)
        except Exception:
            log.exception("usage: the error handler failed on %r", exc)
