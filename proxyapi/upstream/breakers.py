"""One pybreaker circuit breaker per provider, in process memory or shared through Redis.

Embedded mode keeps breaker state in this process (exact with one worker). With a Redis URL
the state lives in Redis (``CircuitRedisStorage``, namespace ``proxyapi:breaker:<provider>``),
so a circuit opened through one worker is open on every worker and host (within
``STATE_CACHE_SECONDS``, 0.2 s). Its storage talks to Redis when it is built, so it is built
lazily, on first use: a Redis outage at boot must not stop the gateway. Until Redis answers, a
per-process breaker stands in (and Redis is asked again every ``REDIS_RETRY`` seconds); after
that, pybreaker itself falls back to "closed" on Redis errors, i.e. it fails open.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pybreaker
import redis

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig

log = logging.getLogger(__name__)

# Redis keys: <namespace>:breaker:<provider>:... (the deployment's namespace first).
NAMESPACE = "breaker"
# How long to wait before asking an unreachable Redis again for a breaker's storage.
REDIS_RETRY = 5.0
# How long a worker trusts the breaker state it last read from Redis. pybreaker reads the state
# on every call; caching it this briefly halves the Redis round trips of a successful call, and
# a circuit opened elsewhere reaches this worker within this time.
STATE_CACHE_SECONDS = 0.2

CircuitBreakerError = pybreaker.CircuitBreakerError


class _StateListener(pybreaker.CircuitBreakerListener):
    """Reports state changes (also those another worker made, once this one notices them)."""

    def __init__(self, report: Callable[[str, str], None]) -> None:
        self.report = report

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self.report(cb.name or "", new_state.name)


class CachedRedisStorage(pybreaker.CircuitRedisStorage):
    """``CircuitRedisStorage`` that reuses what it read for ``STATE_CACHE_SECONDS``.

    pybreaker reads the state on every call and writes the failure counter back to 0 on every
    success: two Redis round trips per call of a healthy provider. pybreaker has no option for
    either, so this storage reads the state and the failure counter together (one round trip,
    at most every ``STATE_CACHE_SECONDS``) and skips the write of a 0 that is already there by
    what it last read or wrote. A failure another worker counts meanwhile is reset by this
    worker's next success once it has read it, within ``STATE_CACHE_SECONDS``: the staleness
    the state already has. Everything else (the counters, opened_at, the fallback to "closed"
    on Redis errors) is pybreaker's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._cached: tuple[float, str] | None = None
        # Whether the failure counter in Redis is 0, by this worker's last read or write.
        self._counter_zero = False
        super().__init__(*args, **kwargs)

    @property
    def state(self) -> str:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < STATE_CACHE_SECONDS:
            return cached[1]
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._namespace("state"))
            pipe.get(self._namespace("fail_counter"))
            state_bytes, counter = pipe.execute()
        except redis.RedisError:
            # pybreaker's own read, with its fallback and its log line.
            return str(pybreaker.CircuitRedisStorage.state.fget(self))  # type: ignore[attr-defined]
        if state_bytes is None:
            # Missing (expired, flushed): pybreaker's read re-initializes it.
            state = str(pybreaker.CircuitRedisStorage.state.fget(self))  # type: ignore[attr-defined]
            self._counter_zero = False
        else:
            state = state_bytes.decode("utf-8")
            self._counter_zero = counter is not None and int(counter) == 0
        self._cached = (time.monotonic(), state)
        return state

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)  # type: ignore[attr-defined]
        self._cached = (time.monotonic(), state)
        # A change of state is rare: the reset that comes with it always goes to Redis.
        self._counter_zero = False

    def increment_counter(self) -> None:
        self._counter_zero = False
        super().increment_counter()

    def reset_counter(self) -> None:
        if self._counter_zero:
            return
        super().reset_counter()
        self._counter_zero = True


class Breakers:
    """The breakers of every provider, built on first use in each process."""

    def __init__(
        self,
        providers: tuple[ProviderConfig, ...],
        client: redis.Redis | None = None,
        on_state: Callable[[str, str], None] | None = None,
        namespace: str = "proxyapi",
    ) -> None:
        self.providers = {p.name: p for p in providers}
        self.namespace = f"{namespace}:{NAMESPACE}"
        self._listeners = [_StateListener(on_state)] if on_state is not None else []
        self.shared = client is not None
        # decode_responses must stay False on this client for CircuitRedisStorage.
        self._redis = client
        self._lock = threading.Lock()
        self._shared: dict[str, pybreaker.CircuitBreaker] = {}
        self._local: dict[str, pybreaker.CircuitBreaker] = {}
        self._next_try: dict[str, float] = {}

    def _new(self, provider: ProviderConfig, storage: Any = None) -> pybreaker.CircuitBreaker:
        return pybreaker.CircuitBreaker(
            fail_max=provider.breaker.fail_max,
            reset_timeout=provider.breaker.reset_timeout,
            state_storage=storage,
            name=provider.name,
            # Keep the provider's own error: the fallback loop needs to know what failed.
            throw_new_error_on_trip=False,
            listeners=self._listeners,
        )

    def get(self, name: str) -> pybreaker.CircuitBreaker:
        """Return the breaker of provider ``name``."""
        breaker = self._shared.get(name) if self._redis is not None else self._local.get(name)
        if breaker is not None:
            return breaker
        provider = self.providers[name]
        if self._redis is not None and time.monotonic() >= self._next_try.get(name, 0.0):
            with self._lock:
                if name in self._shared:
                    return self._shared[name]
                try:
                    storage = CachedRedisStorage(
                        pybreaker.STATE_CLOSED, self._redis, namespace=f"{self.namespace}:{name}"
                    )
                except redis.RedisError as exc:
                    self._next_try[name] = time.monotonic() + REDIS_RETRY
                    log.warning(
                        "breaker of provider %s: Redis unavailable (%s); using this worker's "
                        "own breaker until it answers",
                        name,
                        exc.__class__.__name__,
                    )
                else:
                    self._shared[name] = self._new(provider, storage)
                    return self._shared[name]
        with self._lock:
            if name not in self._local:
                self._local[name] = self._new(provider)
            return self._local[name]

    def seconds_until_half_open(self, name: str) -> float | None:
        """Seconds until an open breaker lets a trial call through; None if not open."""
        breaker = self.get(name)
        if breaker.current_state != pybreaker.STATE_OPEN:
            return None
        opened_at = breaker._state_storage.opened_at  # pybreaker has no public accessor
        if opened_at is None:
            return 0.0
        reopen = opened_at.timestamp() + breaker.reset_timeout
        return max(0.0, reopen - datetime.now(UTC).timestamp())

    def describe(self, name: str) -> dict[str, Any]:
        """Return a provider's breaker as plain data for /v1/providers."""
        breaker = self.get(name)
        wait = self.seconds_until_half_open(name)
        return {
            "state": breaker.current_state,
            "fail_counter": breaker.fail_counter,
            "fail_max": breaker.fail_max,
            "reset_timeout": breaker.reset_timeout,
            "half_open_in": math.ceil(wait) if wait is not None else None,
            "shared": breaker._state_storage.name == "redis",
        }
