"""Shared state through real gunicorn and real Redis: no pickle, one namespace per deployment,
budgets that hold across hosts, Redis Cluster, Sentinel failover and TLS."""

from __future__ import annotations

import concurrent.futures
import json
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
import requests

from proxyapi.auth import hash_key
from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.redis_server import RedisServer
from tests.fakes.redis_topologies import RedisCluster, RedisSentinels, RedisTLS
from tests.fakes.upstream import FakeUpstream, Fault

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
PLANTED = "proxyapi-pwned"


def post(
    gw: GatewayProcess, body: dict[str, Any] = CHAT, key: str = ALICE_KEY
) -> requests.Response:
    return requests.post(
        f"{gw.url}/v1/chat/completions",
        json=body,
        timeout=15,
        headers={"Authorization": f"Bearer {key}"},
    )


def cached_config(fake: FakeUpstream, **extra: Any) -> dict[str, Any]:
    config = base_config(fake)
    config["cache"] = {"responses": "deterministic"}
    config["auth"]["keys"][0]["admin"] = True
    config.update(extra)
    return config


class Planted:
    """A pickle that, once loaded, creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.marker, "w"))


def namespace_of(gw: GatewayProcess) -> str:
    return str(requests.get(f"{gw.url}/health/ready", timeout=5).json()["namespace"]["name"])


# ------------------------------------------------------------------ no pickle


def test_a_pickle_planted_in_redis_runs_nothing(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str, tmp_path: Path
) -> None:
    gw = launch(cached_config(fake), env={"REDIS_URL": redis_url})
    ns = namespace_of(gw)
    client = redis.Redis.from_url(redis_url)
    marker = tmp_path / PLANTED
    # The key every cacheable request reads first (the category's generation), and an entry.
    client.set(f"{ns}:pxc:gen:responses", b"!" + pickle.dumps(Planted(marker)))
    first = post(gw)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    for key in client.scan_iter(match=f"{ns}:pxc:responses:*"):
        assert client.get(key).startswith(b"pxj1:")  # type: ignore[union-attr]
        client.set(key, b"!" + pickle.dumps(Planted(marker)))
    again = post(gw)
    assert again.status_code == 200 and again.headers["X-Cache"] == "MISS"
    assert not marker.exists()
    assert "cache: a stored value was refused and treated as a miss" in gw.logs()


def test_a_cache_folder_others_can_write_stops_the_start(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    # Another user (here: anybody) prepared the folder in the shared temp dir.
    prepared = tmp_path / f"proxyapi-cache-{os.geteuid()}"
    prepared.mkdir()
    prepared.chmod(0o777)
    with pytest.raises(RuntimeError) as info:
        launch(cached_config(fake))
    assert "can be written by other users (mode 0777)" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_pickle_planted_in_the_cache_folder_runs_nothing(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    gw = launch(cached_config(fake))
    assert post(gw).headers["X-Cache"] == "MISS"
    (folder,) = [p for p in tmp_path.glob("proxyapi-cache-*/*") if p.is_dir()]
    marker = tmp_path / PLANTED
    for path in folder.iterdir():
        assert b"pxj1:" in path.read_bytes()
        path.write_bytes(path.read_bytes()[:4] + pickle.dumps(Planted(marker)))
    assert post(gw).status_code == 200
    assert not marker.exists()


def test_the_metrics_folder_is_private_and_removed_after(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    gw = launch(base_config(fake))
    (folder,) = tmp_path.glob("proxyapi-metrics-*")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert any(folder.glob("*.db"))
    gw.stop()
    assert not folder.exists()
    # A folder the operator named is emptied of metric files, never removed.
    theirs = tmp_path / "metrics"
    theirs.mkdir(mode=0o700)
    (theirs / "keep.txt").write_text("mine")
    gw = launch(base_config(fake), env={"PROMETHEUS_MULTIPROC_DIR": str(theirs)})
    assert any(theirs.glob("*.db"))
    gw.stop()
    assert (theirs / "keep.txt").exists() and not any(theirs.glob("*.db"))


# ------------------------------------------------------------------ namespaces


def test_two_deployments_on_one_redis_share_nothing(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    # Same file, different secrets: staging and production.
    staging = cached_config(fake)
    staging["auth"]["keys"][1]["limits"] = ["2/minute"]  # bob
    production = json.loads(json.dumps(staging))
    production_bob = "pk-production-bob"
    production["auth"]["keys"][1]["sha256"] = hash_key(production_bob)
    a = launch(staging, env={"REDIS_URL": redis_url})
    b = launch(production, env={"REDIS_URL": redis_url})
    assert namespace_of(a) != namespace_of(b)
    # Neither gets the other's cached answers...
    assert [post(a).headers["X-Cache"] for _ in range(2)] == ["MISS", "HIT"]
    assert post(b).headers["X-Cache"] == "MISS"
    # ...nor spends the other's per-key limit...
    assert [post(a, key=BOB_KEY).status_code for _ in range(3)] == [200, 200, 429]
    assert post(b, key=production_bob).status_code == 200
    # ...nor clears the other's cache.
    cleared = requests.delete(
        f"{b.url}/v1/cache", headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=5
    )
    assert cleared.status_code == 200
    assert post(a).headers["X-Cache"] == "HIT"
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).scan_iter()]
    mine = (namespace_of(a), namespace_of(b), "{" + namespace_of(a), "{" + namespace_of(b))
    limits = [k for k in keys if k.startswith("LIMITS:")]
    assert all(k.startswith(mine) for k in keys if not k.startswith("LIMITS:"))
    assert limits and all(namespace_of(a) in k or namespace_of(b) in k for k in limits)


def test_hosts_of_one_deployment_share_state_and_one_namespace_can_be_set(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    config = cached_config(fake)
    env = {"REDIS_URL": redis_url, "PROXYAPI_NAMESPACE": "team-blue"}
    one, two = launch(config, env=env), launch(config, env=env)
    ready = requests.get(f"{one.url}/health/ready", timeout=5).json()
    assert ready["namespace"] == {"name": "team-blue", "source": "PROXYAPI_NAMESPACE"}
    assert post(one).headers["X-Cache"] == "MISS"
    assert post(two).headers["X-Cache"] == "HIT"
    client = redis.Redis.from_url(redis_url)
    assert any(k.startswith(b"team-blue:pxc:") for k in client.scan_iter())
    assert any(k.startswith(b"team-blue:breaker:") for k in client.scan_iter())


def test_stored_responses_are_shared_by_hosts_and_kept_from_other_deployments(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    """A Responses follow-up may land on any host of a deployment, never on another one's."""
    config = base_config(fake)
    env = {"REDIS_URL": redis_url}
    one, two = launch(config, env=env), launch(config, env=env)
    other = json.loads(json.dumps(config))
    other["auth"]["keys"][1]["sha256"] = hash_key("pk-other-deployment")
    elsewhere = launch(other, env=env)
    assert namespace_of(elsewhere) != namespace_of(one)

    def client(gw: GatewayProcess) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ALICE_KEY, max_retries=0)

    first = client(one).responses.create(model="gpt-4o-mini", input="My name is Ada.")
    follow = client(two).responses.create(
        model="gpt-4o-mini", input="What is my name?", previous_response_id=first.id
    )
    assert [m["role"] for m in fake.requests[-1].body["messages"]] == ["user", "assistant", "user"]
    assert client(two).responses.retrieve(follow.id).id == follow.id
    # The same key name and secret in another deployment: nothing of the first one's.
    with pytest.raises(openai.NotFoundError):
        client(elsewhere).responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError):
        client(elsewhere).responses.create(
            model="gpt-4o-mini", input="?", previous_response_id=first.id
        )
    stored = [k for k in redis.Redis.from_url(redis_url).scan_iter() if b"stored_responses" in k]
    assert len(stored) == 2 and all(k.startswith(namespace_of(one).encode()) for k in stored)
    # A value someone else wrote there is a miss, not a crash.
    redis.Redis.from_url(redis_url).set(stored[0], b"pxj1:{not json")
    assert sum(_found(client(one), rid) for rid in (first.id, follow.id)) == 1


def _found(client: openai.OpenAI, response_id: str) -> bool:
    try:
        client.responses.retrieve(response_id)
    except openai.NotFoundError:
        return False
    return True


# ------------------------------------------------------------------ budgets


def budget_config(fake: FakeUpstream, budget: int, **key: Any) -> dict[str, Any]:
    config = base_config(fake)
    config["auth"]["keys"][0].update({"token_limits": [f"{budget}/hour"], **key})
    return config


def test_a_budget_holds_across_two_hosts_of_two_workers(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    budget = 400
    config = budget_config(fake, budget)
    env = {"REDIS_URL": redis_url}
    hosts = [launch(config, env=env, workers=2) for _ in range(2)]
    body = {**CHAT, "temperature": 0.7, "max_tokens": 10}  # reserves 11 + 10; uses 8 + 5
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda i: post(hosts[i % 2], body), range(80)))
    served = [r.json()["usage"]["total_tokens"] for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert served and refused
    assert {r.json()["error"]["code"] for r in refused} == {"token_budget_exceeded"}
    # The bound (docs/configuration.md): at most what in-flight requests used beyond their
    # reservation; the fake uses less than it is reserved, so the budget itself.
    assert sum(served) <= budget
    assert len(fake.calls("/chat/completions")) == len(served)


def test_max_concurrent_is_exact_across_hosts(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    config = budget_config(fake, 1_000_000, max_concurrent=3)
    env = {"REDIS_URL": redis_url}
    hosts = [launch(config, env=env, workers=2) for _ in range(2)]
    fake.mode = Fault(delay=1.0)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: post(hosts[i % 2], CHAT), range(10)))
    fake.mode = None
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 3 + [429] * 7
    codes = {r.json()["error"]["code"] for r in answers if r.status_code == 429}
    assert codes == {"concurrency_limit_exceeded"}
    assert post(hosts[0]).status_code == 200  # the slots were given back


def test_a_stream_the_client_leaves_is_charged_what_it_relayed(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    gw = launch(budget_config(fake, 10_000))
    client = sdk(gw)
    fake.default_chunks, fake.default_chunk_delay = 40, 0.05
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT["messages"], stream=True
    )
    for i, _chunk in enumerate(stream):
        if i == 5:
            break
    stream.close()  # the client hangs up before the usage chunk
    time.sleep(0.5)
    fake.default_chunks, fake.default_chunk_delay = 5, 0.0
    resp = post(gw, {**CHAT, "max_tokens": 10})
    remaining = int(resp.headers["X-RateLimit-Remaining-Tokens"])
    charged = 10_000 - 21 - remaining  # minus this request's own reservation
    assert charged > 11  # the prompt estimate and the text relayed, never 0
    assert charged < 10_000 - 21


# ------------------------------------------------------------------ beyond one node


def test_the_gateway_runs_on_a_redis_cluster(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_cluster: RedisCluster
) -> None:
    redis_cluster.flushall()
    config = cached_config(fake)
    config["auth"]["keys"][0].update({"limits": ["5/minute"], "token_limits": ["100000/hour"]})
    gw = launch(config, env={"REDIS_URL": redis_cluster.limits_url}, workers=2)
    first, second = post(gw), post(gw)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert [post(gw, {**CHAT, "temperature": 1}).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    providers = requests.get(  # bob: alice has spent her 5/minute
        f"{gw.url}/v1/providers", headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=5
    ).json()
    assert providers["scope"]["breakers"] == "shared"
    ready = requests.get(f"{gw.url}/health/ready", timeout=5).json()
    assert ready["checks"]["redis"] == "ok" and ready["degraded"] is False
    keys = [k.decode() for k in redis_cluster.client().scan_iter()]
    assert any(":tokens:" in k for k in keys) and any(":pxc:" in k for k in keys)
    assert "Traceback" not in gw.logs()


def test_sentinel_failover_mid_load(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_sentinels: RedisSentinels
) -> None:
    config = cached_config(fake)
    config["auth"]["keys"][0].update(
        {"limits": ["100000/minute"], "token_limits": ["1000000/hour"]}
    )
    config["redis"] = {"timeout": 0.3}
    gw = launch(config, env={"REDIS_URL": redis_sentinels.url})
    assert post(gw).status_code == 200
    statuses: list[int] = []
    try:
        old = redis_sentinels.kill_master()
        until = time.monotonic() + 25
        new = None
        while time.monotonic() < until:
            statuses.append(post(gw, {**CHAT, "temperature": 1}).status_code)
            if new is None:
                try:
                    new = redis_sentinels.wait_for_failover(old, timeout=0.2)
                except (TimeoutError, RuntimeError, redis.RedisError):
                    continue
                after = len(statuses)
            elif len(statuses) > after + 10:
                break
        assert new is not None, "no failover within 25 s"
        # Every request was answered (on_storage_error: per-process while Redis was gone).
        assert set(statuses) == {200}, statuses
        # And the gateway writes to the promoted master, without a restart.
        promoted = redis.Redis(host=new[0], port=new[1])
        assert any(b":tokens:" in k for k in promoted.scan_iter())
        assert post(gw).headers["X-Cache"] in ("MISS", "HIT")
    finally:
        redis_sentinels.restore()


def test_rediss_with_a_private_ca(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_tls: RedisTLS
) -> None:
    config = cached_config(fake, redis={"ca_file": redis_tls.ca_file})
    gw = launch(config, env={"REDIS_URL": redis_tls.url})
    assert post(gw).headers["X-Cache"] == "MISS" and post(gw).headers["X-Cache"] == "HIT"
    assert requests.get(f"{gw.url}/health/ready", timeout=5).json()["checks"]["redis"] == "ok"
    # Without the CA the server cannot be verified: Redis counts as down, requests go on.
    gw2 = launch(cached_config(fake), env={"REDIS_URL": redis_tls.url})
    assert post(gw2).status_code == 200
    ready = requests.get(f"{gw2.url}/health/ready", timeout=5).json()
    assert ready["checks"]["redis"] == "unreachable" and ready["degraded"] is True


def test_redis_errors_are_counted_and_reported(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path).start()
    gw = launch(budget_config(fake, 100_000), env={"REDIS_URL": server.url})
    assert post(gw).status_code == 200
    server.stop()
    assert post(gw, {**CHAT, "temperature": 1}).status_code == 200  # per-process meanwhile
    ready = requests.get(f"{gw.url}/health/ready", timeout=5).json()
    assert ready["status"] == "ready" and ready["degraded"] is True
    metrics = requests.get(f"{gw.url}/metrics", timeout=5).text
    assert 'proxyapi_redis_errors_total{component="budgets"}' in metrics
    assert ALICE_KEY not in metrics
