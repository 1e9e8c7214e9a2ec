"""Response caching: the cacheability rule, client controls, single flight and storing.

Client controls are the usual ``Cache-Control`` request directives: ``no-cache`` (do not answer
from the cache; fetch and refresh the entry), ``no-store`` (do not store this answer) and
``max-age=N`` (only accept an entry younger than N seconds). The answer says what happened in
``X-Cache``: ``HIT``, ``MISS`` (fetched; stored unless ``no-store``), ``REFRESH`` (fetched
because of ``no-cache``, and stored) or ``BYPASS`` (not cacheable, or caching is off for the
route). Only complete 2xx answers are stored; streams are answered from the cache (replayed)
but a streamed answer is not stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import RequestCacheControl

from proxyapi.cache.flight import SingleFlight, wait_until
from proxyapi.cache.keys import SHARED_SCOPE, cache_key, cacheable
from proxyapi.cache.store import CacheStore
from proxyapi.config import CacheConfig
from proxyapi.deadline import Deadline
from proxyapi.jsonio import is_count
from proxyapi.providers.base import Operation, Usage
from proxyapi.upstream import Answer

CATEGORY = "responses"
LOCKS = "locks"

HIT, MISS, REFRESH, BYPASS = "HIT", "MISS", "REFRESH", "BYPASS"


@dataclass(frozen=True)
class Plan:
    """What the cache may do for one request."""

    key: str | None  # None: not cacheable, or caching is off for the route
    read: bool = False
    write: bool = False
    max_age: int | None = None


@dataclass(frozen=True)
class Served:
    """An answer and how the cache took part in it."""

    answer: Answer
    x_cache: str
    age: int | None = None


# The counts of a Usage, in the order a cached answer keeps them (the model goes by the
# answer: a hit is recorded for the model the request resolved to).
_COUNTS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)


def _pack(answer: Answer) -> dict[str, Any]:
    usage = answer.usage
    return {
        "body": answer.body,
        "provider": answer.provider,
        "usage": [getattr(usage, name) for name in _COUNTS] if usage else None,
    }


def _unpack(value: Any) -> Answer | None:
    """The answer :func:`_pack` stored, or None for any other shape (a shared store may hold
    anything)."""
    if not isinstance(value, dict) or set(value) != {"body", "provider", "usage"}:
        return None
    body, provider, usage = value["body"], value["provider"], value["usage"]
    if not isinstance(body, bytes) or not isinstance(provider, str) or len(provider) > 64:
        return None
    # Three counts: an entry written before the cache and reasoning detail was kept.
    if usage is not None and not (
        isinstance(usage, list)
        and len(usage) in (3, len(_COUNTS))
        and all(is_count(n) and n >= 0 for n in usage)
    ):
        return None
    return Answer(provider, body, 0, Usage(*usage) if usage else None)


class ResponseCache:
    """Answers cacheable requests from a :class:`CacheStore`."""

    def __init__(self, store: CacheStore, config: CacheConfig, atomic_add: bool) -> None:
        self.store = store
        self.config = config
        # Only an atomic add (Redis) makes a lock other workers can trust.
        self.atomic_add = atomic_add
        self.flight = SingleFlight()

    def plan(
        self,
        op: Operation,
        body: Mapping[str, Any],
        path: str,
        tenant: str,
        targets: Iterable[tuple[str, ...]],
        control: RequestCacheControl,
    ) -> Plan:
        """Decide what the cache may do for this request."""
        mode = self.config.routes.get(path, self.config.responses)
        if not cacheable(op, body, mode):
            return Plan(None)
        scope = SHARED_SCOPE if self.config.scope == "shared" else tenant
        return Plan(
            key=cache_key(op, body, targets, scope),
            read=not control.no_cache,
            write=not control.no_store,
            max_age=control.max_age,
        )

    def lookup(self, plan: Plan, quiet: bool = False) -> Served | None:
        """Return the cached answer for ``plan``, if it may be used."""
        if plan.key is None or not plan.read:
            return None
        entry = self.store.get(CATEGORY, plan.key, quiet=quiet)
        if entry is None:
            return None
        age = entry.age(self.store.clock())
        if plan.max_age is not None and age > plan.max_age:
            return None
        answer = _unpack(entry.value)
        return Served(answer, HIT, int(age)) if answer is not None else None

    def serve(self, plan: Plan, fetch: Callable[[], Answer], deadline: Deadline) -> Served:
        """Answer from the cache, or fetch once (per key, across concurrent requests) and store."""
        if plan.key is None:
            return Served(fetch(), BYPASS)
        cached = self.lookup(plan)
        if cached is not None:
            return cached
        with self.flight.lead(plan.key) as leader_done:
            if leader_done is not None:
                # Another request in this worker is fetching the same answer: wait for it.
                leader_done.wait(self._wait(deadline))
                cached = self.lookup(plan)
                if cached is not None:
                    return cached
            elif self.atomic_add:
                cached = self._across_workers(plan, deadline)
                if cached is not None:
                    return cached
            try:
                answer = fetch()
                if plan.write:
                    self.store.set(CATEGORY, plan.key, _pack(answer))
            finally:
                if leader_done is None and self.atomic_add:
                    self.store.delete(LOCKS, plan.key)
        return Served(answer, MISS if plan.read else REFRESH)

    def _across_workers(self, plan: Plan, deadline: Deadline) -> Served | None:
        """Take the cross-worker lock, or wait for whoever holds it to store the answer."""
        key = plan.key
        assert key is not None
        hold = math.ceil(self.config.single_flight_timeout)
        if self.store.add(LOCKS, key, 1, ttl=hold):
            return None
        found: list[Served] = []

        def ready() -> bool:
            served = self.lookup(plan, quiet=True)
            if served is not None:
                found.append(served)
                return True
            # The other call ended without storing an answer: stop waiting.
            return self.store.get(LOCKS, key, quiet=True) is None

        wait_until(ready, self._wait(deadline))
        return found[0] if found else None

    def _wait(self, deadline: Deadline) -> float:
        return max(0.0, min(self.config.single_flight_timeout, deadline.remaining()))
