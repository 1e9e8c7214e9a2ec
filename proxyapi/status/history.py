"""The last hour of each provider's traffic, per UTC minute, for the status page's charts.

Each process keeps, per provider, a ring of 60 one-minute buckets (O(1) memory): calls,
errors (any call that did not answer 2xx), fallbacks, calls shed without being sent (circuit
open, at a cap) and a latency histogram on fixed bounds. A bucket is keyed by its absolute
UTC minute, so the figures of several workers and hosts line up and merge by summing, and the
quantiles of the merged histogram are those of all the calls together (to a bucket's width).

:class:`Recording` feeds it from the fallback loop's observer hooks, beside the metrics.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxyapi.upstream.calls import Observer

MINUTES = 60
# Upper bounds of the latency buckets, in milliseconds (the last bucket is everything above).
# Fixed, so every worker's counts add up; as wide a range as the metrics' DURATION_BUCKETS.
LATENCY_BOUNDS_MS = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10_000,
    30_000,
    60_000,
    300_000,
)
# A bucket's fields: the counts first, then one per latency bucket (and one above the last).
CALLS, ERRORS, FALLBACKS, SHED = 0, 1, 2, 3
_LATENCY = 4
WIDTH = _LATENCY + len(LATENCY_BOUNDS_MS) + 1
# Outcomes that mean the provider was called (the others never sent anything).
_CALLED = frozenset(("ok", "failure", "declined", "client_error"))
_SHED = frozenset(("breaker_open", "skipped"))

Figures = dict[str, dict[int, list[int]]]  # provider -> UTC minute -> bucket fields


def minute_of(at: float) -> int:
    """The absolute UTC minute (minutes since the epoch) of a Unix time."""
    return int(at // 60)


class History:
    """This process's last hour of calls per provider."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # provider -> 60 slots of [minute, *fields]; a slot is reused when its minute comes round
        self._rings: dict[str, list[list[int]]] = {}
        self._lock = threading.Lock()

    def _slot(self, provider: str) -> list[int]:
        minute = minute_of(self.clock())
        ring = self._rings.get(provider)
        if ring is None:
            ring = self._rings.setdefault(provider, [[-1] + [0] * WIDTH for _ in range(MINUTES)])
        slot = ring[minute % MINUTES]
        if slot[0] != minute:
            slot[:] = [minute] + [0] * WIDTH
        return slot

    def outcome(self, provider: str, outcome: str, seconds: float) -> None:
        """Count one provider considered by the fallback loop (see Observer.upstream_outcome)."""
        with self._lock:
            slot = self._slot(provider)
            if outcome in _CALLED:
                slot[1 + CALLS] += 1
                if outcome != "ok":
                    slot[1 + ERRORS] += 1
                bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000)
                slot[1 + _LATENCY + bucket] += 1
            elif outcome in _SHED:
                slot[1 + SHED] += 1

    def fell_back(self, provider: str) -> None:
        with self._lock:
            self._slot(provider)[1 + FALLBACKS] += 1

    def figures(self) -> dict[str, dict[str, list[int]]]:
        """The last hour as plain JSON-able data: provider -> str(minute) -> fields."""
        oldest = minute_of(self.clock()) - MINUTES + 1
        with self._lock:
            return {
                provider: {str(s[0]): s[1:] for s in ring if s[0] >= oldest and any(s[1:])}
                for provider, ring in self._rings.items()
            }


def merge(workers: Iterable[Mapping[str, Mapping[str, list[int]]]]) -> Figures:
    """Sum several workers' :meth:`History.figures` minute by minute; shapes that do not fit
    (a worker of another version) are left out, never an error."""
    out: Figures = {}
    for figures in workers:
        if not isinstance(figures, Mapping):
            continue
        for provider, minutes in figures.items():
            if not isinstance(minutes, Mapping):
                continue
            mine = out.setdefault(provider, {})
            for minute, fields in minutes.items():
                if not (
                    isinstance(fields, list) and len(fields) == WIDTH and str(minute).isdigit()
                ):
                    continue
                total = mine.setdefault(int(minute), [0] * WIDTH)
                for i, value in enumerate(fields):
                    if isinstance(value, int):
                        total[i] += value
    return out


def quantile(histogram: list[int], q: float) -> float | None:
    """The ``q`` quantile in ms of a latency histogram (interpolated inside its bucket, as
    Prometheus' histogram_quantile does), or None with no calls."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            if i >= len(LATENCY_BOUNDS_MS):  # above the last bound: say the last bound
                return float(LATENCY_BOUNDS_MS[-1])
            low = LATENCY_BOUNDS_MS[i - 1] if i else 0
            high = LATENCY_BOUNDS_MS[i]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


def series(minutes: Mapping[int, list[int]], now: float) -> list[list[int]]:
    """A provider's last hour as 60 buckets, oldest first (empty minutes as zeros)."""
    last = minute_of(now)
    return [list(minutes.get(m, [0] * WIDTH)) for m in range(last - MINUTES + 1, last + 1)]


def latency(bucket: list[int]) -> list[int]:
    """A bucket's latency histogram."""
    return bucket[_LATENCY:]


def summary(buckets: list[list[int]]) -> dict[str, Any]:
    """An hour's totals: calls, errors, fallbacks, shed, error rate, p50 and p95 in ms."""
    total = [sum(b[i] for b in buckets) for i in range(WIDTH)]
    calls = total[CALLS]
    return {
        "calls": calls,
        "errors": total[ERRORS],
        "fallbacks": total[FALLBACKS],
        "shed": total[SHED],
        "error_rate": total[ERRORS] / calls if calls else 0.0,
        "p50_ms": quantile(latency(total), 0.5),
        "p95_ms": quantile(latency(total), 0.95),
    }


class Recording:
    """The fallback loop's observer: the metrics, and this process's history beside them."""

    def __init__(self, inner: Observer, history: History) -> None:
        self.inner = inner
        self.history = history

    def upstream_outcome(self, provider: str, outcome: str, seconds: float, retries: int) -> None:
        self.inner.upstream_outcome(provider, outcome, seconds, retries)
        self.history.outcome(provider, outcome, seconds)

    def fell_back(self, provider: str) -> None:
        self.inner.fell_back(provider)
        self.history.fell_back(provider)

    def first_event(self, provider: str, seconds: float) -> None:
        self.inner.first_event(provider, seconds)

    def breaker(self, provider: str, state: str) -> None:
        self.inner.breaker(provider, state)

    def rejected(self, scope: str) -> None:
        self.inner.rejected(scope)
