"""curl-style calls: headers, error statuses and bodies, through real gunicorn."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from tests.conftest import ALICE_KEY, UPSTREAM_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream, Fault
from tests.schemas import assert_valid

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}


def post(
    gw: GatewayProcess,
    path: str,
    body: object = CHAT,
    headers: dict[str, str] | None = None,
    **kw: object,
) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(
        f"{gw.url}{path}", data=data, headers={**AUTH, **(headers or {})}, timeout=15, **kw
    )  # type: ignore[arg-type]


def error_of(resp: requests.Response, status: int, etype: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert_valid("ErrorResponse", body)
    assert body["error"]["type"] == etype
    assert UPSTREAM_KEY not in resp.text and ALICE_KEY not in resp.text
    return body["error"]  # type: ignore[no-any-return]


def test_x_api_key_header_and_plain_curl_content_type(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    resp = requests.post(
        f"{gateway.url}/v1/chat/completions",
        data=json.dumps(CHAT),
        headers={"X-API-Key": ALICE_KEY, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"
    sent = fake.calls("/chat/completions")[0].headers
    assert sent["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert ALICE_KEY not in json.dumps(sent)


def test_request_id_is_echoed_or_generated_and_logged(gateway: GatewayProcess) -> None:
    resp = post(gateway, "/v1/chat/completions", headers={"X-Request-ID": "trace-abc-123"})
    assert resp.headers["X-Request-ID"] == "trace-abc-123"
    generated = post(gateway, "/v1/chat/completions").headers["X-Request-ID"]
    assert len(generated) == 32
    unsafe = post(gateway, "/v1/chat/completions", headers={"X-Request-ID": "bad id\twith tab"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith tab"
    assert "[trace-abc-123] proxyapi.access: POST /v1/chat/completions 200" in gateway.logs()
    assert f"[{generated}] " in gateway.logs()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        ({"model": 123, "messages": []}, "model"),
        ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
        (
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
                "stream": "yes",
            },
            "stream",
        ),
    ],
)
def test_bad_bodies(
    gateway: GatewayProcess, fake: FakeUpstream, body: object, param: str | None
) -> None:
    err = error_of(post(gateway, "/v1/chat/completions", body), 400, "invalid_request_error")
    assert err["param"] == param
    assert fake.calls() == []


def test_huge_body_is_413(gateway: GatewayProcess, fake: FakeUpstream) -> None:
    huge = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        + b"x" * (11 * 1024 * 1024)
        + b'"}]}'
    )
    err = error_of(post(gateway, "/v1/chat/completions", huge), 413, "invalid_request_error")
    assert "10485760 bytes" in str(err["message"])
    assert fake.calls() == []


def test_unknown_model_is_404_model_not_found(gateway: GatewayProcess) -> None:
    err = error_of(
        post(gateway, "/v1/chat/completions", {**CHAT, "model": "gpt-9"}), 404, "not_found_error"
    )
    assert err["code"] == "model_not_found" and err["param"] == "model"


def test_missing_and_wrong_keys_are_401(gateway: GatewayProcess) -> None:
    missing = requests.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=5)
    assert error_of(missing, 401, "authentication_error")["code"] == "missing_api_key"
    wrong = requests.post(
        f"{gateway.url}/v1/chat/completions",
        json=CHAT,
        timeout=5,
        headers={"Authorization": "Bearer pk-nope"},
    )
    assert error_of(wrong, 401, "authentication_error")["code"] == "invalid_api_key"


def test_unknown_route_and_wrong_method(gateway: GatewayProcess) -> None:
    error_of(
        requests.get(f"{gateway.url}/v1/engines", headers=AUTH, timeout=5), 404, "not_found_error"
    )
    resp = requests.get(f"{gateway.url}/v1/chat/completions", headers=AUTH, timeout=5)
    error_of(resp, 405, "invalid_request_error")
    assert "POST" in resp.headers["Allow"]


def test_health_needs_no_key(gateway: GatewayProcess, fake: FakeUpstream) -> None:
    resp = requests.get(f"{gateway.url}/health", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert fake.calls() == []


@pytest.mark.parametrize(
    ("fault", "status", "etype", "code"),
    [
        (Fault(status=500), 502, "upstream_error", "upstream_error"),
        (Fault(status=503), 502, "upstream_error", "upstream_error"),
        (Fault(reset=True), 502, "upstream_error", "upstream_connection_broken"),
        (
            Fault(body=b"<html>gateway</html>", content_type="text/html"),
            502,
            "upstream_error",
            "upstream_malformed_response",
        ),
        (Fault(delay=4.0), 504, "timeout", "upstream_timeout"),  # read timeout is 3 s
        (Fault(status=400), 400, "invalid_request_error", None),
    ],
)
def test_upstream_faults(
    gateway: GatewayProcess,
    fake: FakeUpstream,
    fault: Fault,
    status: int,
    etype: str,
    code: str | None,
) -> None:
    fake.script(fault)
    err = error_of(post(gateway, "/v1/chat/completions"), status, etype)
    assert err["code"] == code
    if status >= 500:
        assert "request id" in str(err["message"])


def test_upstream_429_relayed_with_retry_after(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    # Its own gateway: the 429 takes the provider out of rotation for its Retry-After.
    gw = launch(base_config(fake))
    fake.script(Fault(status=429, headers={"Retry-After": "2"}))
    resp = post(gw, "/v1/chat/completions")
    error_of(resp, 429, "rate_limit_error")
    assert resp.headers["Retry-After"] == "2"
    again = post(gw, "/v1/chat/completions")  # within those 2 s the provider is not asked
    assert error_of(again, 429, "rate_limit_error")["code"] == "upstream_rate_limited"
    assert len(fake.calls()) == 1


def test_upstream_rejecting_our_key_is_502_not_401(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    saved, fake.api_key = fake.api_key, "sk-some-other-key"
    try:
        err = error_of(post(gateway, "/v1/chat/completions"), 502, "upstream_error")
    finally:
        fake.api_key = saved
    assert err["code"] == "upstream_auth_failed"


def test_stream_error_before_first_byte_is_a_plain_error(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    fake.script(Fault(status=500))
    resp = post(gateway, "/v1/chat/completions", {**CHAT, "stream": True})
    error_of(resp, 502, "upstream_error")


def test_stream_headers(gateway: GatewayProcess) -> None:
    resp = post(gateway, "/v1/chat/completions", {**CHAT, "stream": True}, stream=True)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-ProxyAPI-Provider"] == "fake"
    assert "Content-Length" not in resp.headers
    body = resp.content
    # The cost follows the end as an SSE comment (a header cannot carry it on a stream).
    assert body.endswith(b"data: [DONE]\n\n: cost_usd=unpriced\n\n")


def test_providers_status_reports_pool_reuse(gateway: GatewayProcess) -> None:
    session = requests.Session()
    for _ in range(3):
        assert session.post(
            f"{gateway.url}/v1/chat/completions", json=CHAT, headers=AUTH, timeout=5
        ).ok
    status = requests.get(f"{gateway.url}/v1/providers", headers=AUTH, timeout=5).json()
    assert (
        status["scope"]["counters"] == "this worker"
        and status["scope"]["breakers"] == "this worker"
    )
    (fake,) = status["data"]
    assert fake["breaker"]["state"] == "closed" and fake["requests"] >= 3
    assert fake["pool"]["connections_reused"] >= 2  # one pooled connection, used again
    assert fake["latency_ms"]["p95"] > 0
