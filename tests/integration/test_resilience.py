"""Retries, breakers and fallback through real gunicorn, with two fake providers.

``sick`` (priority 1) and ``healthy`` (priority 2) serve the same model; faults are injected
into ``sick``.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import requests

from proxyapi.upstream.breakers import STATE_CACHE_SECONDS
from tests.conftest import ALICE_KEY, UPSTREAM_KEY
from tests.fakes.gateway import GatewayProcess
from tests.fakes.redis_server import free_port
from tests.fakes.upstream import FakeUpstream, Fault

AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
FAIL_MAX = 3
RESET_TIMEOUT = 2


@pytest.fixture(scope="module")
def sick_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def sick(sick_server: FakeUpstream) -> Iterator[FakeUpstream]:
    sick_server.reset()
    yield sick_server
    sick_server.reset()


def provider(name: str, url: str, priority: int, **over: Any) -> dict[str, Any]:
    p = {
        "name": name,
        "type": "openai",
        "base_url": url,
        "api_key_env": "FAKE_UPSTREAM_KEY",
        "models": ["gpt-4o-mini"],
        "priority": priority,
        "timeout": {"connect": 1, "read": 1},
        "retry": {"max_attempts": 2, "base_delay": 0.05, "max_delay": 0.1, "retry_after_max": 1.5},
        "breaker": {"fail_max": FAIL_MAX, "reset_timeout": RESET_TIMEOUT},
    }
    p.update(over)
    return p


def config_for(*providers: dict[str, Any], **server: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"heartbeat_interval": 1.0, "first_token_timeout": 1.0, **server},
        "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
        "providers": list(providers),
    }
    return cfg


@pytest.fixture
def pair(
    sick: FakeUpstream, fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> GatewayProcess:
    """A gateway with sick (tried first) and healthy (the session's fake) for one model."""
    return launch(
        config_for(provider("sick", sick.base_url, 1), provider("healthy", fake.base_url, 2))
    )


def chat(
    gw: GatewayProcess, body: dict[str, Any] | None = None, **headers: str
) -> requests.Response:
    return requests.post(
        f"{gw.url}/v1/chat/completions", json=body or CHAT, headers={**AUTH, **headers}, timeout=20
    )


def providers_status(gw: GatewayProcess) -> dict[str, Any]:
    data = requests.get(f"{gw.url}/v1/providers", headers=AUTH, timeout=5).json()
    return {p["name"]: p for p in data["data"]}


FAILURES = {
    "500": Fault(status=500),
    "502": Fault(status=502),
    "503": Fault(status=503),
    "reset": Fault(reset=True),
    "hang": Fault(delay=3.0),  # past the 1 s read timeout
    "broken-json": Fault(body=b'{"id": "x", "choices": [tru'),
    "401": Fault(status=401),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_each_provider_failure_falls_back_and_opens_the_breaker(
    kind: str, pair: GatewayProcess, sick: FakeUpstream, fake: FakeUpstream
) -> None:
    sick.mode = FAILURES[kind]
    for _ in range(FAIL_MAX + 4):
        resp = chat(pair)
        assert resp.status_code == 200, resp.text
        assert resp.headers["X-ProxyAPI-Provider"] == "healthy"
    # Retried (5xx, resets) or not (timeouts, 401, broken answers): at most 2 attempts per
    # call, and no call at all once the breaker opened after FAIL_MAX failed calls.
    assert FAIL_MAX <= len(sick.calls()) <= 2 * FAIL_MAX
    assert resp.headers["X-ProxyAPI-Attempts"] == "1"
    status = providers_status(pair)
    assert status["sick"]["breaker"]["state"] == "open"
    assert status["sick"]["errors"] == FAIL_MAX and status["sick"]["fallbacks_from"] == FAIL_MAX
    assert status["healthy"]["fallbacks_to"] == FAIL_MAX


@pytest.mark.parametrize(
    ("fault", "sick_calls"),
    [(Fault(status=429, headers={"Retry-After": "30"}), 1), (Fault(status=404), FAIL_MAX + 2)],
    ids=["429-long-retry-after", "404-model-not-there"],
)
def test_rate_limited_or_unknown_model_falls_back_without_opening(
    fault: Fault, sick_calls: int, pair: GatewayProcess, sick: FakeUpstream
) -> None:
    sick.mode = fault
    started = time.monotonic()
    for _ in range(FAIL_MAX + 2):
        assert chat(pair).headers["X-ProxyAPI-Provider"] == "healthy"
    assert time.monotonic() - started < 3  # a 30 s Retry-After is not slept...
    # ...but honoured: the rate-limited provider is left alone for 30 s. An unknown model is
    # not a failure either: that provider is still asked each time.
    assert len(sick.calls()) == sick_calls
    assert providers_status(pair)["sick"]["breaker"]["state"] == "closed"


def test_a_retry_recovers_on_the_same_provider(pair: GatewayProcess, sick: FakeUpstream) -> None:
    sick.script(Fault(status=503))
    resp = chat(pair)
    assert resp.headers["X-ProxyAPI-Provider"] == "sick"
    assert resp.headers["X-ProxyAPI-Attempts"] == "2"


def test_short_retry_after_is_honoured(pair: GatewayProcess, sick: FakeUpstream) -> None:
    sick.script(Fault(status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    resp = chat(pair)
    assert time.monotonic() - started >= 1.0
    assert resp.headers["X-ProxyAPI-Provider"] == "sick"
    assert resp.headers["X-ProxyAPI-Attempts"] == "2"


def test_client_errors_are_relayed_without_fallback(
    pair: GatewayProcess, sick: FakeUpstream, fake: FakeUpstream
) -> None:
    sick.mode = Fault(status=400)
    for _ in range(FAIL_MAX + 1):
        assert chat(pair).status_code == 400
    assert fake.calls() == []
    assert providers_status(pair)["sick"]["breaker"]["state"] == "closed"


def test_half_open_after_reset_timeout_then_closed(
    pair: GatewayProcess, sick: FakeUpstream
) -> None:
    sick.mode = Fault(status=500)
    for _ in range(FAIL_MAX):
        chat(pair)
    assert providers_status(pair)["sick"]["breaker"]["state"] == "open"
    sick.mode = None  # the provider recovers
    assert chat(pair).headers["X-ProxyAPI-Provider"] == "healthy"  # still open
    time.sleep(RESET_TIMEOUT + 0.2)
    resp = chat(pair)  # the trial call after reset_timeout
    assert resp.headers["X-ProxyAPI-Provider"] == "sick"
    assert providers_status(pair)["sick"]["breaker"]["state"] == "closed"


def test_every_breaker_open_gives_503_with_retry_after(
    sick: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(config_for(provider("sick", sick.base_url, 1)))
    sick.mode = Fault(status=503)
    assert [chat(gw).status_code for _ in range(FAIL_MAX)] == [502] * FAIL_MAX
    resp = chat(gw)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "circuit_open"
    assert 1 <= int(resp.headers["Retry-After"]) <= RESET_TIMEOUT


def test_unreachable_provider_falls_back(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gw = launch(config_for(provider("dead", dead, 1), provider("healthy", fake.base_url, 2)))
    resp = chat(gw)
    assert resp.headers["X-ProxyAPI-Provider"] == "healthy"
    assert resp.headers["X-ProxyAPI-Attempts"] == "3"  # refused twice (one retry), then healthy
    alone = launch(config_for(provider("dead", dead, 1)))
    err = chat(alone).json()["error"]
    assert err["code"] == "upstream_unreachable"


def test_deadline_bounds_retries_and_fallbacks(
    sick: FakeUpstream, fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    slow = {"timeout": {"connect": 1, "read": 10}}
    gw = launch(
        config_for(
            provider("sick", sick.base_url, 1, **slow),
            provider("healthy", fake.base_url, 2, **slow),
        )
    )
    sick.mode = Fault(delay=5)
    fake.mode = Fault(delay=5)
    started = time.monotonic()
    resp = chat(gw, **{"X-ProxyAPI-Timeout": "1.5"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"]["code"] == "deadline_exceeded"
    assert 1.4 <= elapsed < 2.5


# ---------------------------------------------------------------------------- streams


def stream_events(gw: GatewayProcess) -> tuple[requests.Response, list[bytes]]:
    resp = requests.post(
        f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH, timeout=20
    )
    return resp, [e for e in resp.content.split(b"\n\n") if e.startswith(b"data: ")]


@pytest.mark.parametrize(
    "fault",
    [Fault(status=500), Fault(reset=True), Fault(reset_after=0), Fault(stall_after=0, stall_for=5)],
    ids=["500", "reset", "reset-before-first-event", "no-first-event-in-time"],
)
def test_stream_falls_back_before_its_first_byte(
    fault: Fault, pair: GatewayProcess, sick: FakeUpstream
) -> None:
    sick.mode = fault
    started = time.monotonic()
    resp, events = stream_events(pair)
    assert resp.status_code == 200
    assert resp.headers["X-ProxyAPI-Provider"] == "healthy"
    assert events[-1] == b"data: [DONE]"
    assert time.monotonic() - started < 4  # first_token_timeout is 1 s


def test_stream_failing_after_its_first_byte_ends_with_an_error_event(
    pair: GatewayProcess, sick: FakeUpstream, fake: FakeUpstream
) -> None:
    sick.mode = Fault(chunks=5, reset_after=3)
    resp, events = stream_events(pair)
    assert resp.headers["X-ProxyAPI-Provider"] == "sick"
    assert b"tok1" in events[2]
    assert json.loads(events[-1][6:])["error"]["code"] == "upstream_connection_broken"
    assert fake.calls() == []  # no fallback once the client has bytes
    status = providers_status(pair)["sick"]
    assert status["breaker"]["fail_counter"] == 1 and status["errors"] == 1


def test_sdk_stream_survives_a_failing_first_provider(
    pair: GatewayProcess, sick: FakeUpstream, sdk: Callable[..., openai.OpenAI]
) -> None:
    sick.mode = Fault(status=503)
    client = sdk(pair)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], stream=True
        )
        if c.choices
    )
    assert text == "tok0 tok1 tok2 tok3 tok4 "


# ---------------------------------------------------------------------------- shared breakers


def pids_serving(gw: GatewayProcess) -> set[int]:
    return {
        int(p) for p in re.findall(r"INFO \[(\d+)\] \[[^]]+\] proxyapi\.access: POST", gw.logs())
    }


def test_breaker_opened_through_one_worker_is_open_on_the_other(
    sick: FakeUpstream,
    fake: FakeUpstream,
    launch: Callable[..., GatewayProcess],
    redis_url: str,
) -> None:
    gw = launch(
        config_for(
            provider("sick", sick.base_url, 1, retry={"max_attempts": 1}),
            provider("healthy", fake.base_url, 2),
        ),
        env={"REDIS_URL": redis_url},
        workers=2,
    )
    sick.mode = Fault(status=500)
    one_connection = requests.Session()  # keep-alive: one worker opens the breaker
    for _ in range(FAIL_MAX):
        resp = one_connection.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=AUTH)
        assert resp.headers["X-ProxyAPI-Provider"] == "healthy"
    assert len(sick.calls()) == FAIL_MAX
    time.sleep(STATE_CACHE_SECONDS + 0.05)  # how long a worker may trust its last read
    # Now many new connections, spread over both workers: none reaches the sick provider.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: chat(gw).headers["X-ProxyAPI-Provider"], range(40)))
    assert set(statuses) == {"healthy"}
    assert len(sick.calls()) == FAIL_MAX
    assert len(pids_serving(gw)) == 2, "the requests did not reach both workers"
    seen: dict[int, str] = {}
    for _ in range(60):
        data = requests.get(f"{gw.url}/v1/providers", headers=AUTH, timeout=5).json()
        seen[data["worker_pid"]] = data["data"][0]["breaker"]["state"]
        if len(seen) == 2:
            break
    assert seen and set(seen.values()) == {"open"}
    assert data["scope"]["breakers"] == "shared"
    # Counters are merged over both workers once each has shared its figures (every 2 s).
    time.sleep(2.5)
    status = requests.get(f"{gw.url}/v1/providers", headers=AUTH, timeout=5).json()
    assert status["scope"] == {
        "counters": "all workers",
        "workers_reporting": 2,
        "breakers": "shared",
    }
    merged = {p["name"]: p for p in status["data"]}
    assert merged["sick"]["requests"] == FAIL_MAX and merged["sick"]["errors"] == FAIL_MAX
    assert merged["healthy"]["requests"] == FAIL_MAX + 40
    assert merged["healthy"]["pool"]["connections_opened"] >= 2  # one pool per worker


def test_redis_down_at_boot_does_not_stop_the_gateway(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(
        config_for(provider("healthy", fake.base_url, 1)),
        env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    assert chat(gw).status_code == 200
    assert "Redis unavailable" in gw.logs()
