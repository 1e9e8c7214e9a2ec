"""Gateway overhead: direct calls to a fast fake upstream vs the same calls through ProxyAPI.

Starts ``bench/fast_upstream.py`` and the gateway under gunicorn (as ``gunicorn.conf.py`` runs
it), then measures, in one run on one machine, with ``wrk`` (Debian package ``wrk``):

- latency p50/p99 at concurrency 1 (non-streaming chat), direct and through the gateway;
- requests/s at concurrency 16, direct and through the gateway;
- RSS of each gateway worker after the load.

Run: ``python bench/overhead.py [--workers 2] [--duration 10] [--redis] [--responses]``
``[--messages] [--accounting] [--cache]``.
Prints a table and the ratios. ``--responses`` also measures ``/v1/responses``: passed through
to a provider that serves it, translated to chat for one that does not, and translated with
the response kept for follow-ups (``store: true``). ``--redis`` runs the gateway in
distributed mode against a redis-server it starts; then each variant also reports the Redis
round trips one request costs (counted with MONITOR). ``--accounting`` also measures the
gateway with the usage log off, and with every answer priced (a config price for the fake
upstream, which genai-prices' table does not know); the usage log is on in every other variant.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.redis_server import RedisServer  # noqa: E402

CLIENT_KEY = "bench-client-key"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def start_upstream() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[-1])
    return proc, port


# Variants of the gateway measured side by side. The limits are high enough never to be
# reached, so every request pays for checking them (one counter per scope, and the headers).
# The cache variants send a cacheable request (temperature 0): "cache miss" with
# Cache-Control: no-cache, so each request goes upstream and then writes the cache; "cache hit"
# plainly, so each is answered from the cache (filesystem backend, or Redis with --redis).
DETERMINISTIC = {**BODY, "temperature": 0}
KEY_LIMIT: dict[str, Any] = {"key_limits": ["1000000/minute"]}
KEY_AND_GLOBAL: dict[str, Any] = {
    "key_limits": ["1000000/minute"],
    "rate_limits": {"global": ["1000000/minute"]},
}
# A token budget too large to be reached: every request reserves and settles.
BUDGET: dict[str, Any] = {"token_limits": ["1000000000/day"]}
CACHE_MISS: dict[str, Any] = {"body": DETERMINISTIC, "headers": {"Cache-Control": "no-cache"}}
CACHE_HIT: dict[str, Any] = {"body": DETERMINISTIC}
RESPONSES_BODY = {"model": "gpt-4o-mini", "input": "Say hello", "store": False}
RESPONSES_PASS: dict[str, Any] = {
    "path": "/v1/responses",
    "body": RESPONSES_BODY,
    "provider": {"responses_api": True},
}
RESPONSES_CHAT: dict[str, Any] = {"path": "/v1/responses", "body": RESPONSES_BODY}
# The Anthropic Messages API from a client, translated to chat for the OpenAI-shaped upstream.
MESSAGES_CHAT: dict[str, Any] = {
    "path": "/v1/messages",
    "body": {
        "model": "gpt-4o-mini",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
    },
    "headers": {"anthropic-version": "2023-06-01"},
}
RESPONSES_STORED: dict[str, Any] = {
    "path": "/v1/responses",
    "body": {**RESPONSES_BODY, "store": True},
}
# Usage and cost accounting. Every variant keeps the usage log on (the default: SQLite, in this
# run's temp folder); "usage off" turns it off. The fake upstream's host is one genai-prices
# does not know, so its answers are unpriced (a memoized miss); "+ config price" prices them
# with a pricing.prices entry, so every answer's cost is computed, counted and sent.
USAGE_OFF: dict[str, Any] = {"usage": {"enabled": False}}
# Managed keys (on by default; the bench's key is a config key, as most are): "managed keys off"
# shows what having them costs a config key's request.
MANAGED_OFF: dict[str, Any] = {"managed": {"enabled": False}}
CONFIG_PRICE: dict[str, Any] = {
    "pricing": {
        "prices": [
            {"provider": "fake", "model": "*", "input_per_mtok": 0.15, "output_per_mtok": 0.6}
        ]
    }
}


def start_gateway(
    upstream_port: int,
    workers: int,
    threads: int,
    tmp: Path,
    redis_url: str | None = None,
    variant: dict[str, Any] | None = None,
) -> tuple[subprocess.Popen[bytes], int, Path]:
    variant = variant or {}
    config = tmp / "bench.yaml"
    key: dict[str, Any] = {"name": "bench", "key_env": "BENCH_KEY"}
    if "key_limits" in variant:
        key["limits"] = variant["key_limits"]
    if "token_limits" in variant:
        key["token_limits"] = variant["token_limits"]
    config.write_text(
        json.dumps(
            {
                "rate_limits": variant.get("rate_limits", {}),
                "cache": {"dir": str(tmp / f"cache-{time.monotonic_ns()}")},
                "auth": {
                    "keys": [key],
                    "managed": {
                        "path": str(tmp / f"keys-{time.monotonic_ns()}.sqlite3"),
                        **variant.get("managed", {}),
                    },
                },
                "usage": {
                    "path": str(tmp / f"usage-{time.monotonic_ns()}.sqlite3"),
                    **variant.get("usage", {}),
                },
                "pricing": variant.get("pricing", {}),
                "providers": [
                    {
                        "name": "fake",
                        "type": "openai",
                        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                        "api_key_env": "BENCH_UPSTREAM_KEY",
                        "models": ["gpt-4o-mini"],
                        **variant.get("provider", {}),
                    }
                ],
            }
        )
    )
    log = tmp / f"gateway-{time.monotonic_ns()}.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "PROXYAPI_CONFIG": str(config),
        "BENCH_KEY": CLIENT_KEY,
        "BENCH_UPSTREAM_KEY": "sk-bench",
        "GUNICORN_BIND": "127.0.0.1:0",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(variant.get("env", {}))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
        if match:
            port = int(match.group(1))
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    return proc, port, log
            except requests.ConnectionError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"gateway did not start:\n{log.read_text()}")


def wrk(
    url: str,
    connections: int,
    duration: int,
    headers: dict[str, str],
    tmp: Path,
    body: dict[str, Any] = BODY,
) -> dict[str, float]:
    script = tmp / "post.lua"
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(json.dumps(body))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        result[f"p{pct}"] = float(value) * _UNITS[unit]
    return result


def redis_round_trips_per_request(
    server: RedisServer, url: str, headers: dict[str, str], body: dict[str, Any], n: int = 200
) -> float:
    """Redis round trips one request costs, counted with MONITOR over ``n`` requests.

    A command a Lua script runs inside Redis is not a round trip and is not counted (MONITOR
    marks it ``lua``); the figures each worker publishes every 2 s are, spread over the
    requests of those seconds.
    """
    monitor_client = server.client()
    counted: list[int] = [0]
    stop = threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            for command in monitor.listen():
                if stop.is_set():
                    return
                if command.get("client_type") != "lua":
                    counted[0] += 1

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.3)
    counted[0] = 0
    with requests.Session() as session:
        for _ in range(n):
            session.post(url, json=body, headers=headers, timeout=5).raise_for_status()
    time.sleep(0.3)
    result = counted[0] / n
    stop.set()
    server.client().ping()  # wakes the monitor so it sees the stop
    return result


def worker_rss_mb(log: Path) -> list[float]:
    rss = []
    for pid in re.findall(r"Booting worker with pid: (\d+)", log.read_text()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        rss.append(kb / 1024)
    return rss


def measure(
    url: str, headers: dict[str, str], duration: int, tmp: Path, body: dict[str, Any] = BODY
) -> dict[str, dict[str, float]]:
    return {
        "c1": wrk(url, 1, duration, headers, tmp, body),
        "c16": wrk(url, 16, duration, headers, tmp, body),
    }


def print_table(
    results: dict[str, Any], variants: list[str], rss: dict[str, list[float]], width: int
) -> None:
    """Print each variant's latency and throughput beside the direct calls', and the ratios."""
    d = results["direct"]
    names = ["direct", *variants]
    print(f"{'':24}" + "".join(f"{n:>{width}}" for n in names))
    for label, key, conc in (
        ("latency p50 c=1 (ms)", "p50", "c1"),
        ("latency p99 c=1 (ms)", "p99", "c1"),
        ("latency p50 c=16 (ms)", "p50", "c16"),
        ("requests/s c=16", "rps", "c16"),
    ):
        print(f"{label:24}" + "".join(f"{results[n][conc][key]:>{width}.3f}" for n in names))
    for name in variants:
        g = results[name]
        print(
            f"{name}: added latency p50 at c=1 {g['c1']['p50'] - d['c1']['p50']:.3f} ms; "
            f"{g['c16']['rps']:.0f} req/s at c=16 ({g['c16']['rps'] / d['c16']['rps']:.3f} of "
            f"direct); RSS per worker (MB): {', '.join(f'{r:.1f}' for r in rss[name])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="distributed mode: start a redis-server and keep shared state in it",
    )
    parser.add_argument(
        "--limits",
        action="store_true",
        help="also measure the gateway with a per-key limit, and with per-key and global ones",
    )
    parser.add_argument(
        "--budget",
        action="store_true",
        help="also measure the gateway with a token budget (reserve and settle per request)",
    )
    parser.add_argument(
        "--responses",
        action="store_true",
        help="also measure /v1/responses: passed through, translated, translated and stored",
    )
    parser.add_argument(
        "--messages",
        action="store_true",
        help="also measure /v1/messages (Anthropic's dialect), translated to chat",
    )
    parser.add_argument(
        "--accounting",
        action="store_true",
        help="also measure the gateway with the usage log off, and with every answer priced",
    )
    parser.add_argument(
        "--keys",
        action="store_true",
        help="also measure the gateway with managed keys off",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="also measure cacheable requests: always missing (no-cache), and always hitting",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-bench-"))
    redis_server = RedisServer(tmp).start() if args.redis else None
    redis_url = redis_server.url if redis_server else None
    upstream, up_port = start_upstream()
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    variants: list[tuple[str, dict[str, Any]]] = [("gateway", {})]
    if args.limits:
        variants.append(("+ key limit", KEY_LIMIT))
        variants.append(("+ key & global", KEY_AND_GLOBAL))
    if args.budget:
        variants.append(("+ token budget", BUDGET))
    if args.responses:
        variants.append(("responses pass", RESPONSES_PASS))
        variants.append(("responses chat", RESPONSES_CHAT))
        variants.append(("responses stored", RESPONSES_STORED))
    if args.messages:
        variants.append(("messages chat", MESSAGES_CHAT))
    if args.accounting:
        variants.append(("usage off", USAGE_OFF))
        variants.append(("+ config price", CONFIG_PRICE))
    if args.keys:
        variants.append(("managed keys off", MANAGED_OFF))
    if args.cache:
        variants.append(("cache miss", CACHE_MISS))
        variants.append(("cache hit", CACHE_HIT))
    results: dict[str, dict[str, dict[str, float]]] = {}
    rss: dict[str, list[float]] = {}
    commands: dict[str, float] = {}
    try:
        results["direct"] = measure(
            f"http://127.0.0.1:{up_port}/v1/chat/completions", {}, args.duration, tmp
        )
        for name, variant in variants:
            gateway, gw_port, log = start_gateway(
                up_port, args.workers, args.threads, tmp, redis_url, variant
            )
            try:
                path = variant.get("path", "/v1/chat/completions")
                gw_url = f"http://127.0.0.1:{gw_port}{path}"
                body = variant.get("body", BODY)
                headers = {**auth, **variant.get("headers", {})}
                check = requests.post(gw_url, json=body, headers=headers, timeout=5)
                assert check.status_code == 200, check.text
                wrk(gw_url, 16, 2, headers, tmp, body)  # warm-up: imports, pools, caches
                results[name] = measure(gw_url, headers, args.duration, tmp, body)
                rss[name] = worker_rss_mb(log)
                if redis_server is not None:
                    commands[name] = redis_round_trips_per_request(
                        redis_server, gw_url, headers, body
                    )
            finally:
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(timeout=30)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        if redis_server is not None:
            redis_server.stop()
    print(
        f"machine: {os.cpu_count()} cores; "
        f"gateway: {args.workers} workers x {args.threads} threads (gthread), "
        f"{'distributed mode (Redis)' if args.redis else 'embedded mode'}"
    )
    print_table(results, [name for name, _ in variants], rss, width=18)
    for name, _ in variants[1:]:
        cost = results[name]["c1"]["p50"] - results["gateway"]["c1"]["p50"]
        print(f"{name} vs gateway, p50 at c=1: {cost:+.3f} ms per request")
    for name, per_request in commands.items():
        print(f"{name}: {per_request:.2f} Redis round trips per request")


if __name__ == "__main__":
    main()
