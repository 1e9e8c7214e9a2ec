"""Memory over a long run: each worker's RSS while the full path serves N requests.

The gateway runs as ``bench/peers.py`` runs "ProxyAPI full" (distributed mode against a
redis-server this starts, a per-key limit, a token budget, priced answers, the usage log).
wrk drives it at concurrency 16 in slices of ``--slice`` seconds until ``--requests`` have
been answered; after each slice every worker's RSS is read from ``/proc``. Printed: the RSS
after the first slice (the warm start), the last, the largest, and the drift from first to
last, per worker.

Run: ``python bench/soak.py [--requests 200000] [--slice 10]``
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from overhead import CLIENT_KEY, start_gateway, start_upstream, wrk  # noqa: E402
from peers import FULL  # noqa: E402

from tests.fakes.redis_server import RedisServer  # noqa: E402


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--slice", type=int, default=10, help="seconds per wrk run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-soak-"))
    redis_server = RedisServer(tmp).start()
    upstream, up_port = start_upstream()
    try:
        proc, port, log = start_gateway(up_port, 2, 32, tmp, redis_server.url, FULL)
        try:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
            pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]
            samples: dict[int, list[float]] = {pid: [] for pid in pids}
            served = 0
            while served < args.requests:
                result = wrk(url, 16, args.slice, headers, tmp)
                served += int(result["rps"] * args.slice)
                for pid in pids:
                    samples[pid].append(rss_mb(pid))
                print(
                    f"{served:>8} requests, {result['rps']:.0f} req/s: RSS "
                    + ", ".join(f"{samples[pid][-1]:.1f}" for pid in pids)
                    + " MB",
                    flush=True,
                )
            for pid, values in samples.items():
                first, last = values[0], values[-1]
                print(
                    f"worker {pid}: first {first:.1f} MB, last {last:.1f} MB, most "
                    f"{max(values):.1f} MB, drift {100 * (last - first) / first:+.1f}% "
                    f"over {served} requests (both workers)"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        upstream.terminate()
        redis_server.stop()


if __name__ == "__main__":
    main()
