"""The Redis client for shared state in distributed mode (breakers, provider figures)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxyapi.config import RedisConfig

# The shared client (or None) in app.extensions.
EXTENSION = "proxyapi.redis"


def connect(config: RedisConfig) -> redis.Redis:
    """Build a client for ``config.url``; no connection is made until first use.

    redis-py retries a failed command three times with backoff by default, which turns one
    unreachable Redis into seconds of delay on every request; shared state here is
    best-effort, so a command fails at once and the caller falls back. ``decode_responses``
    stays False: pybreaker's ``CircuitRedisStorage`` needs bytes.
    """
    assert config.url is not None
    return redis.Redis.from_url(
        config.url,
        socket_connect_timeout=config.timeout,
        socket_timeout=config.timeout,
        retry=Retry(NoBackoff(), 0),
    )
