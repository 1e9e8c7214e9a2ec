"""The usage log in Redis, shared by every host of the deployment.

Layout (every key under the deployment's namespace ``ns``):

- ``{ns:usage:<key>}:<YYYYMMDD>``: a hash per client key and UTC day; its fields are
  ``<HH>|<route>|<provider>|<model>|<hit>|<count>`` (``<count>`` is ``requests`` or a unit),
  each one a number summed with HINCRBY;
- ``{ns:usage}:keys:<YYYYMMDD>``: the set of the keys with usage that day, so a query over
  every key needs no SCAN.

Each key's hashes share a hash slot (the ``{...}`` tag names the key), so on a Redis Cluster the
keys spread over the nodes, and a batch is one non-transactional pipeline: redis-py's cluster
pipeline groups the commands by node, writes to every node and then reads the answers, one
round trip per node, side by side. (One tag for all usage would allow MULTI, but would put the
whole log on one node.) Every key expires ``retention_days`` after its day ends.

``|`` and ``%`` in the text fields are written ``%7C`` and ``%25``: a model name comes from a
provider's answer and may hold anything. What is read back is checked; a field or value this
store would not have written is skipped.

A pipeline that fails part-way has applied some increments and not others; the ones Redis
refused are raised as a :class:`UsageWriteError`, so only they are tried again. A connection
lost before the answers leaves the batch's fate unknown: it is tried again whole (at least once,
rather than at most once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from proxyapi.usage.records import (
    COUNTS,
    DAY,
    HOUR,
    Combo,
    UsageEntry,
    UsageRow,
    UsageWriteError,
    as_entry,
    combine,
    hours,
    in_range,
    is_key_name,
    retention,
    span_of,
    summarize,
)

# Longer than any count HINCRBY can hold (19 digits): a longer value was not written by it.
_MAX_DIGITS = 19


def escape(text: str) -> str:
    """``text`` safe between the ``|`` of a field."""
    return text.replace("%", "%25").replace("|", "%7C")


def unescape(text: str) -> str:
    return text.replace("%7C", "|").replace("%25", "%")


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day, UTC).strftime("%Y%m%d")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _keys(members: Any) -> list[str]:
    """The key names in a SMEMBERS answer (an error, if Redis refused it, holds none)."""
    if not isinstance(members, set | list):
        return []
    return sorted(name for name in map(_text, members) if name is not None and is_key_name(name))


class RedisUsageStore:
    """Usage in Redis (one node, Sentinel or a Cluster) under ``namespace``.

    ``client`` may decode responses or not. :meth:`close` leaves it open: it is shared.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.retention_days = retention(retention_days)
        self.clock = clock

    def _hash(self, key: str, day: int) -> str:
        return f"{{{self.namespace}:usage:{key}}}:{_day_name(day)}"

    def _names(self, day: int) -> str:
        return f"{{{self.namespace}:usage}}:keys:{_day_name(day)}"

    def _ttl(self, day: int, now: float) -> int:
        # A day's last hour is then retention_days old.
        return max(1, int(day + DAY + self.retention_days * DAY - now))

    def add(self, entries: Sequence[UsageEntry]) -> None:
        """Add a batch in one pipeline: HINCRBY each count that is not 0, then EXPIRE and SADD."""
        now = self.clock()
        combos = [
            (combo, counts)
            for combo, counts in combine(entries).items()
            if in_range(combo[0], now, self.retention_days)
        ]
        if not combos:
            return
        pipe = self.client.pipeline(transaction=False)
        sent: list[tuple[int, int]] = []  # (combo, count) of each HINCRBY, in order
        days: dict[int, set[str]] = {}
        for i, ((hour, key, route, provider, model, hit), counts) in enumerate(combos):
            day = hour - hour % DAY
            days.setdefault(day, set()).add(key)
            prefix = (
                f"{(hour - day) // HOUR:02d}|{escape(route)}|{escape(provider)}|"
                f"{escape(model)}|{int(hit)}|"
            )
            for j, value in enumerate(counts):
                if value:
                    pipe.hincrby(self._hash(key, day), prefix + COUNTS[j], value)
                    sent.append((i, j))
        for day, keys in days.items():
            ttl = self._ttl(day, now)
            for key in keys:
                pipe.expire(self._hash(key, day), ttl)
            pipe.sadd(self._names(day), *sorted(keys))
            pipe.expire(self._names(day), ttl)
        results = pipe.execute(raise_on_error=False)
        refused = [
            (i, j)
            for (i, j), result in zip(sent, results, strict=False)
            if isinstance(result, Exception)
        ]
        errors = [result for result in results if isinstance(result, Exception)]
        if errors:
            unwritten: dict[int, list[int]] = {}
            for i, j in refused:
                unwritten.setdefault(i, [0] * len(COUNTS))[j] = combos[i][1][j]
            raise UsageWriteError(
                f"Redis refused {len(errors)} of {len(results)} usage commands: {errors[0]}",
                [as_entry(combos[i][0], counts) for i, counts in unwritten.items()],
            )

    def query(
        self,
        start: float,
        end: float,
        group: str = "day",
        keys: Collection[str] | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> list[UsageRow]:
        """The totals of the hours that overlap ``[start, end)``; see :class:`UsageStore`.

        One pipeline of HGETALL per key and day; with ``keys`` None, one of SMEMBERS before.
        """
        span_of(group)
        wanted = hours(start, end, self.clock(), self.retention_days)
        if not wanted:
            return []
        days = range(wanted.start - wanted.start % DAY, wanted.stop, DAY)
        if keys is None:
            pipe = self.client.pipeline(transaction=False)
            for day in days:
                pipe.smembers(self._names(day))
            found = pipe.execute(raise_on_error=False)
            pairs = [
                (key, day)
                for day, members in zip(days, found, strict=True)
                for key in _keys(members)
            ]
        else:
            pairs = [(key, day) for key in sorted(set(keys)) if is_key_name(key) for day in days]
        if not pairs:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, day in pairs:
            pipe.hgetall(self._hash(key, day))
        hashes = pipe.execute(raise_on_error=False)
        rows = (
            row
            for (key, day), fields in zip(pairs, hashes, strict=True)
            if isinstance(fields, dict)
            for row in _parse(key, day, fields)
            if row[0][0] in wanted
            and (model is None or row[0][4] == model)
            and (provider is None or row[0][3] == provider)
        )
        return summarize(_combined(rows), group)

    def close(self) -> None:
        """Nothing to do: the client belongs to the caller."""


def _parse(key: str, day: int, fields: dict[Any, Any]) -> Iterator[tuple[Combo, int, int]]:
    """(combo, count index, value) for each field of one hash that this store could have
    written; the others are skipped."""
    for raw_field, raw_value in fields.items():
        field, value = _text(raw_field), _text(raw_value)
        if field is None or value is None:
            continue
        if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS):
            continue  # negative, not a number, or not how Redis writes one
        parts = field.split("|")
        if len(parts) != 6:
            continue
        hh, route, provider, model, hit, count = parts
        if not (len(hh) == 2 and hh.isascii() and hh.isdigit() and int(hh) < 24):
            continue
        if hit not in ("0", "1") or count not in COUNTS:
            continue
        combo = (
            day + int(hh) * HOUR,
            key,
            unescape(route),
            unescape(provider),
            unescape(model),
            hit == "1",
        )
        yield combo, COUNTS.index(count), int(value)


def _combined(parsed: Iterator[tuple[Combo, int, int]]) -> Iterator[tuple[Combo, list[int]]]:
    """The parsed fields gathered per combination."""
    totals: dict[Combo, list[int]] = {}
    for combo, index, value in parsed:
        totals.setdefault(combo, [0] * len(COUNTS))[index] += value
    return iter(totals.items())
