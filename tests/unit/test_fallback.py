"""The fallback loop and breakers (DESIGN.md section 4), with upstreams mocked by responses."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key

A, B = "http://a.test/v1", "http://b.test/v1"
HEADERS = {"Authorization": "Bearer k"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}


def make_client(fail_max: int = 3, max_attempts: int = 2, **extra: Any) -> FlaskClient:
    def provider(name: str, url: str, priority: int) -> dict[str, Any]:
        return {
            "name": name,
            "base_url": url,
            "models": ["m"],
            "priority": priority,
            "retry": {"max_attempts": max_attempts, "base_delay": 0, "max_delay": 0},
            "breaker": {"fail_max": fail_max, "reset_timeout": 60},
        }

    config: dict[str, Any] = {
        "auth": {"keys": [{"name": "t", "sha256": hash_key("k")}]},
        "providers": [provider("a", A, 1), provider("b", B, 2)],
        **extra,
    }
    return create_app(config).test_client()


def calls_to(base: str) -> int:
    return sum(1 for c in responses.calls if c.request.url.startswith(base))


def chat(client: FlaskClient, **headers: str) -> Any:
    return client.post("/v1/chat/completions", json=CHAT, headers={**HEADERS, **headers})


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500},
        {"status": 503},
        {"status": 401},
        {"status": 403},
        {"status": 200, "body": "{not json"},
        {"status": 200, "json": {"no": "choices"}},
        {"body": requests.exceptions.ConnectionError("refused")},
        {"body": requests.exceptions.ReadTimeout("slow")},
    ],
)
@responses.activate
def test_provider_failures_fall_back_to_the_next_provider(failure: dict[str, Any]) -> None:
    responses.post(f"{A}/chat/completions", **failure)
    responses.post(f"{B}/chat/completions", json=ANSWER)
    resp = chat(make_client())
    assert resp.status_code == 200, resp.json
    assert resp.headers["X-ProxyAPI-Provider"] == "b"
    expected_a = 2 if failure.get("status") in (500, 503) else 1  # 5xx is retried once
    assert calls_to(A) == expected_a
    assert resp.headers["X-ProxyAPI-Attempts"] == str(expected_a + 1)


@pytest.mark.parametrize(
    "failure",
    [{"status": 404, "json": {"error": {"message": "no model"}}}, {"status": 429}],
)
@responses.activate
def test_not_found_and_rate_limited_fall_back_without_counting(failure: dict[str, Any]) -> None:
    client = make_client(fail_max=1)
    responses.post(f"{A}/chat/completions", **failure)
    responses.post(f"{B}/chat/completions", json=ANSWER)
    for _ in range(3):
        assert chat(client).headers["X-ProxyAPI-Provider"] == "b"
    assert calls_to(A) == 3  # fail_max=1, yet A is still asked: these are not failures
    status = client.get("/v1/providers", headers=HEADERS).json
    assert status["data"][0]["breaker"]["state"] == "closed"


@responses.activate
def test_a_long_retry_after_takes_the_provider_out_for_that_long() -> None:
    client = make_client(fail_max=1)
    responses.post(f"{A}/chat/completions", status=429, headers={"Retry-After": "60"})
    responses.post(f"{B}/chat/completions", status=429, headers={"retry-after-ms": "20000"})
    first = chat(client)
    assert first.status_code == 429 and calls_to(A) == 1 and calls_to(B) == 1
    again = chat(client)  # nobody is asked: both said when to come back
    assert again.status_code == 429 and calls_to(A) == 1 and calls_to(B) == 1
    assert again.json["error"]["code"] == "upstream_rate_limited"
    assert 19 <= int(again.headers["Retry-After"]) <= 20
    assert (
        client.get("/v1/providers", headers=HEADERS).json["data"][0]["breaker"]["state"] == "closed"
    )


@responses.activate
def test_client_errors_are_relayed_without_fallback_or_breaker() -> None:
    client = make_client(fail_max=1)
    responses.post(f"{A}/chat/completions", status=400, json={"error": {"message": "bad temp"}})
    responses.post(f"{B}/chat/completions", json=ANSWER)
    for _ in range(2):
        resp = chat(client)
        assert resp.status_code == 400 and resp.json["error"]["message"] == "bad temp"
    assert calls_to(B) == 0 and calls_to(A) == 2


@responses.activate
def test_retry_then_success_on_the_same_provider() -> None:
    responses.post(f"{A}/chat/completions", status=502)
    responses.post(f"{A}/chat/completions", json=ANSWER)
    resp = chat(make_client(max_attempts=3))
    assert resp.headers["X-ProxyAPI-Provider"] == "a"
    assert resp.headers["X-ProxyAPI-Attempts"] == "2"


@responses.activate
def test_breaker_opens_after_fail_max_and_the_sick_provider_gets_no_traffic() -> None:
    client = make_client(fail_max=3, max_attempts=1)
    responses.post(f"{A}/chat/completions", status=500)
    responses.post(f"{B}/chat/completions", json=ANSWER)
    for _ in range(10):
        resp = chat(client)
        assert resp.status_code == 200 and resp.headers["X-ProxyAPI-Provider"] == "b"
    assert calls_to(A) == 3
    assert resp.headers["X-ProxyAPI-Attempts"] == "1"  # the open breaker costs no attempt
    data = client.get("/v1/providers", headers=HEADERS).json["data"]
    a, b = data
    assert a["breaker"]["state"] == "open" and 0 < a["breaker"]["half_open_in"] <= 60
    assert (a["requests"], a["errors"], a["fallbacks_from"]) == (3, 3, 3)
    assert (b["requests"], b["errors"], b["fallbacks_to"]) == (10, 0, 3)


@responses.activate
def test_every_breaker_open_is_503_with_retry_after() -> None:
    client = make_client(fail_max=2, max_attempts=1)
    responses.post(f"{A}/chat/completions", status=500)
    responses.post(f"{B}/chat/completions", status=503)
    assert [chat(client).status_code for _ in range(2)] == [502, 502]
    resp = chat(client)
    assert resp.status_code == 503
    assert resp.json["error"]["type"] == "service_unavailable"
    assert resp.json["error"]["code"] == "circuit_open"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60


@responses.activate
def test_last_error_is_returned_when_nobody_answers() -> None:
    responses.post(f"{A}/chat/completions", status=500)
    responses.post(
        f"{B}/chat/completions",
        status=429,
        headers={"Retry-After": "100"},
        json={"error": {"message": "slow down"}},
    )
    resp = chat(make_client())
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "100"


@responses.activate
def test_aliases_set_their_own_order() -> None:
    client = make_client(models={"fast": ["b/m", "a/m"]})
    responses.post(f"{B}/chat/completions", status=500)
    responses.post(f"{A}/chat/completions", json=ANSWER)
    resp = client.post("/v1/chat/completions", json={**CHAT, "model": "fast"}, headers=HEADERS)
    assert resp.headers["X-ProxyAPI-Provider"] == "a"
    assert json.loads(responses.calls[-1].request.body)["model"] == "m"
    models = client.get("/v1/models", headers=HEADERS).json["data"]
    assert models[0] == {"id": "fast", "object": "model", "created": 0, "owned_by": "proxyapi"}


@pytest.mark.parametrize("value", ["0", "-1", "abc", "601"])
def test_timeout_header_is_validated(value: str) -> None:
    resp = chat(make_client(), **{"X-ProxyAPI-Timeout": value})
    assert resp.status_code == 400 and "X-ProxyAPI-Timeout" in resp.json["error"]["message"]


def with_anthropic_second(fail_max: int = 3) -> FlaskClient:
    """a: OpenAI-compatible; b: Anthropic, which cannot honour ``logprobs``."""
    return create_app(
        {
            "auth": {"keys": [{"name": "t", "sha256": hash_key("k")}]},
            "providers": [
                {
                    "name": "a",
                    "base_url": A,
                    "models": ["m"],
                    "retry": {"max_attempts": 1},
                    "breaker": {"fail_max": fail_max},
                },
                {"name": "b", "type": "anthropic", "base_url": B, "models": ["m"], "priority": 2},
            ],
        }
    ).test_client()


@responses.activate
@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ({"status": 500}, 502, "upstream_error"),
        ({"body": requests.exceptions.ConnectionError("refused")}, 502, "upstream_unreachable"),
        ({"body": requests.exceptions.ReadTimeout("slow")}, 504, "upstream_timeout"),
    ],
)
def test_a_failure_before_a_refusal_is_the_answer_not_the_refusal(
    failure: dict[str, Any], status: int, code: str
) -> None:
    responses.post(f"{A}/chat/completions", **failure)
    resp = with_anthropic_second().post(
        "/v1/chat/completions", json={**CHAT, "logprobs": True}, headers=HEADERS
    )
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["code"] == code
    assert calls_to(B) == 0  # b refused before any call


@responses.activate
def test_a_refusal_is_the_answer_only_when_nothing_else_happened() -> None:
    client = with_anthropic_second(fail_max=1)
    only_b = {**CHAT, "model": "b/m", "logprobs": True}
    resp = client.post("/v1/chat/completions", json=only_b, headers=HEADERS)
    assert resp.status_code == 400 and resp.json["error"]["param"] == "logprobs"
    # With a's circuit open, the request is not at fault either: 503, retry later.
    responses.post(f"{A}/chat/completions", status=500)
    body = {**CHAT, "logprobs": True}
    assert client.post("/v1/chat/completions", json=body, headers=HEADERS).status_code == 502
    resp = client.post("/v1/chat/completions", json=body, headers=HEADERS)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "circuit_open"


def test_deadline_exceeded_tells_sdks_not_to_retry() -> None:
    from proxyapi.errors import DeadlineExceeded, UpstreamTimeout

    assert DeadlineExceeded().extra_headers == {"x-should-retry": "false"}
    assert DeadlineExceeded(headers={"A": "b"}).extra_headers == {
        "x-should-retry": "false",
        "A": "b",
    }
    assert "x-should-retry" not in UpstreamTimeout().extra_headers
