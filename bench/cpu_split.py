"""CPU time per request, by process: the gateway's workers, Redis, the fake upstream.

A request's cost at concurrency 16 on a 2-core machine is CPU: this reads each process's user
and system time from ``/proc`` before and after a wrk run and divides by the requests served,
so a feature's cost shows up as microseconds of CPU, wherever they are spent. It also counts
the workers' context switches per request (a thread waiting on a socket hands the GIL over).

Systems: ``naive`` (bench/naive_proxy.py), ``lean`` and ``full`` as bench/peers.py runs them,
and ``redis`` (distributed mode) with the variant given as JSON, e.g.
``--variant '{"key_limits": ["1000000/minute"]}'`` (the keys bench/overhead.py's variants use).

Run: ``python bench/cpu_split.py full [--duration 8]``
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from overhead import CLIENT_KEY, start_gateway, start_upstream, wrk  # noqa: E402
from peers import FULL, start_naive, wait_ready  # noqa: E402

from tests.fakes.redis_server import RedisServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", status))
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=("naive", "lean", "full", "redis"))
    parser.add_argument("--variant", default="{}", help="JSON, for the 'redis' system")
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-cpu-"))
    redis_server = RedisServer(tmp).start()
    upstream, up_port = start_upstream()
    try:
        if args.system == "naive":
            proc, base, log = start_naive(f"http://127.0.0.1:{up_port}", tmp)
            url = f"{base}/v1/chat/completions"
            wait_ready(proc, url, {}, log)
        else:
            variant = {"lean": {}, "full": FULL}.get(args.system) or json.loads(args.variant)
            redis_url = None if args.system == "lean" else redis_server.url
            proc, port, _ = start_gateway(up_port, 2, 32, tmp, redis_url, variant)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
            wrk(url, 16, 2, headers, tmp)
            groups = {
                "workers": children(proc.pid),
                "upstream": [upstream.pid],
                "redis": [redis_server.proc.pid] if redis_server.proc else [],
            }
            before = {k: [cpu_seconds(p) for p in v] for k, v in groups.items()}
            csw = sum(switches(p) for p in groups["workers"])
            result = wrk(url, 16, args.duration, headers, tmp)
            after = {k: [cpu_seconds(p) for p in v] for k, v in groups.items()}
            csw = sum(switches(p) for p in groups["workers"]) - csw
            served = result["rps"] * args.duration
            print(f"{args.system}: {result['rps']:.0f} req/s at c=16; CPU per request:")
            for name in groups:
                user = sum(a[0] - b[0] for a, b in zip(after[name], before[name], strict=True))
                system = sum(a[1] - b[1] for a, b in zip(after[name], before[name], strict=True))
                print(
                    f"  {name:9} {1e6 * (user + system) / served:6.0f} µs "
                    f"(user {1e6 * user / served:.0f}, system {1e6 * system / served:.0f})"
                )
            print(f"  workers' context switches per request: {csw / served:.1f}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        upstream.terminate()
        redis_server.stop()


if __name__ == "__main__":
    main()
