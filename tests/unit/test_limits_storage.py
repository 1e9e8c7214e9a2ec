"""The Redis storage that reports the moving window with the hit, against a real Redis."""

from __future__ import annotations

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from proxyapi import limits_storage
from proxyapi.limits_storage import ReportingRedisStorage, reporting_uri


def test_reported_windows_match_limits_own(redis_url: str) -> None:
    reporting = storage_from_string(reporting_uri(redis_url, "moving-window"))
    assert isinstance(reporting, ReportingRedisStorage)
    stock = MovingWindowRateLimiter(storage_from_string(redis_url))
    ours = MovingWindowRateLimiter(reporting)
    item = parse("3/minute")
    for admitted, expected_remaining in ((True, 2), (True, 1), (True, 0), (False, 0)):
        limits_storage.begin_request()
        assert ours.hit(item, "k") is admitted
        reported = ours.get_window_stats(item, "k")  # answered from the hit
        fresh = stock.get_window_stats(item, "k")  # asked from Redis
        assert reported.remaining == fresh.remaining == expected_remaining
        assert abs(reported.reset_time - fresh.reset_time) < 1


def test_a_reported_window_is_used_once_and_not_across_requests(redis_url: str) -> None:
    storage = storage_from_string(reporting_uri(redis_url, "moving-window"))
    strategy = MovingWindowRateLimiter(storage)
    item = parse("5/minute")
    limits_storage.begin_request()
    strategy.hit(item, "once")
    key = storage.prefixed_key(item.key_for("once"))
    assert key in limits_storage._recent.windows
    strategy.get_window_stats(item, "once")
    assert key not in limits_storage._recent.windows
    strategy.hit(item, "once")
    limits_storage.begin_request()
    assert limits_storage._recent.windows == {}


def test_only_redis_under_moving_window_is_rewritten() -> None:
    assert reporting_uri("redis://h:6379/0", "moving-window") == "proxyapi+redis://h:6379/0"
    assert reporting_uri("rediss://h:6379/0", "fixed-window") == "rediss://h:6379/0"
    assert reporting_uri("memory://", "moving-window") == "memory://"
