"""Where a worker's time goes on the full path under load: py-spy samples every worker while wrk
drives the gateway, and the samples are summed by function and by area.

The gateway runs as ``bench/peers.py`` runs "ProxyAPI full" (distributed mode with a
redis-server this starts, a per-key limit, a token budget, priced answers, the usage log) or,
with ``--lean``, as "ProxyAPI lean". py-spy (``pip install py-spy``) needs ptrace, as root
here. By default only the thread holding the GIL is sampled (py-spy ``--gil``): the figures are
shares of the Python CPU time of the workers. ``--wall`` samples every thread that is not
idle, so waits on Redis and the upstream count too.

Run: ``python bench/profile.py [--connections 16] [--duration 10] [--lean] [--top 40]``
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from overhead import CLIENT_KEY, start_gateway, start_upstream, wrk  # noqa: E402
from peers import FULL  # noqa: E402

from tests.fakes.redis_server import RedisServer  # noqa: E402

# Areas a sampled stack is charged to: the innermost frame whose file matches, first match wins.
AREAS = (
    ("redis round trip", r"\(redis/"),
    ("flask-limiter / limits", r"\((flask_limiter|limits)/"),
    ("pybreaker", r"\(pybreaker/"),
    ("requests", r"\(requests/"),
    ("urllib3", r"\(urllib3/"),
    ("http.client", r"\(http/client\.py"),
    ("prometheus-client", r"\(prometheus_client/"),
    ("logging", r"\(logging/"),
    ("json", r"\(json/"),
    ("werkzeug", r"\(werkzeug/"),
    ("flask", r"\(flask/"),
    ("gunicorn", r"\(gunicorn/"),
    ("proxyapi", r"\(proxyapi/"),
    ("threading / queues", r"\((threading|queue|concurrent/futures)"),
    ("sockets / selectors", r"\((socket|selectors|ssl)\.py"),
)


def record(pid: int, duration: int, out: Path, gil: bool) -> None:
    subprocess.run(
        [
            *("py-spy", "record", "--pid", str(pid), "--duration", str(duration)),
            *("--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"),
            *(("--gil",) if gil else ()),
        ],
        check=False,
        capture_output=True,
    )


def summarize(files: list[Path], top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue  # a frame name py-spy split over lines
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
            for frame in reversed(frames):
                area = next((name for name, rx in AREAS if re.search(rx, frame)), None)
                if area is not None:
                    areas[area] += count
                    break
            else:
                areas["other"] += count
    if not total:
        raise SystemExit("no samples: is py-spy allowed to attach (root, ptrace)?")
    print(f"{total} samples over the workers")
    print("\nby area (innermost library frame):")
    for name, count in areas.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print(f"\nown time, top {top}:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print(f"\ninclusive time, top {top}:")
    for frame, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--lean", action="store_true", help="embedded mode, no limits")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--wall",
        action="store_true",
        help="every running thread, not only the one holding the GIL (waits on sockets count)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "py-spy"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install -y wrk; pip install py-spy)")
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-profile-"))
    redis_server = None if args.lean else RedisServer(tmp).start()
    upstream, up_port = start_upstream()
    try:
        proc, port, log = start_gateway(
            up_port,
            2,
            32,
            tmp,
            None if redis_server is None else redis_server.url,
            {} if args.lean else FULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
            wrk(url, 16, 2, headers, tmp)
            pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]
            files = [tmp / f"profile-{pid}.txt" for pid in pids]
            recorders = [
                threading.Thread(target=record, args=(pid, args.duration, out, not args.wall))
                for pid, out in zip(pids, files, strict=True)
            ]
            for thread in recorders:
                thread.start()
            result = wrk(url, args.connections, args.duration, headers, tmp)
            for thread in recorders:
                thread.join()
            print(
                f"{'lean' if args.lean else 'full'} path, c={args.connections}: "
                f"{result['rps']:.0f} req/s, p50 {result['p50']:.3f} ms (slowed by sampling)"
            )
            summarize(files, args.top)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        upstream.terminate()
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    main()
