"""What the status page costs the request path: its history's observer hook, per call.

The page itself runs only when someone loads it; on the request path it adds one thing, the
history's count beside the metrics in the fallback loop's observer (``upstream_outcome`` and,
on a fallback, ``fell_back``). This times those hooks with the metrics alone (status off) and
with the history beside them (status on), and then whole requests in one process (Flask's test
client, a real fake upstream on loopback) with ``status.enabled`` true and false, interleaved.

Run: ``python bench/status.py [--calls 200000] [--requests 2000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxyapi import create_app  # noqa: E402
from proxyapi.auth import hash_key  # noqa: E402
from proxyapi.metrics import Metrics  # noqa: E402
from proxyapi.status.history import History, Recording  # noqa: E402
from tests.fakes.upstream import FakeUpstream  # noqa: E402

KEY = "bench-status-key"
UPSTREAM_KEY = "sk-bench-upstream"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def per_call(observer: Any, calls: int) -> float:
    """Nanoseconds per upstream call reported to ``observer`` (one outcome)."""
    hook = observer.upstream_outcome
    started = time.perf_counter()
    for _ in range(calls):
        hook("fake", "ok", 0.0123, 0)
    return (time.perf_counter() - started) / calls * 1e9


def history_per_call(history: History, calls: int) -> float:
    """Nanoseconds per call counted by the history alone."""
    hook = history.outcome
    started = time.perf_counter()
    for _ in range(calls):
        hook("fake", "ok", 0.0123)
    return (time.perf_counter() - started) / calls * 1e9


def hooks(calls: int, rounds: int) -> None:
    app = create_app(config(FakeUpstreamStub(), enabled=False))
    metrics: Metrics = app.extensions["proxyapi.metrics"]
    recording = Recording(metrics, History())
    off, on = [], []
    for _ in range(rounds):
        off.append(per_call(metrics, calls))
        on.append(per_call(recording, calls))
    history_only = statistics.median(history_per_call(History(), calls) for _ in range(rounds))
    print(f"observer hook per upstream call ({calls} calls x {rounds} rounds, median):")
    print(f"  status off (metrics only)      {statistics.median(off):8.0f} ns")
    print(f"  status on (metrics + history)  {statistics.median(on):8.0f} ns")
    print(f"  the history's count alone      {history_only:8.0f} ns")


class FakeUpstreamStub:
    base_url = "http://127.0.0.1:9/v1"


def config(fake: Any, enabled: bool) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"name": "bench", "sha256": hash_key(KEY), "admin": True}]},
        "cache": {"responses": "off"},
        "usage": {"enabled": False},
        "providers": [
            {
                "name": "fake",
                "base_url": fake.base_url,
                "api_key_env": "BENCH_UPSTREAM_KEY",
                "models": ["gpt-4o-mini"],
                "retry": {"max_attempts": 1},
            }
        ],
        "status": {"enabled": enabled},
    }


def requests_through(client: Any, n: int) -> float:
    """Microseconds per chat request through the app."""
    headers = {"Authorization": f"Bearer {KEY}"}
    started = time.perf_counter()
    for _ in range(n):
        resp = client.post("/v1/chat/completions", json=BODY, headers=headers)
        resp.get_data()
        resp.close()
        assert resp.status_code == 200, resp.get_data()
    return (time.perf_counter() - started) / n * 1e6


def whole_requests(n: int, rounds: int) -> None:
    fake = FakeUpstream(api_key=UPSTREAM_KEY).start()
    try:
        clients = {
            enabled: create_app(config(fake, enabled)).test_client() for enabled in (False, True)
        }
        # One access line per request would time the terminal, not the gateway.
        logging.getLogger("proxyapi").setLevel(logging.WARNING)
        for client in clients.values():
            requests_through(client, 50)  # warm up: pools, caches
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for enabled, client in clients.items():
                times[enabled].append(requests_through(client, n))
                fake.reset()
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(f"whole chat requests in one process ({n} x {rounds} rounds, median):")
        print(f"  status.enabled: false   {off:8.1f} us")
        print(f"  status.enabled: true    {on:8.1f} us   ({(on - off) / off * 100:+.1f}%)")
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tempfile.tempdir = tempfile.mkdtemp(prefix="bench-status-")
    os.environ["BENCH_UPSTREAM_KEY"] = UPSTREAM_KEY
    hooks(args.calls, args.rounds)
    whole_requests(args.requests, args.rounds)


if __name__ == "__main__":
    main()
