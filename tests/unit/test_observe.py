"""Per-request records, their log line and metrics, /metrics and /health/ready, in one process."""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.config import ConfigError
from proxyapi.logs import JsonFormatter, RequestIdFilter
from tests.fakes.redis_server import free_port

A, B = "http://a.test/v1", "http://b.test/v1"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
USER = {"Authorization": "Bearer user-key"}
ADMIN = {"Authorization": "Bearer admin-key"}


def make(**extra: Any) -> FlaskClient:
    def provider(name: str, url: str, priority: int) -> dict[str, Any]:
        return {
            "name": name,
            "base_url": url,
            "models": ["gpt-4o-mini", "gpt-4o-*"],
            "priority": priority,
            "retry": {"max_attempts": 2, "base_delay": 0, "max_delay": 0},
            "breaker": {"fail_max": 2, "reset_timeout": 60},
        }

    config: dict[str, Any] = {
        "auth": {
            "keys": [
                {"name": "user", "sha256": hash_key("user-key")},
                {"name": "ops", "sha256": hash_key("admin-key"), "admin": True},
            ]
        },
        "cache": {"responses": "off"},
        "providers": [provider("a", A, 1), provider("b", B, 2)],
        **extra,
    }
    client = create_app(config).test_client()
    # Close every response, as a WSGI server does: the record is logged and measured then.
    client.open = functools.partial(client.open, buffered=True)  # type: ignore[method-assign]
    return client


def scrape(
    client: FlaskClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.data
    assert resp.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.get_data(as_text=True))
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def access_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Read the access log lines written so far, as JSON objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(["user-key", "admin-key"]))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("proxyapi.access")
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


@responses.activate
def test_requests_and_tokens_are_counted_with_bounded_labels() -> None:
    responses.post(f"{A}/chat/completions", json=ANSWER)
    client = make()
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=CHAT, headers=USER).status_code == 200
    glob = {**CHAT, "model": "gpt-4o-2024-client-typed"}
    assert client.post("/v1/chat/completions", json=glob, headers=USER).status_code == 200
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 401
    unknown = {**CHAT, "model": "made-up-model"}
    assert client.post("/v1/chat/completions", json=unknown, headers=USER).status_code == 404
    samples = scrape(client)
    route = "completions.chat_completions"
    total = "proxyapi_requests_total"
    assert value(samples, total, route=route, status="200") == 4
    assert value(samples, total, route=route, status="401") == 1
    assert value(samples, total, route=route, status="404") == 1
    tokens = "proxyapi_tokens_total"
    assert value(samples, tokens, key="user", model="gpt-4o-mini", kind="prompt") == 21
    assert value(samples, tokens, key="user", model="gpt-4o-mini", kind="completion") == 9
    assert value(samples, tokens, key="user", model="gpt-4o-*", kind="prompt") == 7
    # No label anywhere carries what the client typed.
    assert not [k for k in samples if "gpt-4o-2024-client-typed" in str(k) or "made-up" in str(k)]
    ok = "proxyapi_upstream_requests_total"
    assert value(samples, ok, provider="a", outcome="ok") == 4
    assert value(samples, "proxyapi_request_duration_seconds_count", route=route) == 6
    assert value(samples, "proxyapi_gateway_overhead_seconds_count", route=route) == 4
    assert value(samples, "proxyapi_requests_in_flight") == 1  # the scrape itself


@responses.activate
def test_retries_fallbacks_breakers_and_outcomes() -> None:
    responses.post(f"{A}/chat/completions", status=503)
    responses.post(f"{B}/chat/completions", json=ANSWER)
    client = make()
    for _ in range(3):  # a fails twice per request (one retry): its breaker opens
        resp = client.post("/v1/chat/completions", json=CHAT, headers=USER)
        assert resp.headers["X-ProxyAPI-Provider"] == "b"
    samples = scrape(client)
    up = "proxyapi_upstream_requests_total"
    assert value(samples, up, provider="a", outcome="failure") == 2
    assert value(samples, up, provider="a", outcome="breaker_open") == 1
    assert value(samples, up, provider="b", outcome="ok") == 3
    assert value(samples, "proxyapi_upstream_retries_total", provider="a") == 2
    # Moving on past an open breaker is counted as breaker_open, not as a fallback.
    assert value(samples, "proxyapi_fallbacks_total", provider="a") == 2
    assert value(samples, "proxyapi_breaker_state", provider="a") == 2
    assert value(samples, "proxyapi_breaker_state", provider="b") == 0


@responses.activate
def test_access_line_has_every_field_and_no_secret(
    access_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    responses.post(f"{A}/chat/completions", json=ANSWER)
    client = make()
    resp = client.post(
        "/v1/chat/completions", json=CHAT, headers={**USER, "X-Request-ID": "req-42"}
    )
    assert resp.headers["X-Request-ID"] == "req-42"
    assert float(resp.headers["X-ProxyAPI-Overhead-Ms"]) >= 0
    client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
    lines = access_lines()
    ok, refused = lines
    assert ok["request_id"] == "req-42" and ok["message"].startswith("POST /v1/chat/completions")
    assert ok | {"total_ms": 0, "upstream_ms": 0, "overhead_ms": 0} == ok | {
        "route": "completions.chat_completions",
        "key": "user",
        "model": "gpt-4o-mini",
        "provider": "a",
        "status": 200,
        "attempts": 1,
        "cache": "BYPASS",
        "stream": False,
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_ms": 0,
        "upstream_ms": 0,
        "overhead_ms": 0,
    }
    assert ok["total_ms"] >= ok["upstream_ms"] > 0 and ok["overhead_ms"] >= 0
    assert refused["status"] == 401 and refused["key"] == "-" and refused["provider"] == "-"
    assert "nope" not in json.dumps(lines)


def test_metrics_can_require_an_admin_key() -> None:
    client = make(metrics={"require_admin": True})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=USER).status_code == 403
    assert "proxyapi_requests_total" in str(scrape(client, **ADMIN))
    assert make().get("/metrics").status_code == 200  # public by default


def test_health_endpoints_need_no_key_and_report_readiness() -> None:
    client = make()
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json
    assert body["status"] == "ready"
    assert body["checks"] == {"redis": "not configured", "managed_keys": "ok"}
    assert body["breakers"] == {"a": "closed", "b": "closed"}
    assert body["config"] == {"source": "dict", "providers": 2, "keys": 2}


def test_readiness_fails_only_when_every_request_would_be_refused() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    fail_open = make(redis={"url": dead, "timeout": 0.2}, rate_limits={"per_key": ["5/minute"]})
    body = fail_open.get("/health/ready").json
    assert body["status"] == "ready"
    assert body["checks"] == {
        "redis": "unreachable",
        "rate_limit_storage": "unreachable",
        "managed_keys": "unreachable",  # their store is that Redis too: known keys still work
    }
    closed = make(
        redis={"url": dead, "timeout": 0.2},
        rate_limits={"per_key": ["5/minute"], "on_storage_error": "fail-closed"},
    )
    resp = closed.get("/health/ready")
    assert resp.status_code == 503 and resp.json["status"] == "not ready"


@responses.activate
def test_a_stream_is_measured_when_it_ends(
    access_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}],
    }
    usage = {**chunk, "choices": [], "usage": ANSWER["usage"]}
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in (chunk, usage)) + "data: [DONE]\n\n"
    responses.post(f"{A}/chat/completions", body=sse, content_type="text/event-stream")
    client = make()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = client.post("/v1/chat/completions", json=body, headers=USER)
    assert resp.status_code == 200 and b"[DONE]" in resp.data
    samples = scrape(client)
    assert value(samples, "proxyapi_streams_in_flight") == 0
    assert value(samples, "proxyapi_upstream_first_token_seconds_count", provider="a") == 1
    tokens = "proxyapi_tokens_total"
    assert value(samples, tokens, key="user", model="gpt-4o-mini", kind="completion") == 3
    (line,) = [x for x in access_lines() if x["route"] == "completions.chat_completions"]
    assert line["stream"] is True and line["prompt_tokens"] == 7 and line["provider"] == "a"


@responses.activate
def test_cache_results_and_limit_rejections_are_counted() -> None:
    responses.post(f"{A}/chat/completions", json=ANSWER)
    client = make(
        cache={"responses": "deterministic", "backend": "simple"},
        rate_limits={"per_key": ["3/minute"]},
    )
    for _ in range(4):
        client.post("/v1/chat/completions", json={**CHAT, "temperature": 0}, headers=USER)
    samples = scrape(client)
    lookups = "proxyapi_cache_lookups_total"
    assert value(samples, lookups, category="responses", result="miss") == 1
    assert value(samples, lookups, category="responses", result="hit") == 2
    assert value(samples, "proxyapi_ratelimit_rejections_total", scope="key") == 1
    assert value(samples, "proxyapi_upstream_requests_total", provider="a", outcome="ok") == 1


@pytest.mark.parametrize(("hops", "client"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_forwarded_address_is_trusted_only_behind_configured_proxies(
    hops: int, client: str, access_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    app = make(server={"trusted_proxies": hops})
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    app.get("/v1/models", headers={**USER, **forwarded}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    (line,) = access_lines()
    assert line["client"] == client and line["status"] == 200


def test_trusted_proxies_must_be_a_count() -> None:
    with pytest.raises(ConfigError, match=r"server.trusted_proxies .* got -1"):
        make(server={"trusted_proxies": -1})
