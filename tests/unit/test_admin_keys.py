"""Managed keys in one process: the admin API, authentication of what it makes, the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import responses
import yaml
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.cli import main
from proxyapi.keys.records import KeyStoreError

URL = "http://up.test/v1"
ROOT, USER = "root-key-for-tests", "user-key-for-tests"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hey"}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
}


def config(**managed: Any) -> dict[str, Any]:
    return {
        "auth": {
            "keys": [
                {"name": "root", "sha256": hash_key(ROOT), "admin": True},
                {"name": "user", "sha256": hash_key(USER)},
            ],
            "managed": managed,
        },
        "providers": [
            {"name": "up", "base_url": URL, "models": ["m", "n"], "retry": {"max_attempts": 1}}
        ],
    }


@pytest.fixture
def upstream() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{URL}/chat/completions", json=ANSWER)
        yield mock


@pytest.fixture
def app(upstream: Any) -> Flask:
    return create_app(config())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def admin(client: FlaskClient, method: str, path: str, body: Any = None, key: str = ROOT) -> Any:
    return client.open(
        f"/v1/admin{path}",
        method=method,
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    )


def chat(client: FlaskClient, key: str, body: dict[str, Any] = CHAT) -> Any:
    resp = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    resp.get_data()
    resp.close()
    return resp


def make_key(client: FlaskClient, **body: Any) -> dict[str, Any]:
    resp = admin(client, "POST", "/keys", {"name": "team-a", **body})
    assert resp.status_code == 201, resp.json
    return dict(resp.json)


class Clock:
    def __init__(self, app: Flask) -> None:
        self.now = 1_800_000_000.0
        keys = app.extensions["proxyapi.keys"]
        keys.clock = keys.keyset.clock = lambda: self.now


# --- the API ---------------------------------------------------------------------------------


def test_a_created_key_works_at_once_and_its_secret_is_shown_once(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        made = make_key(client, models=["m"], metadata={"team": "a"})
        secret = made["key"]
        assert secret.startswith("pk-") and made["hint"] == secret[:7] + "…"
        assert made["id"].startswith("key_") and made["status"] == "active"
        assert made["source"] == "managed" and made["models"] == ["m"]
        assert chat(client, secret).status_code == 200
        listed = admin(client, "GET", "/keys").json["data"]
        shown = admin(client, "GET", f"/keys/{made['id']}").json
        audit = admin(client, "GET", "/audit").json["data"]
    assert [(k["name"], k["source"], k["read_only"]) for k in listed] == [
        ("root", "config", True),
        ("user", "config", True),
        ("team-a", "managed", False),
    ]
    assert shown["metadata"] == {"team": "a"} and "key" not in shown
    (entry,) = audit
    assert entry["action"] == "create" and entry["actor"] == "key:root"
    assert entry["key_name"] == "team-a" and entry["client"] == "127.0.0.1"
    assert entry["detail"]["models"] == ["m"]
    # The secret is nowhere but in the answer to create.
    for text in (json.dumps(listed), json.dumps(shown), json.dumps(audit), caplog.text):
        assert secret not in text and hash_key(secret) not in text
    assert admin(client, "POST", "/keys", {"name": "x"}).headers["Cache-Control"] == "no-store"


def test_only_admin_keys_manage_keys(client: FlaskClient) -> None:
    resp = admin(client, "GET", "/keys", key=USER)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "admin_required"
    made = make_key(client)
    resp = admin(client, "GET", "/keys", key=made["key"])
    assert resp.status_code == 403
    admin_made = admin(client, "POST", "/keys", {"name": "ops", "admin": True}).json
    assert admin(client, "GET", "/keys", key=admin_made["key"]).status_code == 200
    assert admin(client, "GET", "/audit", key=admin_made["key"]).json["data"][0]["actor"] == (
        "key:root"
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"name": "bad name!"}, 400, "name"),
        ({"name": "root"}, 409, "name"),  # a config key's name
        ({"name": "a", "colour": "red"}, 400, "colour"),
        ({"name": "a", "models": [1]}, 400, "models"),
        ({"name": "a", "limits": ["5/minute"]}, 400, "limits"),  # request limits are off
        ({"name": "a", "token_limits": ["lots"]}, 400, "token_limits"),
        ({"name": "a", "budget": {"usd": -1, "period": "day"}}, 400, "budget"),
        ({"name": "a", "max_concurrent": 0}, 400, "max_concurrent"),
        ({"name": "a", "ttl": "forever"}, 400, "ttl"),
        ({"name": "a", "ttl": 0}, 400, "ttl"),
        ({"name": "a", "ttl": 60, "expires_at": "2030-01-01"}, 400, "ttl"),
        ({"name": "a", "expires_at": "2001-01-01"}, 400, "expires_at"),
        ({"name": "a", "expires_at": "9999-01-01"}, 400, "expires_at"),
        ({"name": "a", "metadata": {"k": "\x00"}}, 400, "metadata"),
        ({"name": "a", "metadata": {str(i): "v" for i in range(17)}}, 400, "metadata"),
    ],
)
def test_bad_requests_name_the_field(
    client: FlaskClient, body: dict[str, Any], status: int, param: str
) -> None:
    resp = admin(client, "POST", "/keys", body)
    assert resp.status_code == status and resp.is_json
    assert resp.json["error"]["param"] == param, resp.json
    assert admin(client, "GET", "/audit").json["data"] == []  # nothing was done


def test_a_managed_name_is_taken_once(client: FlaskClient) -> None:
    make_key(client)
    resp = admin(client, "POST", "/keys", {"name": "team-a"})
    assert resp.status_code == 409 and resp.json["error"]["code"] == "key_name_taken"
    bad = admin(client, "POST", "/keys", [1])
    assert bad.status_code == 400 and "JSON object" in bad.json["error"]["message"]


def test_expiry_is_enforced_at_authentication(app: Flask, client: FlaskClient) -> None:
    clock = Clock(app)
    made = make_key(client, ttl="1h")
    assert chat(client, made["key"]).status_code == 200
    clock.now += 3600
    resp = chat(client, made["key"])
    assert resp.status_code == 401 and resp.json["error"]["code"] == "key_expired"
    assert "expired at 2027-01-15T09:00:00Z" in resp.json["error"]["message"]
    assert admin(client, "GET", f"/keys/{made['id']}").json["status"] == "expired"
    # Cleared by an admin, it works again.
    admin(client, "PATCH", f"/keys/{made['id']}", {"expires_at": None})
    assert chat(client, made["key"]).status_code == 200


def test_revoke_stops_a_key_at_once(client: FlaskClient) -> None:
    made = make_key(client)
    revoked = admin(client, "POST", f"/keys/{made['id']}/revoke").json
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    resp = chat(client, made["key"])
    assert resp.status_code == 401 and resp.json["error"]["code"] == "key_revoked"
    again = admin(client, "POST", f"/keys/{made['id']}/rotate")
    assert again.status_code == 409


def test_rotation_keeps_the_old_secret_for_its_grace(app: Flask, client: FlaskClient) -> None:
    clock = Clock(app)
    made = make_key(client)
    rotated = admin(client, "POST", f"/keys/{made['id']}/rotate", {"grace": 600}).json
    new, old = rotated["key"], made["key"]
    assert new != old and rotated["previous_secret_valid_until"]
    assert chat(client, new).status_code == 200 and chat(client, old).status_code == 200
    clock.now += 600
    assert chat(client, old).status_code == 401 and chat(client, new).status_code == 200
    # With no grace the old secret stops at once.
    now_new = admin(client, "POST", f"/keys/{made['id']}/rotate", {"grace": 0}).json["key"]
    assert chat(client, new).status_code == 401 and chat(client, now_new).status_code == 200
    assert admin(client, "POST", f"/keys/{made['id']}/rotate", {"grace": -1}).status_code == 400


def test_patch_changes_scope_and_never_the_name(client: FlaskClient) -> None:
    made = make_key(client)
    assert chat(client, made["key"], {**CHAT, "model": "n"}).status_code == 200
    patched = admin(client, "PATCH", f"/keys/{made['id']}", {"models": ["m"]})
    assert patched.status_code == 200 and patched.json["models"] == ["m"]
    refused = chat(client, made["key"], {**CHAT, "model": "n"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "model_not_allowed"
    assert admin(client, "PATCH", f"/keys/{made['id']}", {"name": "b"}).status_code == 400
    config_key = admin(client, "PATCH", "/keys/config:user", {"models": ["m"]})
    assert config_key.status_code == 403
    assert config_key.json["error"]["code"] == "config_key_read_only"
    assert admin(client, "GET", "/keys/config:user").json["source"] == "config"
    missing = admin(client, "PATCH", "/keys/key_nope", {"models": ["m"]})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "key_not_found"


def test_delete_forgets_a_key(client: FlaskClient) -> None:
    made = make_key(client)
    assert admin(client, "DELETE", f"/keys/{made['id']}").json["deleted"] is True
    resp = chat(client, made["key"])
    assert resp.status_code == 401 and resp.json["error"]["code"] == "invalid_api_key"
    assert admin(client, "DELETE", f"/keys/{made['id']}").status_code == 404
    actions = [e["action"] for e in admin(client, "GET", "/audit").json["data"]]
    assert actions == ["delete", "create"]


def test_a_managed_keys_limits_and_budgets_apply(upstream: Any) -> None:
    client = create_app(config(request_limits=True)).test_client()
    limited = make_key(client, limits=["1/minute"])
    assert chat(client, limited["key"]).status_code == 200
    assert chat(client, limited["key"]).status_code == 429
    budget = admin(client, "POST", "/keys", {"name": "b", "token_limits": ["15/day"]}).json
    assert chat(client, budget["key"], {**CHAT, "max_tokens": 2}).status_code == 200
    refused = chat(client, budget["key"], {**CHAT, "max_tokens": 2})
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "token_budget_exceeded"


# --- the store failing -----------------------------------------------------------------------


class Broken:
    """A store that answers nothing."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise KeyStoreError("store down")

        return fail


def test_a_store_outage_keeps_known_keys_working(app: Flask, client: FlaskClient) -> None:
    clock = Clock(app)
    made = make_key(client)
    keys = app.extensions["proxyapi.keys"]
    working = keys.store
    keys.store = keys.keyset.store = Broken()
    assert keys.keyset.refresh() is False
    assert chat(client, made["key"]).status_code == 200  # fail-static: never a false 401
    assert chat(client, USER).status_code == 200
    ready = client.get("/health/ready").json
    assert ready["degraded"] is True and ready["checks"]["managed_keys"] == "unreachable"
    refused = admin(client, "POST", "/keys", {"name": "new"})
    assert refused.status_code == 503 and refused.json["error"]["code"] == "key_store_unavailable"
    # Past max_stale the copy is not trusted: 503, still not 401; config keys go on.
    clock.now += 86_401
    stale = chat(client, made["key"])
    assert stale.status_code == 503 and stale.json["error"]["code"] == "key_store_unavailable"
    assert chat(client, USER).status_code == 200
    keys.store = keys.keyset.store = working
    assert keys.keyset.refresh() is True
    assert chat(client, made["key"]).status_code == 200
    assert client.get("/health/ready").json["checks"]["managed_keys"] == "ok"


def test_a_pepper_keys_the_digests(upstream: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYAPI_KEY_PEPPER", "a-long-random-pepper-value")
    app = create_app(config())
    client = app.test_client()
    made = make_key(client)
    (record,) = app.extensions["proxyapi.keys"].store.load()[1]
    assert record.digest != hash_key(made["key"])  # not the plain SHA-256
    assert chat(client, made["key"]).status_code == 200
    monkeypatch.setenv("PROXYAPI_KEY_PEPPER", "short")
    with pytest.raises(Exception, match="PROXYAPI_KEY_PEPPER is shorter than 16"):
        create_app(config())


def test_managed_keys_can_be_off(upstream: Any) -> None:
    client = create_app(config(enabled=False)).test_client()
    resp = admin(client, "GET", "/keys")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "managed_keys_off"


# --- the CLI ---------------------------------------------------------------------------------


def test_the_cli_manages_the_same_store(upstream: Any, tmp_path: Path) -> None:
    path = tmp_path / "proxyapi.yaml"
    path.write_text(yaml.safe_dump(config(path=str(tmp_path / "keys.sqlite3"))))
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(main, ["keys", *args, "--config", str(path)])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    made = run("create", "--name", "ci", "--model", "m", "--token-limit", "900/day", "--ttl", "30d")
    assert made["key"].startswith("pk-") and made["token_limits"] == ["900/day"]
    client = create_app(yaml.safe_load(path.read_text())).test_client()
    assert chat(client, made["key"]).status_code == 200
    assert [k["name"] for k in run("list")] == ["root", "user", "ci"]
    assert run("show", made["id"])["models"] == ["m"]
    rotated = run("rotate", made["id"], "--grace", "0")
    assert rotated["key"] != made["key"]
    assert run("revoke", made["id"])["status"] == "revoked"
    assert [e["action"] for e in run("audit")] == ["revoke", "rotate", "create"]
    assert run("audit")[0]["actor"].startswith("cli:")
    failed = runner.invoke(main, ["keys", "show", "key_nope", "--config", str(path)])
    assert failed.exit_code == 1 and "No key with id" in failed.output


@pytest.mark.parametrize("cursor", ["x", "9" * 70, "-1", "1-2-3", "\u00e9"])
def test_a_bad_audit_cursor_is_a_400(client: FlaskClient, cursor: str) -> None:
    make_key(client)
    resp = client.get(
        "/v1/admin/audit",
        query_string={"before": cursor},
        headers={"Authorization": f"Bearer {ROOT}"},
    )
    assert resp.status_code == 400 and resp.json["error"]["param"] == "before"


def test_audit_pages_back(client: FlaskClient) -> None:
    for name in ("a", "b", "c"):
        admin(client, "POST", "/keys", {"name": name})
    first = admin(client, "GET", "/audit?limit=2").json["data"]
    assert [e["key_name"] for e in first] == ["c", "b"]
    rest = admin(client, "GET", f"/audit?limit=2&before={first[-1]['cursor']}").json["data"]
    assert [e["key_name"] for e in rest] == ["a"]
    assert admin(client, "GET", "/audit?limit=0").status_code == 400


@pytest.mark.parametrize("key_id", ["key_" + "0" * 24, "..", "config:nobody", "%00", "a" * 300])
def test_unknown_ids_are_404s(client: FlaskClient, key_id: str) -> None:
    for method, path in (("GET", ""), ("POST", "/revoke"), ("DELETE", "")):
        resp = admin(client, method, f"/keys/{key_id}{path}")
        assert resp.status_code in (403, 404) and resp.is_json, (method, resp.data)


def test_an_audit_detail_that_looks_like_a_secret_keeps_only_field_names(
    client: FlaskClient,
) -> None:
    made = make_key(client, metadata={"note": "pk-" + "x" * 40})
    assert made["metadata"]["note"].startswith("pk-")
    (entry,) = admin(client, "GET", "/audit").json["data"]
    assert entry["detail"] == {"fields": ["metadata"]}


def test_a_key_too_large_to_store_is_a_400(client: FlaskClient) -> None:
    models = [f"model-{i}" for i in range(20_000)]
    resp = admin(client, "POST", "/keys", {"name": "big", "models": models})
    assert resp.status_code == 400 and "cannot be stored" in resp.json["error"]["message"]
    made = make_key(client)
    resp = admin(client, "PATCH", f"/keys/{made['id']}", {"models": models})
    assert resp.status_code == 400
