"""Response caching through real gunicorn: hits across workers (files and Redis), client
controls, stream replay to the openai SDK, single flight, tenants, admin, Redis down."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable
from typing import Any

import openai
import pytest
import requests

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.redis_server import free_port
from tests.fakes.upstream import REPLY_TEXT, FakeUpstream, Fault
from tests.schemas import assert_valid

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def cache_config(fake: FakeUpstream, **cache: Any) -> dict[str, Any]:
    config = base_config(fake)
    config["cache"] = {"responses": "deterministic", **cache}
    config["auth"]["keys"][0]["admin"] = True  # alice
    return config


def post(
    gw: GatewayProcess, body: dict[str, Any] = CHAT, key: str = ALICE_KEY, **headers: str
) -> requests.Response:
    # A new connection each time, so requests spread over the workers.
    return requests.post(
        f"{gw.url}/v1/chat/completions",
        json=body,
        timeout=15,
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def hit_pids(gw: GatewayProcess) -> set[int]:
    return {
        int(p)
        for p in re.findall(r"\[(\d+)\] \[[^]]+\] proxyapi\.access: POST .* cache=HIT", gw.logs())
    }


@pytest.mark.parametrize("backend", ["filesystem", "redis"])
def test_a_hit_is_served_by_every_worker(
    backend: str, fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    env = {"REDIS_URL": redis_url} if backend == "redis" else {}
    gw = launch(cache_config(fake, backend=backend), env=env, workers=2)
    first = post(gw)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    key = first.headers["X-Cache-Key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    hits: list[requests.Response] = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        # Which worker accepts a connection is up to the kernel: keep going until both have.
        for _ in range(10):
            hits += pool.map(lambda _: post(gw), range(30))
            if len(hit_pids(gw)) == 2:
                break
    assert {r.headers["X-Cache"] for r in hits} == {"HIT"}
    assert all(r.content == first.content for r in hits)
    assert all(r.headers["X-Cache-Key"] == key and int(r.headers["Age"]) >= 0 for r in hits)
    assert all(r.headers["X-ProxyAPI-Provider"] == "fake" for r in hits)
    assert len(fake.calls("/chat/completions")) == 1
    assert len(hit_pids(gw)) == 2, "both workers should have served hits"


def test_client_controls(fake: FakeUpstream, launch: Callable[..., GatewayProcess]) -> None:
    gw = launch(cache_config(fake))
    assert post(gw, **{"Cache-Control": "no-store"}).headers["X-Cache"] == "MISS"
    assert post(gw).headers["X-Cache"] == "MISS"  # the no-store answer was not kept
    assert post(gw).headers["X-Cache"] == "HIT"
    refreshed = post(gw, **{"Cache-Control": "no-cache"})
    assert refreshed.headers["X-Cache"] == "REFRESH"
    assert len(fake.calls()) == 3
    import time

    time.sleep(1.1)
    stale = post(gw, **{"Cache-Control": "max-age=0"})
    assert stale.headers["X-Cache"] == "MISS"  # older than the client accepts
    fresh = post(gw, **{"Cache-Control": "max-age=60"})
    assert fresh.headers["X-Cache"] == "HIT" and int(fresh.headers["Age"]) <= 1
    assert len(fake.calls()) == 4
    warm = post(gw, {**CHAT, "temperature": 0.7})
    assert warm.headers["X-Cache"] == "BYPASS" and "X-Cache-Key" not in warm.headers


def test_cached_answer_replays_as_a_stream_to_the_sdk(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    gw = launch(cache_config(fake))
    client = sdk(gw)
    original = client.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT["messages"], temperature=0
    )
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=CHAT["messages"],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert stream.headers["X-Cache"] == "HIT"
    chunks = list(stream.parse())
    for chunk in chunks:
        data = chunk.model_dump(exclude_unset=True)
        if data.get("usage") is None:
            data.pop("usage", None)
        assert_valid("CreateChatCompletionStreamResponse", data)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY_TEXT == original.choices[0].message.content
    assert (
        chunks[-1].usage is not None
        and chunks[-1].usage.total_tokens == original.usage.total_tokens
    )  # type: ignore[union-attr]
    assert len(fake.calls()) == 1


def test_single_flight_ten_concurrent_requests_one_upstream_call(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gw = launch(cache_config(fake), env={"REDIS_URL": redis_url}, workers=2)
    fake.mode = Fault(delay=1.0)  # slow, so all ten arrive while the first is in flight
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: post(gw), range(10)))
    assert all(r.status_code == 200 for r in results)
    assert sorted(r.headers["X-Cache"] for r in results) == ["HIT"] * 9 + ["MISS"]
    assert len(fake.calls()) == 1


def test_tenants_do_not_share_answers_unless_configured(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    own = launch(cache_config(fake))
    assert post(own).headers["X-Cache"] == "MISS"
    assert post(own, key=BOB_KEY).headers["X-Cache"] == "MISS"  # alice's answer is alice's
    shared = launch(cache_config(fake, scope="shared", dir=str(own.tmp_dir / "shared-cache")))
    assert post(shared).headers["X-Cache"] == "MISS"
    assert post(shared, key=BOB_KEY).headers["X-Cache"] == "HIT"


def test_admin_stats_and_clear(fake: FakeUpstream, launch: Callable[..., GatewayProcess]) -> None:
    gw = launch(cache_config(fake))
    post(gw)
    post(gw)
    admin = {"Authorization": f"Bearer {ALICE_KEY}"}
    denied = requests.get(
        f"{gw.url}/v1/cache/stats", headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=5
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "admin_required"
    stats = requests.get(f"{gw.url}/v1/cache/stats", headers=admin, timeout=5).json()
    assert stats["backend"] == "filesystem"
    responses = stats["categories"]["responses"]
    assert responses["hits"] == 1 and responses["misses"] == 1 and responses["sets"] == 1
    assert stats["hit_rate"] == 0.5 and stats["backend_size"]["entries"] >= 1
    bad = requests.delete(f"{gw.url}/v1/cache?category=nope", headers=admin, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "category"
    cleared = requests.delete(f"{gw.url}/v1/cache?category=responses", headers=admin, timeout=5)
    assert cleared.json() == {"cleared": ["responses"]}
    assert post(gw).headers["X-Cache"] == "MISS"


def test_models_list_is_cached_and_warm(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    config = cache_config(fake)
    config["providers"][0]["models"] = ["*"]
    gw = launch(config)
    client = sdk(gw)
    for _ in range(3):
        assert [m.id for m in client.models.list()] == fake.models
    assert len(fake.calls("/models")) == 1  # one provider listing for three client calls


def test_redis_down_requests_are_still_answered(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    gw = launch(cache_config(fake, backend="redis", redis_url=dead))
    results = [post(gw) for _ in range(3)]
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.headers["X-Cache"] == "MISS" for r in results)
    assert len(fake.calls()) == 3
    assert "serving without the cache" in gw.logs()
