"""ProxyAPI beside a naive proxy and its peers, in one run on one machine.

Every system forwards the same non-streaming chat request (the same wrk script) to the same
fast fake upstream (``bench/fast_upstream.py``):

- direct: wrk against the fake upstream itself;
- naive floor: ``bench/naive_proxy.py``, Flask + requests and nothing else, 2 gthread workers;
- ProxyAPI lean: embedded mode (no Redis), 2 workers, a client key, no limits (the defaults:
  usage log, managed keys, metrics, the access line);
- ProxyAPI full: distributed mode (a redis-server this starts), 2 workers, a per-key request
  limit, a token budget, every answer priced, the usage log in Redis, breakers in Redis,
  metrics and the access line;
- Portkey gateway OSS (Node, one process), pinned, installed with npm;
- LiteLLM proxy, pinned, 2 workers, in its own virtualenv.

The peers are installed on first use under ``$PROXYAPI_BENCH_PEERS`` (default
``~/.cache/proxyapi-bench``); one that cannot be installed or started is skipped, and the
table says so. Latency is the p50 added at concurrency 1 (the system's p50 minus direct's),
throughput the requests/s at concurrency 16; both are printed as ratios to the naive floor,
since only ratios taken in one run mean anything on a shared machine. ``--rounds N`` measures
every system N times, interleaved, and keeps each one's median.

Run: ``python bench/peers.py [--duration 8] [--rounds 3] [--no-peers]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from overhead import (  # noqa: E402
    BUDGET,
    CLIENT_KEY,
    CONFIG_PRICE,
    KEY_LIMIT,
    start_gateway,
    start_upstream,
    worker_rss_mb,
    wrk,
)

from tests.fakes.redis_server import RedisServer  # noqa: E402

PORTKEY_VERSION = "1.15.2"
LITELLM_VERSION = "1.108.7"
PEERS = Path(os.environ.get("PROXYAPI_BENCH_PEERS", Path.home() / ".cache" / "proxyapi-bench"))
FULL: dict[str, Any] = {**KEY_LIMIT, **BUDGET, **CONFIG_PRICE}


@dataclass
class System:
    """One system under test: how to start it, and what a request to it needs."""

    name: str
    start: Callable[[], tuple[subprocess.Popen[bytes], str, Path | None]]
    headers: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, headers: dict[str, str], log: Path) -> None:
    """Wait until ``url`` answers a chat request with 200."""
    deadline = time.monotonic() + 90
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.post(url, json=body, headers=headers, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"did not answer within 90 s: {log.read_text()[-2000:]}")


def start_naive(upstream: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start the naive floor (2 gthread workers) in front of ``upstream``; return it, its base
    URL and its log (it may not answer yet: :func:`wait_ready`)."""
    port, log = free_port(), tmp / "naive.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2"),
                *("--threads", "32", "-b", f"127.0.0.1:{port}", "bench.naive_proxy:app"),
            ],
            cwd=ROOT,
            env={**os.environ, "UPSTREAM": upstream},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}", log


def install_portkey() -> Path:
    home = PEERS / f"portkey-{PORTKEY_VERSION}"
    entry = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists():
        if not shutil.which("npm"):
            raise RuntimeError("npm is not installed")
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"@portkey-ai/gateway@{PORTKEY_VERSION}"],
            cwd=home,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return entry


def install_litellm() -> Path:
    venv = PEERS / f"litellm-{LITELLM_VERSION}"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
            capture_output=True,
            timeout=1200,
        )
    return exe


def systems(up_port: int, tmp: Path, redis_url: str, peers: bool) -> list[System]:
    upstream = f"http://127.0.0.1:{up_port}"
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}

    def naive() -> tuple[subprocess.Popen[bytes], str, Path | None]:
        return start_naive(upstream, tmp)

    def proxyapi(redis: str | None, variant: dict[str, Any]) -> Callable[..., Any]:
        def start() -> tuple[subprocess.Popen[bytes], str, Path | None]:
            proc, port, log = start_gateway(up_port, 2, 32, tmp, redis, variant)
            return proc, f"http://127.0.0.1:{port}", log

        return start

    result = [
        System("naive floor", naive),
        System("ProxyAPI lean", proxyapi(None, {}), auth),
        System("ProxyAPI full", proxyapi(redis_url, FULL), auth),
    ]
    if not peers:
        return result

    portkey = System(
        f"Portkey {PORTKEY_VERSION}",
        lambda: (_ for _ in ()).throw(RuntimeError("not installed")),
        {
            "Authorization": "Bearer sk-bench",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"{upstream}/v1",
        },
    )
    try:
        entry = install_portkey()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        portkey.skipped = f"could not be installed ({exc.__class__.__name__}: {exc})"
    else:

        def start_portkey() -> tuple[subprocess.Popen[bytes], str, Path | None]:
            port, log = free_port(), tmp / "portkey.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    ["node", str(entry), f"--port={port}", "--headless"],
                    env={**os.environ, "NODE_ENV": "production"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            return proc, f"http://127.0.0.1:{port}", log

        portkey.start = start_portkey
    result.append(portkey)

    master_key = f"sk-litellm-{secrets.token_hex(16)}"
    litellm = System(
        f"LiteLLM {LITELLM_VERSION}",
        lambda: (_ for _ in ()).throw(RuntimeError("not installed")),
        {"Authorization": f"Bearer {master_key}"},
    )
    try:
        exe = install_litellm()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        litellm.skipped = f"could not be installed ({exc.__class__.__name__}: {exc})"
    else:

        def start_litellm() -> tuple[subprocess.Popen[bytes], str, Path | None]:
            port, log, config = free_port(), tmp / "litellm.log", tmp / "litellm.yaml"
            config.write_text(
                "model_list:\n"
                "  - model_name: gpt-4o-mini\n"
                "    litellm_params:\n"
                "      model: openai/gpt-4o-mini\n"
                f"      api_base: {upstream}/v1\n"
                "      api_key: sk-bench\n"
            )
            env = {
                **os.environ,
                "LITELLM_MASTER_KEY": master_key,
                # No network here: the bundled price map, no telemetry.
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
            }
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [str(exe), "--config", str(config), "--port", str(port), "--num_workers", "2"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            return proc, f"http://127.0.0.1:{port}", log

        litellm.start = start_litellm
    result.append(litellm)
    return result


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=1, help="measure every system N times")
    parser.add_argument("--no-peers", action="store_true", help="leave Portkey and LiteLLM out")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-peers-"))
    redis_server = RedisServer(tmp).start()
    upstream, up_port = start_upstream()
    runs: dict[str, list[dict[str, float]]] = {}
    rss: dict[str, list[float]] = {}
    try:
        table = systems(up_port, tmp, redis_server.url, not args.no_peers)
        direct_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        for _ in range(args.rounds):
            runs.setdefault("direct", []).append(
                {
                    "p50": wrk(direct_url, 1, args.duration, {}, tmp)["p50"],
                    "rps": wrk(direct_url, 16, args.duration, {}, tmp)["rps"],
                }
            )
            for system in table:
                if system.skipped:
                    continue
                try:
                    proc, base, log = system.start()
                except (RuntimeError, OSError, SystemExit) as exc:
                    system.skipped = f"did not start ({exc})"
                    continue
                try:
                    url = f"{base}/v1/chat/completions"
                    try:
                        wait_ready(proc, url, system.headers, log or tmp / "none")
                    except RuntimeError as exc:
                        system.skipped = f"did not start ({str(exc)[:300]})"
                        continue
                    wrk(url, 16, 2, system.headers, tmp)  # warm-up
                    c1 = wrk(url, 1, args.duration, system.headers, tmp)
                    c16 = wrk(url, 16, args.duration, system.headers, tmp)
                    runs.setdefault(system.name, []).append({"p50": c1["p50"], "rps": c16["rps"]})
                    if system.name.startswith("ProxyAPI") and log is not None:
                        rss[system.name] = worker_rss_mb(log)
                finally:
                    stop(proc)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        redis_server.stop()
    report(table, runs, rss, args)


def report(
    table: list[System],
    runs: dict[str, list[dict[str, float]]],
    rss: dict[str, list[float]],
    args: argparse.Namespace,
) -> None:
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("p50", "rps")}
        for name, rs in runs.items()
    }
    direct = med["direct"]
    naive = med.get("naive floor")
    print(
        f"machine: {os.cpu_count()} cores; {args.rounds} round(s) of {args.duration} s per wrk "
        f"run, median kept; direct p50 {direct['p50']:.3f} ms, {direct['rps']:.0f} req/s at c=16"
    )
    print(
        "| system | added p50 c=1 (ms) | x naive floor | req/s c=16 | x naive floor |\n"
        "|---|---|---|---|---|"
    )
    for system in table:
        if system.name not in med:
            print(f"| {system.name} | skipped: {system.skipped} | | | |")
            continue
        m = med[system.name]
        added = m["p50"] - direct["p50"]
        if naive is not None:
            floor = naive["p50"] - direct["p50"]
            ratios = f"{added / floor:.2f} | {m['rps']:.0f} | {m['rps'] / naive['rps']:.2f}"
        else:
            ratios = f"- | {m['rps']:.0f} | -"
        print(f"| {system.name} | {added:.3f} | {ratios} |")
    full = med.get("ProxyAPI full")
    if full is not None:
        print("ProxyAPI full against the others (targets in brackets):")
        added = full["p50"] - direct["p50"]
        for name, p50_target, rps_target in (
            ("naive floor", 1.0, 1.0),
            (f"Portkey {PORTKEY_VERSION}", 1.0, 1.5),
            (f"LiteLLM {LITELLM_VERSION}", None, 8.0),
        ):
            other = med.get(name)
            if other is None:
                print(f"  vs {name}: not measured")
                continue
            p50_ratio = added / (other["p50"] - direct["p50"])
            rps_ratio = full["rps"] / other["rps"]
            p50_note = f" [≤ {p50_target}]" if p50_target is not None else ""
            print(
                f"  vs {name}: added p50 {p50_ratio:.2f}x{p50_note}, "
                f"req/s {rps_ratio:.2f}x [≥ {rps_target}]"
            )
    for name, values in rss.items():
        print(f"{name}: RSS per worker (MB) {', '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    main()
