"""The status page in one process: who may see it, the sign-in session, what it renders."""

from __future__ import annotations

import re
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.config import parse_config
from proxyapi.status import gather
from proxyapi.status.session import COOKIE, Sessions

URL = "http://up.test/v1"
ROOT, USER = "root-key-for-status-tests", "user-key-for-status-tests"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hey"}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
}


def config(root_sha: str | None = None, root_admin: bool = True, **status: Any) -> dict[str, Any]:
    return {
        # Fixed, so apps built from changed keys are still one deployment.
        "redis": {"namespace": "status-test"},
        "auth": {
            "keys": [
                {"name": "root", "sha256": root_sha or hash_key(ROOT), "admin": root_admin},
                {
                    "name": "user",
                    "sha256": hash_key(USER),
                    "token_limits": ["100000/day"],
                    "limits": ["50/minute"],
                },
            ]
        },
        "rate_limits": {"failed_auth": ["3/minute"]},
        "providers": [
            {"name": "up", "base_url": URL, "models": ["m"], "retry": {"max_attempts": 1}},
            {"name": "spare", "base_url": URL, "models": ["m"], "priority": 2},
        ],
        "status": status,
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


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sign_in(client: FlaskClient, key: str = ROOT) -> Any:
    return client.post("/status/session", data={"key": key}, headers=HTML)


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(COOKIE, path="/status")
    return cookie.value if cookie is not None else None


# ------------------------------------------------------------------ who may see it


def test_a_browser_without_a_key_gets_the_sign_in_form(client: FlaskClient) -> None:
    resp = client.get("/status", headers=HTML)
    assert resp.status_code == 401
    assert resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert '<form method="post" action="/status/session"' in page
    assert 'type="password" name="key"' in page
    assert "signed in as" not in page


def test_a_client_without_a_key_that_asks_for_json_gets_the_json_error(
    client: FlaskClient,
) -> None:
    resp = client.get("/status")  # Accept: */* (curl's)
    assert resp.status_code == 401
    assert resp.mimetype == "application/json"
    assert resp.get_json()["error"]["code"] == "missing_api_key"


def test_an_admin_key_in_the_header_gets_the_page(client: FlaskClient) -> None:
    resp = client.get("/status", headers=bearer(ROOT))
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert 'id="viewer">root<' in page
    assert 'data-provider="up"' in page and 'data-provider="spare"' in page


def test_the_configured_key_header_works_too(client: FlaskClient) -> None:
    assert client.get("/status", headers={"X-API-Key": ROOT}).status_code == 200


def test_a_key_that_is_not_admin_gets_403_json_or_page(client: FlaskClient) -> None:
    resp = client.get("/status", headers=bearer(USER))
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "admin_required"
    resp = client.get("/status", headers={**bearer(USER), **HTML})
    assert resp.status_code == 403 and resp.mimetype == "text/html"
    assert "not an admin key" in resp.get_data(as_text=True)


def test_an_unknown_key_in_the_header_is_401(client: FlaskClient) -> None:
    resp = client.get("/status", headers=bearer("nope"))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["type"] == "authentication_error"


# ------------------------------------------------------------------ the session


def test_signing_in_sets_a_cookie_and_sends_the_browser_to_the_page(client: FlaskClient) -> None:
    resp = sign_in(client)
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/status"
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/status", "Max-Age=43200"):
        assert flag in header
    assert "Secure" not in header  # plain http here; see the https test
    page = client.get("/status", headers=HTML)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="viewer">root<' in text
    assert 'action="/status/session/end"' in text  # a sign-out button for a session


def test_the_cookie_is_secure_behind_a_tls_proxy() -> None:
    app = create_app({**config(), "server": {"trusted_proxies": 1}})
    resp = app.test_client().post(
        "/status/session", data={"key": ROOT}, headers={"X-Forwarded-Proto": "https"}
    )
    assert resp.status_code == 303
    assert "Secure" in resp.headers["Set-Cookie"]


def test_neither_the_key_nor_its_digest_is_in_the_cookie_or_the_page(client: FlaskClient) -> None:
    resp = sign_in(client)
    page = client.get("/status", headers=HTML).get_data(as_text=True)
    for secret in (ROOT, hash_key(ROOT), USER, hash_key(USER)):
        assert secret not in resp.headers["Set-Cookie"]
        assert secret not in page


def test_signing_out_clears_the_cookie(client: FlaskClient) -> None:
    sign_in(client)
    resp = client.post("/status/session/end", headers=HTML)
    assert resp.status_code == 303
    assert session_cookie(client) is None
    assert client.get("/status", headers=HTML).status_code == 401


def test_a_tampered_cookie_gets_the_form(client: FlaskClient) -> None:
    sign_in(client)
    value = session_cookie(client)
    assert value is not None
    version, name, expiry, mac = value.split(".")
    forged = [
        f"{version}.{name}.{int(expiry) + 3600}.{mac}",  # a longer life
        f"{version}.{name}.{expiry}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        f"{version}.dXNlcg.{expiry}.{mac}",  # another key's name ("user")
        "garbage",
    ]
    for bad in forged:
        client.set_cookie(COOKIE, bad, path="/status")
        resp = client.get("/status", headers=HTML)
        assert resp.status_code == 401, bad
        assert "signed in as" not in resp.get_data(as_text=True)


def test_an_expired_cookie_is_refused() -> None:
    key = parse_config(config()).auth.keys[0]
    now = [1_000_000.0]
    sessions = Sessions(
        "ns", None, 60, lambda name: key if name == "root" else None, lambda: now[0]
    )
    cookie = sessions.issue(key)
    assert sessions.check(cookie) is key
    now[0] += 59
    assert sessions.check(cookie) is key
    now[0] += 1
    assert sessions.check(cookie) is None


def test_a_cookie_is_only_good_for_its_own_deployment() -> None:
    key = parse_config(config()).auth.keys[0]
    mine = Sessions("one", None, 60, lambda name: key)
    assert Sessions("two", None, 60, lambda name: key).check(mine.issue(key)) is None
    assert Sessions("one", b"pepper" * 6, 60, lambda name: key).check(mine.issue(key)) is None


def test_a_cookie_stops_working_when_its_config_key_changes(upstream: Any) -> None:
    client = create_app(config()).test_client()
    sign_in(client)
    cookie = session_cookie(client)
    # The same deployment, restarted: the cookie still works on any worker or host.
    again = create_app(config()).test_client()
    again.set_cookie(COOKIE, cookie or "", path="/status")
    assert again.get("/status", headers=HTML).status_code == 200
    for changed in (
        config(root_sha=hash_key("a-new-root-key")),  # rotated
        config(root_admin=False),  # no longer admin
    ):
        other = create_app(changed).test_client()
        other.set_cookie(COOKIE, cookie or "", path="/status")
        assert other.get("/status", headers=HTML).status_code == 401
    removed = config()
    removed["auth"]["keys"] = removed["auth"]["keys"][1:]
    removed["auth"]["keys"].append({"name": "other", "sha256": hash_key("x"), "admin": True})
    other = create_app(removed).test_client()
    other.set_cookie(COOKIE, cookie or "", path="/status")
    assert other.get("/status", headers=HTML).status_code == 401


def test_a_managed_admin_key_signs_in_and_its_cookie_dies_with_rotation_or_revocation(
    client: FlaskClient,
) -> None:
    def make() -> tuple[str, str]:
        created = client.post(
            "/v1/admin/keys", json={"name": f"ops{len(made)}", "admin": True}, headers=bearer(ROOT)
        )
        assert created.status_code == 201, created.get_json()
        body = created.get_json()
        made.append(body["id"])
        return body["id"], body["key"]

    made: list[str] = []
    for action in ("rotate", "revoke", "delete"):
        key_id, plaintext = make()
        client.delete_cookie(COOKIE, path="/status")
        assert sign_in(client, plaintext).status_code == 303
        assert client.get("/status", headers=HTML).status_code == 200
        if action == "delete":
            resp = client.delete(f"/v1/admin/keys/{key_id}", headers=bearer(ROOT))
        else:
            resp = client.post(f"/v1/admin/keys/{key_id}/{action}", headers=bearer(ROOT))
        assert resp.status_code == 200, resp.get_json()
        assert client.get("/status", headers=HTML).status_code == 401, action


def test_a_wrong_key_in_the_form_shows_the_form_again_and_counts_as_a_failure(
    client: FlaskClient,
) -> None:
    for _ in range(3):
        resp = sign_in(client, "wrong")
        assert resp.status_code == 401
        assert "Invalid API key." in resp.get_data(as_text=True)
        assert resp.headers.get("Set-Cookie") is None
    # rate_limits.failed_auth: 3/minute; the next failure locks the address out, the right
    # key included.
    assert sign_in(client, "wrong").status_code == 429
    locked = sign_in(client, ROOT)
    assert locked.status_code == 429
    assert "Retry-After" in locked.headers
    assert locked.headers.get("Set-Cookie") is None


def test_a_key_that_is_not_admin_cannot_sign_in(client: FlaskClient) -> None:
    resp = sign_in(client, USER)
    assert resp.status_code == 403
    assert resp.headers.get("Set-Cookie") is None


def test_a_form_post_from_a_script_gets_json_errors(client: FlaskClient) -> None:
    resp = client.post("/status/session", data={"key": "wrong"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["type"] == "authentication_error"


def test_the_key_is_never_taken_from_the_query_string(client: FlaskClient) -> None:
    assert client.get(f"/status?key={ROOT}", headers=HTML).status_code == 401
    assert client.get(f"/status?api_key={ROOT}", headers=HTML).status_code == 401
    resp = client.post(f"/status/session?key={ROOT}", headers=HTML)
    assert resp.status_code == 401
    assert resp.headers.get("Set-Cookie") is None


# ------------------------------------------------------------------ what it renders


def test_the_page_shows_traffic_fallbacks_and_charts(client: FlaskClient, upstream: Any) -> None:
    upstream.replace(responses.POST, f"{URL}/chat/completions", status=503, json={})
    upstream.add(responses.POST, f"{URL}/chat/completions", json=ANSWER)  # for the spare
    resp = chat(client)
    assert resp.status_code == 200 and resp.headers["X-ProxyAPI-Provider"] == "spare"
    upstream.replace(responses.POST, f"{URL}/chat/completions", json=ANSWER)
    for _ in range(3):
        assert chat(client).status_code == 200
    page = client.get("/status", headers=bearer(ROOT)).get_data(as_text=True)
    up = _card(page, "up")
    assert 'data-calls="4"' in up and 'data-errors="1"' in up and 'data-fallbacks="1"' in up
    spare = _card(page, "spare")
    assert 'data-calls="1"' in spare and 'data-errors="0"' in spare
    assert 'data-breaker="closed"' in up
    points = re.findall(r'<polyline points="([^"]+)"', up)
    assert len(points) == 3
    ys = {float(p.split(",")[1]) for p in points[0].split()}
    assert len(ys) > 1  # the calls chart has a peak this minute
    # Limits and budgets as their counters have them: 4 of 50 requests, tokens settled to
    # what the answers used (10 each).
    limits = re.findall(r'<tr data-limit-key="user">(.*?)</tr>', page, re.S)
    assert len(limits) == 2
    cells = [re.findall(r'<td class="num[^"]*">([^<]*)</td>', row) for row in limits]
    assert ["4", "50"] in cells
    assert ["40", "100000"] in cells
    assert re.search(r'data-spend-key="user">.*?data-requests="4"', page, re.S)


def chat(client: FlaskClient) -> Any:
    """One chat request, read to its end and closed (so its budget is settled)."""
    resp = client.post("/v1/chat/completions", json=CHAT, headers=bearer(USER))
    resp.get_data()
    resp.close()
    return resp


def _card(page: str, provider: str) -> str:
    start = page.index(f'data-provider="{provider}"')
    return page[start : page.index("</article>", start)]


def test_the_page_loads_nothing_from_anywhere_and_says_so(client: FlaskClient) -> None:
    for resp in (
        client.get("/status", headers=bearer(ROOT)),
        client.get("/status", headers=HTML),
    ):
        page = resp.get_data(as_text=True)
        assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
        assert "<script" not in page.lower()
        assert "@import" not in page and "url(" not in page
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp
        assert resp.headers["Cache-Control"] == "no-store"
    page = client.get("/status", headers=bearer(ROOT)).get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="15">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_refresh_follows_the_config(upstream: Any) -> None:
    app = create_app(config(refresh=42))
    page = app.test_client().get("/status", headers=bearer(ROOT)).get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="42">' in page


def test_hostile_text_is_escaped(upstream: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = '<script>alert("x")</script>'
    app = create_app(parse_config(config(), source=f"/etc/{hostile}.yaml"))
    real_spend = gather.spend

    def spend(top: int) -> dict[str, Any]:
        found = real_spend(top)
        found["rows"] = [{"key": hostile, "requests": 1, "cost_usd": 0.0, "unpriced": 0}]
        return found

    monkeypatch.setattr(gather, "spend", spend)
    page = app.test_client().get("/status", headers=bearer(ROOT)).get_data(as_text=True)
    assert hostile not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_off_means_no_route_and_no_recorder(upstream: Any) -> None:
    app = create_app(config(enabled=False))
    client = app.test_client()
    assert client.get("/status", headers=bearer(ROOT)).status_code == 404
    assert client.post("/status/session", data={"key": ROOT}).status_code == 404
    up = app.extensions["proxyapi.upstream"]
    assert up.observer is app.extensions["proxyapi.metrics"]  # nothing beside the metrics
    assert "proxyapi.status" not in app.extensions


def test_the_status_config_is_checked() -> None:
    from proxyapi.config import ConfigError

    with pytest.raises(ConfigError, match=r"status\.refresh .*got 0"):
        parse_config(config(refresh=0))
    with pytest.raises(ConfigError, match=r"status\.session_ttl .*got 'long'"):
        parse_config(config(session_ttl="long"))
    with pytest.raises(ConfigError, match="status"):
        parse_config(config(colour="blue"))


def test_the_page_still_renders_when_redis_is_away(upstream: Any) -> None:
    cfg = config()
    cfg["redis"] = {**cfg["redis"], "url": "redis://127.0.0.1:1/0", "timeout": 0.2}
    client = create_app(cfg).test_client()
    resp = client.get("/status", headers={**bearer(ROOT), **HTML})
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert 'data-check="redis">unreachable' in page
    assert "counters unreadable: user: ConnectionError" in page
    assert "The usage log cannot be read (ConnectionError)." in page
