"""Every error the client can see is OpenAI-shaped JSON with the right status."""

from __future__ import annotations

import pytest
from flask import abort

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.errors import ModelNotFound, UpstreamRejected, redact
from tests.schemas import assert_valid

HEADERS = {"Authorization": "Bearer k"}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("UPK", "sk-very-secret-upstream")
    app = create_app(
        {
            "server": {"max_body_bytes": 1024},
            "auth": {"keys": [{"name": "a", "sha256": hash_key("k")}]},
            "providers": [
                {
                    "name": "up",
                    "base_url": "http://127.0.0.1:9/v1",
                    "models": ["m"],
                    "api_key_env": "UPK",
                }
            ],
        }
    )

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("a bug with sk-very-secret-upstream in its message")

    @app.get("/relay")
    def relay() -> str:
        raise UpstreamRejected(
            429,
            "slow down, sk-very-secret-upstream",
            type="rate_limit_error",
            headers={"Retry-After": "7"},
        )

    @app.get("/teapot")
    def teapot() -> str:
        abort(418)

    return app.test_client()


def check(resp, status: int, etype: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status
    assert resp.mimetype == "application/json"
    assert_valid("ErrorResponse", resp.json)
    assert resp.json["error"]["type"] == etype
    return resp.json["error"]  # type: ignore[no-any-return]


def test_unknown_route_is_404(client) -> None:  # type: ignore[no-untyped-def]
    check(client.get("/v1/nothing", headers=HEADERS), 404, "not_found_error")


def test_wrong_method_is_405_with_allow(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/v1/chat/completions", headers=HEADERS)
    check(resp, 405, "invalid_request_error")
    assert "POST" in resp.headers["Allow"]


def test_body_over_limit_is_413(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/chat/completions", data=b"x" * 2048, headers=HEADERS)
    err = check(resp, 413, "invalid_request_error")
    assert "1024 bytes" in err["message"] and err["code"] == "request_too_large"


def test_unexpected_exception_is_500_with_request_id_and_no_detail(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/boom", headers={**HEADERS, "X-Request-ID": "req-123"})
    err = check(resp, 500, "server_error")
    assert "req-123" in err["message"]
    assert "RuntimeError" not in resp.text and "Traceback" not in resp.text
    assert resp.headers["X-Request-ID"] == "req-123"


def test_relayed_error_keeps_status_headers_and_hides_secrets(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/relay", headers=HEADERS)
    err = check(resp, 429, "rate_limit_error")
    assert resp.headers["Retry-After"] == "7"
    assert "sk-very-secret-upstream" not in resp.text and "[redacted]" in err["message"]


def test_other_statuses_get_a_type(client) -> None:  # type: ignore[no-untyped-def]
    check(client.get("/teapot", headers=HEADERS), 418, "server_error")


def test_model_not_found_payload() -> None:
    body = ModelNotFound("no such model", param="model").payload()
    assert body == {
        "error": {
            "message": "no such model",
            "type": "not_found_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_redact() -> None:
    assert redact("a sk-1 b sk-1", ["sk-1", ""]) == "a [redacted] b [redacted]"
