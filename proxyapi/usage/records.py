"""What the usage log holds: an answered request's tokens, and the rows a query returns.

Both stores keep one set of counts per UTC hour and *combination* (key, route, provider, model,
cache hit), so they take O(1) space per combination and hour however many requests there were;
a query sums those hours to hours or days. Money is not stored: the caller prices the units at
query time, so a corrected price applies to the whole history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

HOUR = 3600
DAY = 86400
GROUPS = {"hour": HOUR, "day": DAY}
UNITS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
# What a combination counts, in this order everywhere: the requests, then each unit.
COUNTS = ("requests", *UNITS)
# The longest text each dimension keeps; longer text is cut (a model name comes from a
# provider's answer, so its length is not ours to choose).
LIMITS = {"route": 32, "provider": 64, "model": 256}
# An entry further ahead of this host's clock than this is refused, and a query reads no
# further ahead: the hosts' clocks may differ a little, not by days.
AHEAD = DAY

_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# (hour, key, route, provider, model, cache_hit): one stored combination.
Combo = tuple[int, str, str, str, str, bool]


@dataclass(frozen=True)
class UsageEntry:
    """One answered request's tokens (or, with ``requests`` > 1, several requests' summed).

    ``input_tokens`` counts every input token, cached ones included; ``output_tokens`` every
    output token, reasoning included. ``cache_write_tokens`` are written to the provider's
    cache for 5 minutes (or a lifetime it did not say), ``cache_write_1h_tokens`` for an hour.
    ``cache_hit``: answered from the gateway's own cache, at no upstream cost.
    """

    at: float
    key: str
    route: str
    provider: str
    model: str
    cache_hit: bool
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 1


@dataclass(frozen=True)
class UsageRow:
    """One group of a query's answer: the totals of a combination over one hour or day."""

    start: int  # epoch seconds of the UTC hour or day
    key: str
    route: str
    provider: str
    model: str
    cache_hit: bool
    requests: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    reasoning_tokens: int


class UsageStore(Protocol):
    """Where usage is summed: one SQLite file per host, or Redis for every host."""

    def add(self, entries: Sequence[UsageEntry]) -> None:
        """Add a batch in one transaction (or one pipeline); raise if it was not written."""

    def query(
        self,
        start: float,
        end: float,
        group: str = "day",
        keys: Collection[str] | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> list[UsageRow]:
        """The totals of the hours that overlap ``[start, end)``, per hour or UTC day.

        ``keys`` None means every key. Rows are sorted by (start, key, provider, model,
        route, cache_hit).
        """

    def close(self) -> None:
        """Let go of this process's connection."""


class UsageWriteError(Exception):
    """Part of a batch was not written; ``unwritten`` is that part, to be added again."""

    def __init__(self, message: str, unwritten: Sequence[UsageEntry]) -> None:
        super().__init__(message)
        self.unwritten = list(unwritten)


def is_key_name(value: object) -> bool:
    """Tell whether ``value`` can be a key's name (so it is safe inside a Redis key)."""
    return isinstance(value, str) and _KEY_RE.fullmatch(value) is not None


def _text(value: object, what: str) -> str:
    if type(value) is not str:
        raise ValueError(f"usage {what} must be a string, got {value!r}")
    limit = LIMITS[what]
    if len(value) <= limit and value.isprintable():
        return value
    return "".join(c if c.isprintable() else "?" for c in value[:limit])


def prepared(entry: UsageEntry) -> tuple[UsageEntry, list[int]]:
    """:func:`checked` ``entry``, and its counts (see :func:`counts_of`)."""
    if not is_key_name(entry.key):
        raise ValueError(f"usage key must be 1-64 of A-Z a-z 0-9 _ . -, got {entry.key!r}")
    at = entry.at
    if type(at) is not float and (type(at) is not int or isinstance(at, bool)):
        raise ValueError(f"usage time must be epoch seconds, got {at!r}")
    if not math.isfinite(at):
        raise ValueError(f"usage time must be epoch seconds, got {at!r}")
    counts = counts_of(entry)
    for value in counts:
        if type(value) is not int or value < 0:
            name = COUNTS[counts.index(value)]
            raise ValueError(f"usage {name} must be a whole number >= 0, got {value!r}")
    route = _text(entry.route, "route")
    provider = _text(entry.provider, "provider")
    model = _text(entry.model, "model")
    if route is not entry.route or provider is not entry.provider or model is not entry.model:
        entry = replace(entry, route=route, provider=provider, model=model)
    return entry, counts


def checked(entry: UsageEntry) -> UsageEntry:
    """``entry`` if it is sound; a copy with its text made printable and cut to length if not.

    Raises ValueError for what cannot be mended: a key that is not a key's name, a time that
    is not a finite number, a count that is not a whole number of at least 0.
    """
    return prepared(entry)[0]


def hour_of(at: float) -> int:
    """The start of the UTC hour ``at`` falls in."""
    return int(at // HOUR) * HOUR


def combo_of(entry: UsageEntry) -> Combo:
    return (
        hour_of(entry.at),
        entry.key,
        entry.route,
        entry.provider,
        entry.model,
        bool(entry.cache_hit),
    )


def counts_of(entry: UsageEntry) -> list[int]:
    """An entry's counts, in the order of ``COUNTS``."""
    return [
        entry.requests,
        entry.input_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
        entry.cache_write_1h_tokens,
        entry.output_tokens,
        entry.reasoning_tokens,
    ]


def combine(entries: Iterable[UsageEntry]) -> dict[Combo, list[int]]:
    """Check ``entries`` and sum them per combination (see :func:`checked` for what raises)."""
    totals: dict[Combo, list[int]] = {}
    for entry in entries:
        entry, counts = prepared(entry)
        combo = combo_of(entry)
        total = totals.get(combo)
        if total is None:
            totals[combo] = counts
        else:
            for i, value in enumerate(counts):
                total[i] += value
    return totals


def as_entry(combo: Combo, counts: Sequence[int]) -> UsageEntry:
    """The entry that adds ``counts`` to ``combo``."""
    hour, key, route, provider, model, hit = combo
    return UsageEntry(
        hour, key, route, provider, model, hit, **dict(zip(COUNTS, counts, strict=True))
    )


def span_of(group: str) -> int:
    """The seconds of a query group; ValueError for anything but "hour" or "day"."""
    try:
        return GROUPS[group]
    except (KeyError, TypeError):
        raise ValueError(f'usage group must be "hour" or "day", got {group!r}') from None


def kept_since(now: float, retention_days: int) -> int:
    """The first hour still kept: anything older is deleted, or expired, and never read."""
    return hour_of(now - retention_days * DAY)


def hours(start: float, end: float, now: float, retention_days: int) -> range:
    """The hour buckets a query over ``[start, end)`` reads: those that overlap it, kept ones."""
    first = max(hour_of(start), kept_since(now, retention_days))
    end = min(end, now + AHEAD)
    last = hour_of(end)
    if last >= end:  # the hour that starts at ``end`` is not in [start, end)
        last -= HOUR
    return range(first, last + 1, HOUR)


def in_range(at: float, now: float, retention_days: int) -> bool:
    """Tell whether an entry at ``at`` is kept: not older than retention, nor from the future."""
    return kept_since(now, retention_days) <= at < now + AHEAD


def retention(days: object) -> int:
    """Check a retention in days (a whole number of at least 1)."""
    if type(days) is not int or days < 1:
        raise ValueError(f"usage retention_days must be a whole number >= 1, got {days!r}")
    return days


def summarize(rows: Iterable[tuple[Combo, Sequence[int]]], group: str) -> list[UsageRow]:
    """Sum stored hours (already checked) to ``group`` and sort them as queries promise."""
    span = span_of(group)
    totals: dict[Combo, list[int]] = {}
    for (hour, key, route, provider, model, hit), counts in rows:
        combo = (hour - hour % span, key, route, provider, model, hit)
        total = totals.get(combo)
        if total is None:
            totals[combo] = list(counts)
        else:
            for i, value in enumerate(counts):
                total[i] += value
    order = sorted(totals, key=lambda c: (c[0], c[1], c[3], c[4], c[2], c[5]))
    return [UsageRow(*combo, *totals[combo]) for combo in order]
