"""A key's rate limit and its token budget checked in one Redis round trip (a real Redis)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import responses
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key
from tests.unit.test_ratelimit import CHAT, URL, answer, post

CAPPED = {**CHAT, "max_tokens": 10}  # reserves 21 tokens: an estimated 11 of prompt + 10


def make(redis_url: str, **key: Any) -> FlaskClient:
    return create_app(
        {
            "auth": {"keys": [{"name": "k", "sha256": hash_key("k"), **key}]},
            "providers": [
                {"name": "up", "base_url": URL, "models": ["m"], "retry": {"max_attempts": 1}}
            ],
            "redis": {"url": redis_url, "namespace": "adm"},
            "rate_limits": {"failed_auth": "10000/minute"},
        }
    ).test_client()


@pytest.fixture
def upstream() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{URL}/chat/completions", json=answer())
        yield mock


def scripts_run(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def tokens_counted(client: redis.Redis) -> int:
    return sum(int(client.get(k) or 0) for k in client.scan_iter("{adm:tokens:k}:60:*"))


def test_limit_and_budget_are_one_round_trip_with_both_headers(
    upstream: Any, redis_url: str
) -> None:
    client = make(redis_url, limits=["5/minute"], token_limits=["1000/minute"])
    server = redis.Redis.from_url(redis_url)
    post(client, "k", CAPPED)  # loads the scripts
    before = scripts_run(server)
    answers = [post(client, "k", CAPPED) for _ in range(3)]
    # Per request: the limit's hit with the reservation (one script), and the settle.
    assert scripts_run(server) - before == 2 * 3
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["3", "2", "1"]
    assert answers[0].headers["X-RateLimit-Limit"] == "5"
    # 1000 - 10 used by each earlier request - 21 held by this one.
    assert [r.headers["X-RateLimit-Remaining-Tokens"] for r in answers] == ["969", "959", "949"]
    assert tokens_counted(server) == 4 * 10  # all settled to their usage
    post(client, "k", CAPPED)
    refused = post(client, "k", CAPPED)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limit_exceeded"
    assert tokens_counted(server) == 5 * 10  # the refused one reserved nothing
    assert len(upstream.calls) == 5


def test_a_request_refused_before_its_reservation_still_counts_and_gets_429_first(
    upstream: Any, redis_url: str
) -> None:
    client = make(redis_url, limits=["2/minute"], token_limits=["1000/minute"])
    bad = post(client, "k", {"model": "m"})  # no messages
    assert bad.status_code == 400 and bad.headers["X-RateLimit-Remaining"] == "1"
    unknown = post(client, "k", {**CHAT, "model": "nope"})
    assert unknown.status_code == 404 and unknown.headers["X-RateLimit-Remaining"] == "0"
    # Limited now: a bad body gets the limit's 429, as when limits ran before the view.
    again = post(client, "k", {"model": "m"})
    assert again.status_code == 429 and again.json["error"]["code"] == "rate_limit_exceeded"
    assert post(client, "k", CAPPED).status_code == 429
    assert len(upstream.calls) == 0
    assert tokens_counted(redis.Redis.from_url(redis_url)) == 0


def test_a_later_limit_refusing_gives_the_reservation_back(upstream: Any, redis_url: str) -> None:
    # The one-second limit is hit first (and carries the reservation), the minute one second.
    client = make(
        redis_url, limits=["100/second", "1/minute"], token_limits=["1000/minute"], max_concurrent=1
    )
    server = redis.Redis.from_url(redis_url)
    assert post(client, "k", CAPPED).status_code == 200
    refused = post(client, "k", CAPPED)
    assert refused.status_code == 429 and "1 per 1 minute" in refused.json["error"]["message"]
    assert tokens_counted(server) == 10  # the first request's usage, nothing held for the second
    assert server.zcard("{adm:tokens:k}:conc") == 0  # its concurrency slot is free again
    assert len(upstream.calls) == 1


def test_a_key_without_a_budget_is_checked_before_the_view(upstream: Any, redis_url: str) -> None:
    client = make(redis_url, limits=["1/minute"])
    assert post(client, "k", CAPPED).status_code == 200
    assert post(client, "k", {"model": "m"}).status_code == 429  # before the body is read
