"""Reliability under upstream faults: one failing and one healthy provider for the same model.

For each fault type, runs N requests (default 1,000) through the gateway under gunicorn, where
the provider tried first ("sick") has that fault and the fallback ("healthy") does not, and
reports the share answered 200 and the p50 latency once the sick provider is out of rotation,
against a baseline run with the healthy provider alone. Then, with no fallback at all, checks
that every request ends with the status DESIGN.md section 2 gives, within the deadline: no
hangs and no 500s.

Run: ``python bench/reliability.py [--requests 1000] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.gateway import GatewayProcess  # noqa: E402
from tests.fakes.upstream import FakeUpstream, Fault  # noqa: E402

CLIENT_KEY = "bench-reliability-key"
UPSTREAM_KEY = "sk-bench-reliability"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
DEADLINE = 10.0

FAULTS: dict[str, tuple[Fault, set[int]]] = {
    # fault injected into the sick provider -> statuses allowed without a fallback
    "500": (Fault(status=500), {502, 503}),
    "503": (Fault(status=503), {502, 503}),
    "429 Retry-After 30": (Fault(status=429, headers={"Retry-After": "30"}), {429}),
    "hang past read timeout": (Fault(delay=3.0), {504, 503}),
    "connection reset": (Fault(reset=True), {502, 503}),
    "broken JSON": (Fault(body=b'{"choices": [tru'), {502, 503}),
    "401 (our key refused)": (Fault(status=401), {502, 503}),
}


def provider(name: str, url: str, priority: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "openai",
        "base_url": url,
        "api_key_env": "BENCH_UPSTREAM_KEY",
        "models": ["gpt-4o-mini"],
        "priority": priority,
        "timeout": {"connect": 1, "read": 1},
        "breaker": {"fail_max": 5, "reset_timeout": 60},
    }


def gateway(tmp: Path, *providers: dict[str, Any]) -> GatewayProcess:
    config = {
        "server": {"request_timeout": DEADLINE},
        "auth": {"keys": [{"name": "bench", "key_env": "BENCH_KEY"}]},
        "providers": list(providers),
    }
    env = {"BENCH_KEY": CLIENT_KEY, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY}
    return GatewayProcess(tmp, config, env=env, threads=32).start()


def run(gw: GatewayProcess, n: int, concurrency: int) -> list[tuple[int, float, str]]:
    session_local = threading.local()

    def one(_: int) -> tuple[int, float, str]:
        session = getattr(session_local, "s", None)
        if session is None:
            session = session_local.s = requests.Session()
        started = time.monotonic()
        resp = session.post(
            f"{gw.url}/v1/chat/completions",
            json=BODY,
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
            timeout=DEADLINE + 5,
        )
        return (
            resp.status_code,
            time.monotonic() - started,
            resp.headers.get("X-ProxyAPI-Provider", "-"),
        )

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))


def p50_ms(results: list[tuple[int, float, str]]) -> float:
    return statistics.median(r[1] for r in results) * 1000 if results else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-reliability-"))
    sick = FakeUpstream(api_key=UPSTREAM_KEY).start()
    healthy = FakeUpstream(api_key=UPSTREAM_KEY).start()
    ok = True
    try:
        print(
            f"{'fault on the first provider':28}{'200s':>8}{'p50 base':>10}{'p50 all':>10}"
            f"{'p50 open':>10}{'ratio':>8}{'sick calls':>12}"
        )
        for name, (fault, _) in FAULTS.items():
            # The baseline (the healthy provider alone) is measured right before each fault
            # run, so both see the same machine.
            healthy.reset()
            gw = gateway(tmp, provider("healthy", healthy.base_url, 1))
            run(gw, 100, args.concurrency)  # warm-up: connections, imports
            base_p50 = p50_ms(run(gw, args.requests, args.concurrency))
            gw.stop()
            sick.reset()
            sick.mode = fault
            gw = gateway(
                tmp, provider("sick", sick.base_url, 1), provider("healthy", healthy.base_url, 2)
            )
            results = run(gw, args.requests, args.concurrency)
            gw.stop()
            good = sum(1 for r in results if r[0] == 200)
            # Once the sick provider is out of rotation (breaker open, or skipped after a 429
            # with Retry-After), requests go straight to the healthy one: the last 80% of the run.
            settled = results[len(results) // 5 :]
            ratio = p50_ms(settled) / base_p50
            ok &= good == len(results) and ratio <= 2.0
            print(
                f"{name:28}{good / len(results):>8.1%}{base_p50:>10.2f}{p50_ms(results):>10.2f}"
                f"{p50_ms(settled):>10.2f}{ratio:>8.2f}{len(sick.calls()):>12}"
            )
        print()
        n_alone = max(50, args.requests // 5)
        print(f"no fallback, {n_alone} requests each, deadline {DEADLINE:g}s:")
        for name, (fault, allowed) in FAULTS.items():
            sick.reset()
            sick.mode = fault
            gw = gateway(tmp, provider("sick", sick.base_url, 1))
            results = run(gw, n_alone, args.concurrency)
            gw.stop()
            statuses = Counter(r[0] for r in results)
            slowest = max(r[1] for r in results)
            good = set(statuses) <= allowed and slowest < DEADLINE
            ok &= good
            print(
                f"  {name:28} statuses {dict(statuses)}  slowest {slowest:.2f}s  "
                f"{'ok' if good else 'UNEXPECTED'}"
            )
    finally:
        sick.stop()
        healthy.stop()
    print()
    print("all targets met" if ok else "SOME TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
