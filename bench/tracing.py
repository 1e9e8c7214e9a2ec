"""Tracing's cost: the gateway with tracing off (no OTEL_* variable: the default) and on
(every request sampled, exported over OTLP/HTTP to a local sink), against direct calls to the
same fast fake upstream, in one run on one machine, with ``wrk``.

Off, the request path runs no tracing code (tests/unit/test_tracing.py checks that nothing is
installed); the numbers show what that is worth next to the cost of tracing every request.

Run: ``python bench/tracing.py [--workers 2] [--duration 10]``. ``--against <commit>`` instead
compares, in-process (Flask test client, a mock provider: no sockets, no wrk), the CPU per
request of this tree with tracing off and of ``<commit>`` (exported with ``git archive``), in
alternating runs: whether being off costs anything against a tree without tracing at all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import (
    BODY,
    CLIENT_KEY,
    measure,
    print_table,
    start_gateway,
    start_upstream,
    worker_rss_mb,
    wrk,
)


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing (a collector's stand-in)."""

    received = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


ROOT = Path(__file__).resolve().parents[1]
# One process: build the app, warm up, then the best of 5 rounds of 1000 requests (µs CPU each).
IN_PROCESS = r"""
import logging, time
logging.disable(logging.CRITICAL)
from proxyapi import create_app
from proxyapi.auth import hash_key
app = create_app({"providers": [{"name": "m", "type": "mock"}], "usage": {"enabled": False},
                  "auth": {"keys": [{"name": "t", "sha256": hash_key("k")}]}})
client, headers = app.test_client(), {"Authorization": "Bearer k"}
body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
for _ in range(300):
    client.post("/v1/chat/completions", json=body, headers=headers, buffered=True)
rounds = []
for _ in range(5):
    t = time.process_time()
    for _ in range(1000):
        client.post("/v1/chat/completions", json=body, headers=headers, buffered=True)
    rounds.append((time.process_time() - t) / 1000 * 1e6)
print(min(rounds))
"""


def against(commit: str, runs: int) -> None:
    """Tracing off here against ``commit``, in-process, alternating."""
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-bench-base-"))
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    results: dict[str, list[float]] = {commit: [], "tracing off": []}
    for _ in range(runs):
        for name, tree in ((commit, tmp), ("tracing off", ROOT)):
            out = subprocess.run(
                [sys.executable, "-c", IN_PROCESS],
                cwd=tree,
                env={**env, "PYTHONPATH": str(tree), "TMPDIR": str(tmp)},
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            results[name].append(float(out.stdout))
    for name, values in results.items():
        print(
            f"{name:>14}: median {statistics.median(values):.1f} µs CPU per request "
            f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
        )
    shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--against", metavar="COMMIT", help="tracing off vs COMMIT, in-process")
    parser.add_argument("--runs", type=int, default=6, help="alternating runs for --against")
    args = parser.parse_args()
    if args.against:
        against(args.against, args.runs)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-bench-tracing-"))
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    variants: list[tuple[str, dict[str, Any]]] = [
        ("tracing off", {}),
        (
            "tracing on",
            {
                "env": {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
                    "OTEL_TRACES_SAMPLER": "always_on",
                }
            },
        ),
    ]
    upstream, up_port = start_upstream()
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    results: dict[str, dict[str, dict[str, float]]] = {}
    rss: dict[str, list[float]] = {}
    try:
        results["direct"] = measure(
            f"http://127.0.0.1:{up_port}/v1/chat/completions", {}, args.duration, tmp
        )
        for name, variant in variants:
            gateway, gw_port, log = start_gateway(
                up_port, args.workers, args.threads, tmp, None, variant
            )
            try:
                url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
                check = requests.post(url, json=BODY, headers=auth, timeout=5)
                assert check.status_code == 200, check.text
                wrk(url, 16, 2, auth, tmp)  # warm-up: imports, pools
                results[name] = measure(url, auth, args.duration, tmp)
                rss[name] = worker_rss_mb(log)
            finally:
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(timeout=30)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        sink.shutdown()
    print(
        f"machine: {os.cpu_count()} cores; gateway: {args.workers} workers x {args.threads} "
        f"threads (gthread), embedded mode; OTLP exports received by the sink: {_Sink.received}"
    )
    print_table(results, [name for name, _ in variants], rss, width=14)
    on, off = results["tracing on"], results["tracing off"]
    print(
        f"tracing on vs off: p50 at c=1 {on['c1']['p50'] - off['c1']['p50']:+.3f} ms per request; "
        f"req/s at c=16 {on['c16']['rps'] / off['c16']['rps']:.3f} of off"
    )


if __name__ == "__main__":
    main()
