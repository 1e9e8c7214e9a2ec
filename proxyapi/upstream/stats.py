"""Per-provider client statistics of one worker process: what /v1/providers reports.

Counted per provider *call* (one provider's attempt at a request, its own retries included):
``requests``, ``errors`` (provider failures: the ones a breaker counts), latency, ``retries``,
fallbacks away from it and to it, and a sliding window of recent outcomes that the adaptive
retry strategy reads as the provider's failure rate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

# The adaptive retry strategy's window: the last WINDOW_CALLS outcomes, none older than
# WINDOW_SECONDS, and no verdict before WINDOW_MIN_CALLS of them.
WINDOW_CALLS = 20
WINDOW_SECONDS = 60.0
WINDOW_MIN_CALLS = 5
# Latencies kept for the average and p95: recent enough to show a change within minutes.
LATENCY_SAMPLES = 1000
# Of those, how many each worker shares with the others in distributed mode.
SHARED_LATENCY_SAMPLES = 200


class ProviderStats:
    """Counters for one provider in this worker; thread-safe."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.requests = 0
        self.errors = 0
        self.retries = 0
        self.fallbacks_from = 0
        self.fallbacks_to = 0
        self.consecutive_failures = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._window: deque[tuple[float, bool]] = deque(maxlen=WINDOW_CALLS)

    def record(self, ok: bool, seconds: float, retries: int) -> None:
        """Record one finished call: ``ok`` is False for a provider failure."""
        with self._lock:
            self.requests += 1
            self.retries += retries
            self._latencies.append(seconds)
            self._window.append((self._clock(), ok))
            if ok:
                self.consecutive_failures = 0
            else:
                self.errors += 1
                self.consecutive_failures += 1

    def record_failure_after_start(self) -> None:
        """Record that a stream which had started failed later (the call was counted ok)."""
        with self._lock:
            self.errors += 1
            self.consecutive_failures += 1
            self._window.append((self._clock(), False))

    def fell_back(self, to: ProviderStats) -> None:
        """Record that a request moved from this provider to ``to``."""
        with self._lock:
            self.fallbacks_from += 1
        with to._lock:
            to.fallbacks_to += 1

    def failure_rate(self) -> float:
        """Share of failed calls among the recent ones (0 while there are too few)."""
        cutoff = self._clock() - WINDOW_SECONDS
        with self._lock:
            recent = [ok for at, ok in self._window if at >= cutoff]
        if len(recent) < WINDOW_MIN_CALLS:
            return 0.0
        return recent.count(False) / len(recent)

    def raw(self) -> dict[str, Any]:
        """Return the counters and recent samples as plain, JSON-ready data."""
        cutoff = self._clock() - WINDOW_SECONDS
        with self._lock:
            return {
                "requests": self.requests,
                "errors": self.errors,
                "retries": self.retries,
                "fallbacks_from": self.fallbacks_from,
                "fallbacks_to": self.fallbacks_to,
                "consecutive_failures": self.consecutive_failures,
                "latencies": list(self._latencies)[-SHARED_LATENCY_SAMPLES:],
                "recent": [ok for at, ok in self._window if at >= cutoff],
            }


def summarize(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the raw figures of one provider from one or more workers into the public view."""
    total = {
        key: sum(r[key] for r in raws)
        for key in ("requests", "errors", "retries", "fallbacks_from", "fallbacks_to")
    }
    latencies = sorted(x for r in raws for x in r["latencies"])
    recent = [ok for r in raws for ok in r["recent"]]
    avg = sum(latencies) / len(latencies) if latencies else 0.0
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else 0.0
    return {
        **total,
        "error_rate": round(total["errors"] / total["requests"], 4) if total["requests"] else 0.0,
        # Per worker, so the worst worker's streak is the one that matters.
        "consecutive_failures": max((r["consecutive_failures"] for r in raws), default=0),
        "latency_ms": {"avg": round(avg * 1000, 2), "p95": round(p95 * 1000, 2)},
        "recent_failure_rate": (
            round(recent.count(False) / len(recent), 4) if len(recent) >= WINDOW_MIN_CALLS else 0.0
        ),
    }
