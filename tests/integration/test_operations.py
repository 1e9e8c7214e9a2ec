"""Operations through real gunicorn: merged metrics across workers and restarts, health, JSON
logs, and config reload on SIGHUP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxyapi.auth import hash_key
from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.redis_server import RedisServer
from tests.fakes.upstream import FakeUpstream, Fault

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ROUTE = "completions.chat_completions"


def chat(gw: GatewayProcess, key: str = ALICE_KEY, **extra: Any) -> requests.Response:
    # A new connection each time, so requests spread over the workers.
    return requests.post(
        f"{gw.url}/v1/chat/completions",
        json={**CHAT, **extra},
        timeout=15,
        headers={"Authorization": f"Bearer {key}"},
    )


def scrape(gw: GatewayProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = requests.get(f"{gw.url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_are_exact_over_three_workers_through_restarts(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(base_config(fake), env={"GUNICORN_MAX_REQUESTS": "7"}, workers=3)
    n = 60
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: chat(gw), range(n)))
    assert [r.status_code for r in answers] == [200] * n
    prompt = sum(r.json()["usage"]["prompt_tokens"] for r in answers)
    completion = sum(r.json()["usage"]["completion_tokens"] for r in answers)
    # Each worker served at most 7 requests before being replaced: many have come and gone
    # (the last replacements may still be booting on a busy machine).
    deadline = time.monotonic() + 5
    while len(gw.worker_pids()) < n // 7 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(gw.worker_pids()) >= n // 7
    # A request is counted when its response closes, just after its last byte reached the
    # client: give the last ones a moment.
    deadline = time.monotonic() + 3
    samples = scrape(gw)
    while value(samples, "proxyapi_requests_total", route=ROUTE, status="200") < n:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
        samples = scrape(gw)
    assert value(samples, "proxyapi_requests_total", route=ROUTE, status="200") == n
    assert value(samples, "proxyapi_request_duration_seconds_count", route=ROUTE) == n
    assert value(samples, "proxyapi_gateway_overhead_seconds_count", route=ROUTE) == n
    assert value(samples, "proxyapi_upstream_requests_total", provider="fake", outcome="ok") == n
    tokens = "proxyapi_tokens_total"
    assert value(samples, tokens, key="alice", model="gpt-4o-mini", kind="prompt") == prompt
    assert value(samples, tokens, key="alice", model="gpt-4o-mini", kind="completion") == (
        completion
    )
    # Dead workers' live gauges are dropped: only the scrape itself is in flight.
    assert value(samples, "proxyapi_requests_in_flight") == 1
    assert value(samples, "proxyapi_breaker_state", provider="fake") == 0


def test_health_and_readiness_with_redis_up_and_down(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    own_redis = RedisServer(tmp_path).start()  # stopped in the middle: not the session's
    try:
        config = base_config(fake)
        config["rate_limits"] = {"per_key": ["100/minute"], "on_storage_error": "fail-closed"}
        gw = launch(config, env={"REDIS_URL": own_redis.url}, workers=2)
        assert requests.get(f"{gw.url}/health", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{gw.url}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready"
        assert body["checks"] == {"redis": "ok", "rate_limit_storage": "ok", "managed_keys": "ok"}
        assert body["breakers"] == {"fake": "closed"}
        assert body["config"]["source"] == str(gw.config_path)
        own_redis.stop()
        down = requests.get(f"{gw.url}/health/ready", timeout=5)
        assert down.status_code == 503
        assert down.json()["checks"]["rate_limit_storage"] == "unreachable"
        assert chat(gw).status_code == 503  # what "not ready" foretold
        # Liveness is not readiness: the process is up.
        assert requests.get(f"{gw.url}/health", timeout=5).status_code == 200
        # Neither health endpoint is rate limited, nor needs a key.
        assert "X-RateLimit-Limit" not in ready.headers
    finally:
        own_redis.stop()


def test_json_log_lines_carry_every_field(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(base_config(fake), env={"LOG_FORMAT": "json"})
    ok = chat(gw, **{"user": "u1"})
    assert ok.status_code == 200
    streamed = requests.post(
        f"{gw.url}/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {BOB_KEY}", "X-Request-ID": "stream-1"},
        timeout=15,
    )
    assert streamed.status_code == 200 and b"[DONE]" in streamed.content
    assert chat(gw, key="pk-wrong").status_code == 401
    fake.script(Fault(status=500))
    failure = chat(gw)
    assert failure.status_code == 502 and failure.headers["X-ProxyAPI-Attempts"] == "1"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ours = [json.loads(x) for x in gw.logs().splitlines() if x.startswith("{")]
        access = [x for x in ours if x["logger"] == "proxyapi.access" and x["route"] == ROUTE]
        if len(access) == 4:
            break
        time.sleep(0.1)
    assert len(access) == 4, gw.logs()
    first, stream, refused, failed = access
    assert first["request_id"] == ok.headers["X-Request-ID"]
    fields = {
        "request_id", "key", "route", "model", "provider", "status", "attempts", "cache",
        "total_ms", "upstream_ms", "overhead_ms", "prompt_tokens", "completion_tokens",
    }  # fmt: skip
    assert all(fields <= line.keys() for line in access)
    assert (first["key"], first["model"], first["provider"], first["status"]) == (
        "alice", "gpt-4o-mini", "fake", 200,
    )  # fmt: skip
    assert first["prompt_tokens"] > 0 and first["upstream_ms"] > 0
    assert first["overhead_ms"] == float(ok.headers["X-ProxyAPI-Overhead-Ms"])
    assert stream["request_id"] == "stream-1" and stream["stream"] is True
    assert stream["key"] == "bob" and stream["completion_tokens"] > 0
    assert refused["status"] == 401 and refused["key"] == "-"
    assert failed["status"] == 502 and failed["attempts"] == 1 and failed["upstream_ms"] > 0
    # Every other line of ours is JSON too (the upstream failure's warning, for one).
    assert any(x["level"] == "WARNING" and x["request_id"] == failed["request_id"] for x in ours)


def test_sighup_reloads_the_config_and_lets_streams_finish(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    config = base_config(fake)
    gw = launch(config, workers=2)
    carol = "pk-carol-reloaded"
    assert chat(gw, key=carol).status_code == 401
    # A stream of about 3 s, started before the reload.
    fake.script(Fault(chunks=30, chunk_delay=0.1))
    body: dict[str, bytes] = {}

    def stream() -> None:
        resp = requests.post(
            f"{gw.url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {ALICE_KEY}"},
            timeout=20,
        )
        body["data"] = resp.content

    reader = threading.Thread(target=stream)
    reader.start()
    time.sleep(0.5)
    config["auth"]["keys"].append({"name": "carol", "sha256": hash_key(carol)})
    gw.config_path.write_text(yaml.safe_dump(config))
    booted = len(gw.worker_pids())
    gw.reload()
    _wait_for(lambda: len(gw.worker_pids()) >= booted + 2, "new workers")
    _wait_for(lambda: chat(gw, key=carol).status_code == 200, "the new key to work")
    reader.join(20)
    assert body["data"].count(b"tok") == 30 and body["data"].endswith(
        b"data: [DONE]\n\n: cost_usd=unpriced\n\n"
    )
    assert "proxyapi: config reloaded from" in gw.logs()
    # The old workers have stopped taking requests: every worker has the new config.
    assert all(chat(gw, key=carol).status_code == 200 for _ in range(6))

    # A broken file is refused by the master; the next workers keep the last good config.
    gw.config_path.write_text("providers: [unclosed\n")
    booted = len(gw.worker_pids())
    gw.reload()
    _wait_for(lambda: len(gw.worker_pids()) >= booted + 2, "new workers")
    assert "config reload refused, workers keep the previous config" in gw.logs()
    assert all(chat(gw, key=carol).status_code == 200 for _ in range(6))
    assert gw.proc is not None and gw.proc.poll() is None


def _wait_for(check: Callable[[], bool], what: str, limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
