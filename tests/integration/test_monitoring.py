"""The metrics the alert rules watch, through real gunicorn: worker starts across a killed
worker, and cache entries refused by a host configured differently."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ALICE_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream

EMBED = {"model": "text-embedding-3-small", "input": "hello"}


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    text = requests.get(f"{gw.url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == labels
    )


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_worker_s_replacement_counts_one_more_start(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(base_config(fake), workers=2)
    starts = "proxyapi_worker_starts_total"
    assert wait_for(lambda: metric(gw, starts) == 2), metric(gw, starts)
    victim = gw.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)  # what the OOM killer does
    assert wait_for(lambda: len(gw.worker_pids()) == 3), gw.logs()
    # The dead worker's start stays counted: the total only grows while the server runs.
    assert wait_for(lambda: metric(gw, starts) == 3), metric(gw, starts)
    assert requests.get(f"{gw.url}/health", timeout=5).status_code == 200


def test_a_host_with_another_signing_setting_refuses_the_shared_entries(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    def config(**cache: str) -> dict[str, object]:
        cfg = base_config(fake)
        cfg["redis"] = {"namespace": "monitoring"}
        cfg["cache"] = {"responses": "deterministic", "dir": str(tmp_path / "cache"), **cache}
        return cfg

    unsigned = launch(config())
    signing = launch(
        config(signing_key_env="CACHE_SIGNING_KEY"), env={"CACHE_SIGNING_KEY": "s" * 32}
    )

    def embed(gw: GatewayProcess) -> requests.Response:
        return requests.post(
            f"{gw.url}/v1/embeddings",
            json=EMBED,
            headers={"Authorization": f"Bearer {ALICE_KEY}"},
            timeout=15,
        )

    assert embed(unsigned).headers["X-Cache"] == "MISS"
    assert embed(unsigned).headers["X-Cache"] == "HIT"  # stored, in the shared folder
    refused = embed(signing)
    assert refused.status_code == 200 and refused.headers["X-Cache"] == "MISS"
    name = "proxyapi_cache_refused_total"
    assert metric(signing, name, reason="signature") >= 1
    assert metric(unsigned, name, reason="signature") == 0
