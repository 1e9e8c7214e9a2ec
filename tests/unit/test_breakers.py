"""Breakers shared through a real Redis: one worker's open circuit is every worker's."""

from __future__ import annotations

import time

import pybreaker
import pytest
import redis

from proxyapi.config import BreakerConfig, ProviderConfig, RedisConfig
from proxyapi.redis_client import connect
from proxyapi.upstream.breakers import STATE_CACHE_SECONDS, Breakers

PROVIDER = ProviderConfig(
    name="up",
    type="openai",
    base_url="http://h/v1",
    models=("m",),
    breaker=BreakerConfig(fail_max=2, reset_timeout=30),
)


class Boom(Exception):
    pass


def fail(breaker: pybreaker.CircuitBreaker) -> None:
    with pytest.raises((Boom, pybreaker.CircuitBreakerError)), breaker.calling():
        raise Boom


def test_two_workers_share_one_breaker(redis_url: str) -> None:
    worker_a = Breakers((PROVIDER,), redis.Redis.from_url(redis_url))
    worker_b = Breakers((PROVIDER,), redis.Redis.from_url(redis_url))
    assert worker_b.get("up").current_state == "closed"
    fail(worker_a.get("up"))
    fail(worker_a.get("up"))
    assert worker_a.get("up").current_state == "open"
    time.sleep(STATE_CACHE_SECONDS + 0.05)  # worker B trusted its last read this long
    with pytest.raises(pybreaker.CircuitBreakerError), worker_b.get("up").calling():
        pass
    wait = worker_b.seconds_until_half_open("up")
    assert wait is not None and 28 <= wait <= 30
    described = worker_b.describe("up")
    assert described["state"] == "open" and described["shared"] is True


def test_consecutive_failures_are_counted_across_workers(redis_url: str) -> None:
    worker_a = Breakers((PROVIDER,), redis.Redis.from_url(redis_url))
    worker_b = Breakers((PROVIDER,), redis.Redis.from_url(redis_url))
    fail(worker_a.get("up"))
    fail(worker_b.get("up"))  # the second consecutive failure, seen by another worker
    time.sleep(STATE_CACHE_SECONDS + 0.05)
    assert worker_a.get("up").current_state == "open"


def test_redis_down_falls_back_to_a_local_breaker() -> None:
    dead = connect(RedisConfig(url="redis://127.0.0.1:1/0", timeout=0.1))
    breakers = Breakers((PROVIDER,), dead)
    breaker = breakers.get("up")
    with breaker.calling():
        pass  # still usable
    assert breakers.describe("up")["shared"] is False


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_a_healthy_provider_costs_no_redis_write_per_call(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    breaker = Breakers((PROVIDER,), redis.Redis.from_url(redis_url)).get("up")
    with breaker.calling():
        pass  # the first success may write the 0 it has not seen yet
    sets, gets = _calls(client, "set"), _calls(client, "get")
    for _ in range(20):
        with breaker.calling():
            pass
    assert _calls(client, "set") == sets  # no reset of a counter already at 0
    # At most one read of state and counter per STATE_CACHE_SECONDS (two GETs, one trip).
    assert _calls(client, "get") - gets <= 2 * (1 + int(0.5 / STATE_CACHE_SECONDS))


def test_a_failure_elsewhere_is_reset_by_the_next_success_here(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    worker_a = Breakers((PROVIDER,), redis.Redis.from_url(redis_url))
    worker_b = Breakers((PROVIDER,), redis.Redis.from_url(redis_url))
    with worker_a.get("up").calling():
        pass
    fail(worker_b.get("up"))
    assert client.get("proxyapi:breaker:up:pybreaker:fail_counter") == b"1"
    time.sleep(STATE_CACHE_SECONDS + 0.05)  # worker A reads the counter with the state
    with worker_a.get("up").calling():
        pass
    assert client.get("proxyapi:breaker:up:pybreaker:fail_counter") == b"0"
    fail(worker_b.get("up"))  # one failure after a success: not two in a row
    time.sleep(STATE_CACHE_SECONDS + 0.05)
    assert worker_a.get("up").current_state == "closed"
