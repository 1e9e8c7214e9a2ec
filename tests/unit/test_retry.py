"""Retry strategies and their schedules, with a fake random source and a fake clock."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError
from urllib3.response import HTTPResponse

from proxyapi.config import RetryConfig
from proxyapi.deadline import Deadline
from proxyapi.upstream.retry import (
    DeadlineTimeout,
    ProviderRetry,
    allowed_retries,
    backoff,
    call_state,
    retry_after_seconds,
)
from proxyapi.upstream.stats import ProviderStats, summarize


def schedule(policy: RetryConfig, rate: float = 0.0, rand: float = 0.0) -> list[float]:
    return [backoff(policy, n, rate, rand=lambda: rand) for n in range(1, 6)]


def test_exponential_schedule_with_equal_jitter() -> None:
    p = RetryConfig("exponential", max_attempts=6, base_delay=0.5, max_delay=3)
    assert schedule(p, rand=0.0) == [0.25, 0.5, 1.0, 1.5, 1.5]  # half of d(n), capped
    assert schedule(p, rand=1.0) == [0.5, 1.0, 2.0, 3.0, 3.0]  # all of d(n)
    assert allowed_retries(p, 0.9) == 5  # exponential ignores the failure rate


def test_immediate_retries_at_once_then_exponential() -> None:
    p = RetryConfig("immediate", max_attempts=6, base_delay=0.5, max_delay=3)
    assert schedule(p, rand=1.0) == [0.0, 0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("rate", "allowed", "factor"),
    [(0.0, 4, 1.0), (0.1, 3, 1.4), (0.25, 2, 2.0), (0.4, 0, 2.6), (0.5, 0, 3.0), (1.0, 0, 5.0)],
)
def test_adaptive_budget_and_backoff_follow_the_failure_rate(
    rate: float, allowed: int, factor: float
) -> None:
    p = RetryConfig("adaptive", max_attempts=5, base_delay=1, max_delay=8)
    assert allowed_retries(p, rate) == allowed
    assert backoff(p, 1, rate, rand=lambda: 1.0) == pytest.approx(1.0 * factor)
    assert backoff(p, 3, rate, rand=lambda: 1.0) == pytest.approx(4.0 * factor)


def test_failure_rate_window_with_fake_clock() -> None:
    now = [1000.0]
    stats = ProviderStats(clock=lambda: now[0])
    for ok in (True, False, True, False):
        stats.record(ok, 0.1, 0)
    assert stats.failure_rate() == 0.0  # fewer than 5 calls: no verdict yet
    stats.record(False, 0.1, 0)
    assert stats.failure_rate() == pytest.approx(3 / 5)
    now[0] += 61  # all of them left the 60 s window
    stats.record(True, 0.1, 0)
    assert stats.failure_rate() == 0.0
    for _ in range(30):
        stats.record(False, 0.1, 0)
    assert stats.failure_rate() == 1.0  # only the last 20 count
    snap = summarize([stats.raw()])
    assert snap["requests"] == 36 and snap["errors"] == 33 and snap["consecutive_failures"] == 30


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": formatdate(1_000_010, usegmt=True)}, 10.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers, now=1_000_000) == expected


def response(status: int, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(body=b"", status=status, headers=headers or {}, preload_content=False)


def retry(policy: RetryConfig, rate: float = 0.0) -> ProviderRetry:
    return ProviderRetry.for_policy(policy, failure_rate=lambda: rate, sleeper=lambda s: None)


def walk(r: ProviderRetry, **event: object) -> list[float]:
    """Increment until urllib3 would give up; return the planned waits."""
    waits = []
    while True:
        try:
            r = r.increment(method="POST", url="/v1/x", **event)  # type: ignore[arg-type]
        except (MaxRetryError, ReadTimeoutError):
            return waits
        waits.append(r.planned)


POLICY = RetryConfig("exponential", max_attempts=4, base_delay=1, max_delay=8, retry_after_max=5)


def test_statuses_that_are_retried() -> None:
    r = retry(POLICY)
    for status in (500, 502, 503, 504):
        assert r.is_retry("POST", status)
    for status in (400, 401, 403, 404, 413, 422):
        assert not r.is_retry("POST", status)
    assert not r.is_retry("POST", 429, has_retry_after=False)
    assert r.is_retry("POST", 429, has_retry_after=True)


def test_status_retries_use_the_budget() -> None:
    assert len(walk(retry(POLICY), response=response(503))) == 3


def test_retry_after_within_cap_is_waited_and_beyond_cap_is_not() -> None:
    assert walk(retry(POLICY), response=response(429, {"Retry-After": "2"})) == [2.0, 2.0, 2.0]
    assert walk(retry(POLICY), response=response(429, {"Retry-After": "30"})) == []


def test_connection_errors_and_resets_retry_but_read_timeouts_do_not() -> None:
    refused = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert len(walk(retry(POLICY), error=refused)) == 3
    reset = ProtocolError("Connection aborted.", ConnectionResetError())
    assert len(walk(retry(POLICY), error=reset)) == 3
    timeout = ReadTimeoutError(None, "/v1/x", "read timed out")  # type: ignore[arg-type]
    assert walk(retry(POLICY), error=timeout) == []
    on = RetryConfig(max_attempts=3, on_read_timeout=True)
    assert len(walk(retry(on), error=timeout)) == 2


def test_adaptive_gives_up_on_a_sick_provider() -> None:
    adaptive = RetryConfig("adaptive", max_attempts=4, base_delay=1, max_delay=8)
    assert len(walk(retry(adaptive, rate=0.0), response=response(503))) == 3
    assert len(walk(retry(adaptive, rate=0.2), response=response(503))) == 1
    assert walk(retry(adaptive, rate=0.6), response=response(503)) == []


def test_no_retry_whose_wait_ends_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("proxyapi.deadline.time.monotonic", lambda: clock[0])

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    slow = RetryConfig(max_attempts=5, base_delay=4, max_delay=4)
    r = ProviderRetry.for_policy(slow, sleeper=sleep)
    with call_state(Deadline.after(100)) as state:
        assert len(walk(r, response=response(503))) == 4
        assert state.retries == 4 and state.attempts == 4
    with call_state(Deadline.after(5)):
        waits = []
        while True:  # as urllib3 does: increment, then sleep the planned wait
            try:
                r = r.increment(method="POST", url="/v1/x", response=response(503))
            except MaxRetryError:
                break
            waits.append(r.planned)
            r.sleep()
        # Waits are 2-4 s: one or two fit in 5 s, never one that would end past the deadline.
        assert 1 <= len(waits) <= 2 and clock[0] < 5


def test_deadline_timeout_gives_each_attempt_only_what_is_left() -> None:
    t = DeadlineTimeout(connect=5, read=60, deadline=Deadline.after(2))
    clone = t.clone()
    assert clone.connect_timeout <= 2 and clone.total is not None and clone.total <= 2
    roomy = DeadlineTimeout(connect=5, read=60, deadline=Deadline.after(500)).clone()
    assert roomy.connect_timeout == 5


def test_summaries_merge_workers() -> None:
    a, b = ProviderStats(), ProviderStats()
    for _ in range(3):
        a.record(True, 0.010, 1)
    b.record(False, 0.100, 0)
    b.record(False, 0.100, 2)
    merged = summarize([a.raw(), b.raw()])
    assert (merged["requests"], merged["errors"], merged["retries"]) == (5, 2, 5)
    assert merged["error_rate"] == 0.4 and merged["consecutive_failures"] == 2
    assert merged["latency_ms"] == {"avg": 46.0, "p95": 100.0}
    assert merged["recent_failure_rate"] == 0.4
