"""Cold start, workers 1 -> 2 -> 4, and streaming overhead, in one run on one machine.

- cold start: seconds from starting gunicorn (embedded mode, 2 workers) to the first 200 on
  ``/v1/chat/completions``, median of three starts;
- requests/s at concurrency 16 (wrk) with 1, 2 and 4 workers, and per worker;
- streaming: time to the first event and to the end of a 10-event stream (events 2 ms
  apart, ``bench/fast_upstream.py``), sequential requests at concurrency 1, direct and through
  the gateway; the difference is the gateway's time-to-first-byte overhead, and the extra
  time per event once the stream runs.

Run: ``python bench/scaling.py [--duration 8] [--streams 300]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fast_upstream import STREAM_CHUNKS  # noqa: E402
from overhead import BODY, CLIENT_KEY, start_gateway, start_upstream, wrk  # noqa: E402

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
STREAM_BODY = json.dumps({**BODY, "stream": True}).encode()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def cold_start(up_port: int, tmp: Path) -> float:
    started = time.monotonic()
    proc, port, _ = start_gateway(up_port, 2, 32, tmp)
    try:
        resp = requests.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY, headers=AUTH, timeout=10
        )
        assert resp.status_code == 200, resp.text
        return time.monotonic() - started
    finally:
        stop(proc)


def stream_times(port: int, headers: dict[str, str], n: int) -> tuple[float, float]:
    """Median seconds to the first event and to the end of the stream."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    firsts, totals = [], []
    for _ in range(n):
        started = time.perf_counter()
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=STREAM_BODY,
            headers={"Content-Type": "application/json", **headers},
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        first = resp.read1(65536)
        assert first.startswith(b"data:") or first.startswith(b":"), first
        firsts.append(time.perf_counter() - started)
        rest = resp.read()
        totals.append(time.perf_counter() - started)
        assert b"[DONE]" in first + rest
    conn.close()
    return statistics.median(firsts), statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--streams", type=int, default=300, help="streams per measurement")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-scaling-"))
    upstream, up_port = start_upstream()
    try:
        starts = [cold_start(up_port, tmp) for _ in range(3)]
        print(f"cold start to the first 200 (2 workers): median {statistics.median(starts):.2f} s")

        print("workers  req/s c=16  per worker")
        for workers in (1, 2, 4):
            proc, port, _ = start_gateway(up_port, workers, 32, tmp)
            try:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                wrk(url, 16, 2, AUTH, tmp)
                rps = wrk(url, 16, args.duration, AUTH, tmp)["rps"]
                print(f"{workers:>7}  {rps:>10.0f}  {rps / workers:>10.0f}")
            finally:
                stop(proc)

        direct_first, direct_total = stream_times(up_port, {}, args.streams)
        proc, port, _ = start_gateway(up_port, 2, 32, tmp)
        try:
            stream_times(port, AUTH, 20)  # warm-up
            gw_first, gw_total = stream_times(port, AUTH, args.streams)
        finally:
            stop(proc)
        per_event = ((gw_total - gw_first) - (direct_total - direct_first)) / STREAM_CHUNKS
        print(
            f"streaming, c=1, {STREAM_CHUNKS} events 2 ms apart: first event direct "
            f"{direct_first * 1e3:.3f} ms, gateway {gw_first * 1e3:.3f} ms "
            f"(time-to-first-byte overhead {(gw_first - direct_first) * 1e3:.3f} ms); "
            f"whole stream direct {direct_total * 1e3:.3f} ms, gateway {gw_total * 1e3:.3f} ms "
            f"(after the first event: {per_event * 1e3:+.3f} ms per event)"
        )
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
