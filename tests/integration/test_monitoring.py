"""The metrics the alert rules read, as a real gunicorn deployment exposes them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import requests

from tests.conftest import ALICE_KEY
from tests.fakes.gateway import GatewayProcess


def test_a_worker_that_dies_and_is_replaced_counts_as_a_start(
    launch: Callable[..., GatewayProcess],
) -> None:
    gw = launch(None, env={"PROXYAPI_KEYS": ALICE_KEY, "PROXYAPI_MOCK": "1"}, workers=2)

    def starts() -> str:
        text = requests.get(f"{gw.url}/metrics", timeout=5).text
        return next(line for line in text.splitlines() if line.startswith("proxyapi_worker_starts"))

    deadline = time.monotonic() + 15
    while len(gw.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first = gw.worker_pids()
    assert starts() == "proxyapi_worker_starts_total 2.0"
    os.kill(first[0], signal.SIGKILL)
    # worker_pids() lists every worker booted so far: the replacement makes it three.
    while len(gw.worker_pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(gw.worker_pids()) == 3, f"no worker replaced {first[0]}:\n{gw.logs()}"
    # The dead worker's count stays in the merged metrics; the new one adds its own.
    while time.monotonic() < deadline and starts() != "proxyapi_worker_starts_total 3.0":
        time.sleep(0.2)
    assert starts() == "proxyapi_worker_starts_total 3.0"
