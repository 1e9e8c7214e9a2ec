"""Provider-specific retries, carried out by urllib3's ``Retry`` on each provider's adapter.

Which outcomes are retried (DESIGN.md section 4): connection failures (refused, reset, connect
timeout) and HTTP 500/502/503/504/529; a 429 only when it says how long to wait (``retry-after-ms``
or ``Retry-After``) and that wait is at most ``retry_after_max``; a read timeout only with
``on_read_timeout: true`` (the provider may still be generating, and billing, the first answer).
Nothing else: 401/403, other 4xx and malformed answers are decided by the fallback loop.

The wait before retry ``n`` (1 = the first retry), with ``d(n) = min(max_delay,
base_delay * 2**(n-1))`` and "equal jitter" (half fixed, half random, so retries of many
requests spread out but never come back at once):

- ``exponential``: ``d(n)/2 + random() * d(n)/2``; up to ``max_attempts - 1`` retries.
- ``immediate``: retry 1 at once, then as ``exponential`` shifted by one (``d(n-1)``).
- ``adaptive``: as ``exponential``, driven by the provider's recent failure rate ``f`` in this
  worker (the share of failed calls among its last 20 calls in the last 60 s; 0 while there are
  fewer than 5): it may retry ``floor((max_attempts - 1) * max(0, 1 - 2f))`` times (the full
  budget when healthy, none once half of the recent calls fail) and waits ``(1 + 4f)`` times
  longer, so traffic moves to the fallback provider instead of piling onto a sick one.

A ``Retry-After`` within the cap replaces the backoff. No retry starts if its wait would end
past the request's deadline: the request falls back (or fails) instead.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import MaxRetryError, ReadTimeoutError, ResponseError
from urllib3.util import Retry, Timeout
from urllib3.util.util import reraise

from proxyapi.config import RetryConfig
from proxyapi.errors import ProxyAPIError

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

    from proxyapi.deadline import Deadline

# 529: Anthropic's "overloaded".
RETRY_STATUSES = frozenset({500, 502, 503, 504, 529})
# Smallest timeout handed to a call, so a nearly spent deadline still fails cleanly.
MIN_TIMEOUT = 0.05


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Read ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - (time.time() if now is None else now))


def allowed_retries(policy: RetryConfig, failure_rate: float) -> int:
    """How many retries one call to the provider may make now."""
    budget = policy.max_attempts - 1
    if policy.strategy != "adaptive":
        return budget
    return math.floor(budget * max(0.0, 1.0 - 2.0 * failure_rate))


def backoff(
    policy: RetryConfig,
    retry: int,
    failure_rate: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
    step = retry
    if policy.strategy == "immediate":
        if retry == 1:
            return 0.0
        step = retry - 1
    d = min(policy.max_delay, policy.base_delay * 2.0 ** (step - 1))
    wait = d / 2 + rand() * d / 2
    if policy.strategy == "adaptive":
        wait *= 1.0 + 4.0 * failure_rate
    return wait


@dataclass
class CallState:
    """What one client request has spent so far: its deadline, attempts, retries and time."""

    deadline: Deadline
    attempts: int = 0
    retries: int = 0
    upstream_seconds: float = 0.0
    # Told (status or error, seconds to wait) when a call is to be retried: tracing, when on.
    on_retry: Callable[[int | None, Exception | None, float], None] | None = None


# urllib3 calls Retry.increment() with no way to pass per-request data through requests, so
# the request's deadline and counters travel in a context variable (one per request thread).
_current: ContextVar[CallState | None] = ContextVar("proxyapi_call_state", default=None)


@contextmanager
def call_state(deadline: Deadline) -> Iterator[CallState]:
    """Make a fresh :class:`CallState` current for the calls made inside.

    A gateway error raised inside carries the attempts and upstream time spent, for the
    request's log line.
    """
    state = CallState(deadline)
    token = _current.set(state)
    try:
        yield state
    except ProxyAPIError as exc:
        exc.attempts, exc.upstream_seconds = state.attempts, state.upstream_seconds
        raise
    finally:
        _current.reset(token)


def current_call() -> CallState | None:
    """Return the current request's :class:`CallState`, if any."""
    return _current.get()


class ProviderRetry(Retry):
    """urllib3 ``Retry`` that applies a provider's ``retry`` settings and the request's deadline."""

    def __init__(
        self,
        *args: Any,
        policy: RetryConfig | None = None,
        failure_rate: Callable[[], float] | None = None,
        sleeper: Callable[[float], None] = time.sleep,
        planned: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or RetryConfig()
        self.failure_rate = failure_rate or (lambda: 0.0)
        self.sleeper = sleeper
        self.planned = planned

    @classmethod
    def for_policy(
        cls,
        policy: RetryConfig,
        failure_rate: Callable[[], float] | None = None,
        sleeper: Callable[[float], None] = time.sleep,
    ) -> ProviderRetry:
        """Build the Retry to mount on a provider's adapter."""
        return cls(
            total=policy.max_attempts - 1,
            connect=None,
            read=None,
            redirect=False,
            status=None,
            other=0,
            allowed_methods=None,  # POST is what we send; urllib3 skips it by default
            status_forcelist=RETRY_STATUSES,
            raise_on_status=False,  # hand back the last answer; the fallback loop decides
            respect_retry_after_header=True,
            policy=policy,
            failure_rate=failure_rate,
            sleeper=sleeper,
        )

    def new(self, **kw: Any) -> ProviderRetry:
        kw.setdefault("policy", self.policy)
        kw.setdefault("failure_rate", self.failure_rate)
        kw.setdefault("sleeper", self.sleeper)
        kw.setdefault("planned", 0.0)
        return super().new(**kw)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 429:
            return bool(self.total) and has_retry_after
        if status_code in RETRY_STATUSES:
            return super().is_retry(method, status_code, has_retry_after)
        return False

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> ProviderRetry:
        if isinstance(error, ReadTimeoutError) and not self.policy.on_read_timeout:
            raise reraise(type(error), error, _stacktrace)
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        retry_number = len(new.history)
        rate = self.failure_rate()

        def give_up() -> MaxRetryError:
            reason = error or ResponseError(f"gave up after HTTP {getattr(response, 'status', '')}")
            return MaxRetryError(_pool, url or "", reason)  # type: ignore[arg-type]

        if retry_number > allowed_retries(self.policy, rate):
            raise give_up()
        wait = retry_after_seconds(response.headers) if response is not None else None
        if wait is not None:
            if wait > self.policy.retry_after_max:
                raise give_up()  # too long to hold a thread: fall back instead
        else:
            wait = backoff(self.policy, retry_number, rate)
        state = current_call()
        if state is not None:
            if state.deadline.remaining() <= wait + MIN_TIMEOUT:
                raise give_up()
            state.attempts += 1
            state.retries += 1
            if state.on_retry is not None:
                state.on_retry(getattr(response, "status", None), error, wait)
        new.planned = wait
        return new

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.planned > 0:
            self.sleeper(self.planned)


class DeadlineTimeout(Timeout):
    """A urllib3 Timeout whose every attempt (retries included) ends by the deadline."""

    def __init__(self, connect: float, read: float, deadline: Deadline) -> None:
        super().__init__(connect=connect, read=read)
        self.deadline = deadline
        self.connect_limit = connect
        self.read_limit = read

    def clone(self) -> Timeout:
        # urllib3 clones the timeout for each attempt: that is where the remaining budget is
        # applied, so a retry late in the request gets only what is left.
        left = max(self.deadline.remaining(), MIN_TIMEOUT)
        return Timeout(
            connect=min(self.connect_limit, left), read=min(self.read_limit, left), total=left
        )
