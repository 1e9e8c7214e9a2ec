"""Key hashing and the key check on /v1 routes."""

from __future__ import annotations

import hashlib

import pytest
from flask import Flask

from proxyapi import create_app
from proxyapi.auth import KeyRing, hash_key
from proxyapi.config import AuthConfig, KeyConfig


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("secret") == hashlib.sha256(b"secret").hexdigest()


def test_keyring_lookup_finds_each_key_and_rejects_others() -> None:
    ring = KeyRing(
        AuthConfig(keys=(KeyConfig("a", hash_key("ka")), KeyConfig("b", hash_key("kb"))))
    )
    assert ring.lookup("ka").name == "a"  # type: ignore[union-attr]
    assert ring.lookup("kb").name == "b"  # type: ignore[union-attr]
    assert ring.lookup("kc") is None
    assert ring.lookup("") is None


def test_keyring_compares_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the number of comparisons does not depend on which key matched."""
    import proxyapi.auth as auth_mod

    ring = KeyRing(
        AuthConfig(keys=tuple(KeyConfig(f"k{i}", hash_key(f"key{i}")) for i in range(5)))
    )
    calls: list[int] = []
    real = auth_mod.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", counting)
    for presented in ("key0", "key4", "nope"):
        calls.clear()
        ring.lookup(presented)
        assert len(calls) == 5


@pytest.fixture
def app() -> Flask:
    return create_app(
        {
            "auth": {
                "keys": [{"name": "alice", "sha256": hash_key("ka")}],
                "header": "X-Gateway-Key",
            },
            "providers": [{"name": "up", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}],
        }
    )


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer ka"}, {"authorization": "bearer ka"}, {"X-Gateway-Key": "ka"}],
)
def test_key_accepted_from_bearer_or_configured_header(app: Flask, headers: dict[str, str]) -> None:
    resp = app.test_client().get("/v1/models", headers=headers)
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"Authorization": "Basic a2E="}, "missing_api_key"),
        ({"X-API-Key": "ka"}, "missing_api_key"),  # the header name was changed in config
    ],
)
def test_missing_or_wrong_key_is_401(app: Flask, headers: dict[str, str], code: str) -> None:
    resp = app.test_client().post("/v1/chat/completions", json={}, headers=headers)
    assert resp.status_code == 401
    assert resp.json["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert resp.json["error"]["code"] == code  # type: ignore[index]


def test_no_keys_configured_refuses_every_v1_call_and_says_how_to_fix() -> None:
    app = create_app(
        {"providers": [{"name": "up", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}]}
    )
    client = app.test_client()
    resp = client.get("/v1/models", headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 401
    assert "PROXYAPI_KEYS" in resp.json["error"]["message"]  # type: ignore[index]
    assert resp.json["error"]["code"] == "no_keys_configured"  # type: ignore[index]
    assert client.get("/health").status_code == 200
