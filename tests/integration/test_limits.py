"""Rate limits through real gunicorn: exact across workers and hosts, token budgets, provider
caps, and what a Redis outage does under each policy."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from tests.conftest import ALICE_KEY, BOB_KEY, SECRET_ENV, UPSTREAM_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.redis_server import RedisServer
from tests.fakes.upstream import FakeUpstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def limited_config(fake: FakeUpstream, **rate_limits: Any) -> dict[str, Any]:
    config = base_config(fake)
    config["auth"]["keys"][0]["limits"] = ["10/minute"]
    config["rate_limits"] = rate_limits
    return config


def chat(
    gw: GatewayProcess, key: str = ALICE_KEY, body: Any = CHAT, path: str = "/v1/chat/completions"
) -> requests.Response:
    # A new connection each time, so requests spread over the workers.
    return requests.post(
        f"{gw.url}{path}", json=body, timeout=10, headers={"Authorization": f"Bearer {key}"}
    )


def test_a_key_limit_is_exact_across_two_hosts_with_two_workers_each(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    config = limited_config(fake)
    host_a = launch(config, env={"REDIS_URL": redis_url}, workers=2)
    host_b = launch(config, env={"REDIS_URL": redis_url}, workers=2)
    results = [chat(host_a if i % 2 else host_b) for i in range(30)]
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 10
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in ok] == list(range(9, -1, -1))
    refused = [r for r in results if r.status_code == 429]
    assert len(refused) == 20
    assert all(r.json()["error"]["type"] == "rate_limit_error" for r in refused)
    assert all(1 <= int(r.headers["Retry-After"]) <= 61 for r in refused)
    assert all("Retry-After" not in r.headers for r in ok)
    assert len(fake.calls()) == 10
    # Both hosts and all four workers took part.
    pids = {w for gw in (host_a, host_b) for w in gw.worker_pids()}
    assert len(pids) == 4
    # Another key has its own counter.
    assert chat(host_a, key=BOB_KEY).status_code == 200


def test_global_and_route_limits(fake: FakeUpstream, launch: Callable[..., GatewayProcess]) -> None:
    config = base_config(fake)
    config["rate_limits"] = {"global": "4/minute", "routes": {"/v1/embeddings": "1/minute"}}
    gw = launch(config)
    emb = {"model": "text-embedding-3-small", "input": "x"}
    assert chat(gw, ALICE_KEY, emb, "/v1/embeddings").status_code == 200
    route_hit = chat(gw, BOB_KEY, emb, "/v1/embeddings")
    assert route_hit.status_code == 429
    assert "for /v1/embeddings" in route_hit.json()["error"]["message"]
    codes = [chat(gw, k).status_code for k in (ALICE_KEY, BOB_KEY, ALICE_KEY, BOB_KEY)]
    # flask-limiter checks the global limit before the route limit, so the refused embeddings
    # call still counted globally: 2 + 2 = 4.
    assert codes == [200, 200, 429, 429]
    assert "whole gateway" in chat(gw, ALICE_KEY).json()["error"]["message"]


def test_token_budget_with_streams(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    config = base_config(fake)
    config["auth"]["keys"][0]["token_limits"] = ["100/minute"]
    gw = launch(config)
    client = sdk(gw)
    # Each stream reserves its prompt (about 11) and the rest of the budget as its cap, and
    # uses 13 (the fake's usage): after 6 of them 22 are left, less than a prompt and the
    # smallest cap (16) need.
    for _ in range(6):
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT["messages"], stream=True
            )
        )
        assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    sent = [c.body for c in fake.calls()]
    assert all(b["stream_options"] == {"include_usage": True} for b in sent)
    assert sent[0]["max_completion_tokens"] == 100 - 11 and sent[-1]["max_completion_tokens"] < 89
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
    assert info.value.code == "token_budget_exceeded"
    assert len(fake.calls()) == 6  # refused before any upstream call
    # Another key is not affected.
    assert chat(gw, BOB_KEY).status_code == 200


def test_provider_cap_falls_back_then_429(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    second = FakeUpstream(api_key=UPSTREAM_KEY).start()
    try:
        config = base_config(fake)
        config["providers"][0]["rate_limit"] = "2/minute"
        config["providers"].append(
            {
                **config["providers"][0],
                "name": "second",
                "base_url": second.base_url,
                "priority": 2,
                "rate_limit": "1/minute",
            }
        )
        gw = launch(config)
        served = [chat(gw).headers.get("X-ProxyAPI-Provider") for _ in range(3)]
        assert served == ["fake", "fake", "second"]
        refused = chat(gw)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "upstream_rate_limited"
        assert (len(fake.calls()), len(second.calls())) == (2, 1)
    finally:
        second.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may kill."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("policy", "after"),
    [
        ("fail-open", [200] * 8),
        ("fail-closed", [503] * 8),
        ("per-process", [200] * 5 + [429] * 3),
    ],
)
def test_redis_killed_mid_run(
    policy: str,
    after: list[int],
    fake: FakeUpstream,
    launch: Callable[..., GatewayProcess],
    own_redis: RedisServer,
) -> None:
    config = base_config(fake)
    config["auth"]["keys"][0]["limits"] = ["5/minute"]
    config["rate_limits"] = {"on_storage_error": policy}
    gw = launch(config, env={"REDIS_URL": own_redis.url})
    assert [chat(gw).status_code for _ in range(3)] == [200, 200, 200]
    own_redis.stop()
    responses = [chat(gw) for _ in range(8)]
    assert [r.status_code for r in responses] == after
    if policy == "fail-closed":
        assert responses[0].json()["error"]["code"] == "rate_limit_storage_unavailable"
    assert "Traceback" not in gw.logs() or policy != "fail-closed"


def test_several_workers_with_per_process_limits_are_refused(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    config = limited_config(fake)
    gw = GatewayProcess(tmp_path, config, env=SECRET_ENV, workers=2)
    with pytest.raises(RuntimeError) as info:
        gw.start(timeout=15)
    assert "refusing to start" in str(info.value) and "2 workers" in str(info.value)
    config["rate_limits"] = {"allow_per_process": True}
    allowed = GatewayProcess(tmp_path, config, env=SECRET_ENV, workers=2)
    try:
        allowed.start()
        assert chat(allowed).status_code == 200
    finally:
        allowed.stop()


def test_config_check_and_logs_never_show_keys(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(limited_config(fake))
    for _ in range(11):
        chat(gw)
    logs = gw.logs()
    assert "key=alice" in logs and ALICE_KEY not in logs
    assert json.dumps(ALICE_KEY) not in logs
