"""Usage and cost accounting in isolation: the CPU one answer's accounting costs, and the memory
genai-prices costs a worker.

Run: ``python bench/accounting.py [--rounds 7] [--iterations 20000] [--rss-rounds 3]``
``[--gateway 3000]``.

Part 1, time per call (``time.perf_counter_ns`` around ``--iterations`` calls, per call; the
median of ``--rounds`` rounds, and the fastest and slowest round), in this process, no I/O:

- ``Pricer.cost`` for one answer of 9 prompt and 2 completion tokens (what
  ``bench/fast_upstream.py`` answers): priced by genai-prices' table (a provider of type
  ``openai`` at ``https://api.openai.com/v1``, model ``gpt-4o-mini``), by a ``pricing.prices``
  entry of the config, and for a host genai-prices does not know (the unpriced answer, as the
  fake upstream of ``bench/overhead.py`` is: a memoized miss);
- for reference, genai-prices' own calculation of the same answer: ``genai_prices.calc_price``
  (finds the provider and model in the table, then computes) and ``ModelPrice.calc_price`` (the
  computation alone, for the model's price found once);
- ``UsageRecorder.record`` of a ready-made entry into a store that does nothing (the flush
  thread sleeps for an hour, so this is the request path only: the in-memory sum under a lock);
- ``Accounting.account`` end to end (price, build the entry, record it, tell a no-op cost
  observer; the gateway's observer, one Prometheus counter, is not included), for each of the
  three prices above.

Part 2, resident memory (``VmRSS`` of ``/proc/self/status``) of a fresh Python process, like a
gunicorn worker once it has built the app (``preload_app`` is off, so each worker imports and
builds its own), after ``import proxyapi; create_app(config)`` with one provider of type
``openai`` at api.openai.com listing ``gpt-4o-mini`` and one answer accounted, then
``gc.collect()``. The median of ``--rss-rounds`` processes per case:

- ``accounting on``: the defaults (pricing table on, usage log on, SQLite in a temp dir);
- ``pricing table off``: ``pricing: {table: false}`` (genai-prices is still imported:
  ``proxyapi.pricing`` imports it whatever the config says);
- ``usage off``: ``usage: {enabled: false}`` (no store, no recorder; prices still computed);
- ``no genai-prices``: the table off, and ``genai_prices`` replaced in ``sys.modules`` by an
  empty stub before ``proxyapi`` is imported, so neither it nor pydantic (which only it pulls in)
  is loaded. ``accounting on`` minus this is what genai-prices costs a worker: its import, its
  bundled price table and the lookups made when the app is built;
- for reference, a bare interpreter and one that only imports genai-prices.

Part 3, only with ``--gateway N``: four gateways side by side under gunicorn (one worker each,
started by ``bench/overhead.py``'s launcher against its fake upstream): the usage log on (the
default; the fake upstream's answers are unpriced), off (``usage: {enabled: false}``), on with
a config price for every answer, and off again, whose difference from the first "off" is the
noise between two identical gateways. ``N`` rounds of one request to each gateway in turn
(each one first in turn), one request at a time, so all four see the same state of the
machine. Printed: the client's p50 and p90, the gateway's own ``X-ProxyAPI-Overhead-Ms`` p50
(a non-streamed answer is priced before it is sent, so that includes the accounting), and the
median of the per-round differences from the usage log off.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENV = {"BENCH_UPSTREAM_KEY": "sk-bench"}
MODEL = "gpt-4o-mini"
PROVIDERS: list[dict[str, Any]] = [
    {
        "name": "openai",
        "type": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "BENCH_UPSTREAM_KEY",
        "models": [MODEL],
    },
    {
        "name": "configured",
        "type": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "BENCH_UPSTREAM_KEY",
        "models": [MODEL],
    },
    {
        "name": "unknown",
        "type": "openai",
        "base_url": "http://127.0.0.2:9/v1",
        "api_key_env": "BENCH_UPSTREAM_KEY",
        "models": [MODEL],
    },
]
PRICES = [
    {"provider": "configured", "model": MODEL, "input_per_mtok": 0.15, "output_per_mtok": 0.6}
]
CASES = {
    "openai": "genai-prices table (openai, gpt-4o-mini)",
    "configured": "config price (pricing.prices)",
    "unknown": "unpriced host (memoized miss)",
}
RSS_CASES: dict[str, str] = {
    "on": "accounting on (defaults)",
    "table-off": "pricing table off",
    "usage-off": "usage off",
    "stub": "no genai-prices (stubbed, table off)",
    "python": "bare python (reference)",
    "import": "python + import genai_prices (reference)",
}


class NoopStore:
    """A usage store that takes every batch and keeps nothing."""

    def add(self, entries: Any) -> None:
        pass

    def query(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def per_call_us(fn: Callable[[], object], iterations: int, rounds: int) -> tuple[float, ...]:
    """(median, fastest, slowest) µs per call of ``fn`` over ``rounds`` rounds."""
    for _ in range(min(iterations, 1000)):  # warm-up: memos, caches
        fn()
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter_ns() - start) / iterations / 1000)
    return statistics.median(results), min(results), max(results)


def timings(iterations: int, rounds: int) -> None:
    import genai_prices

    from proxyapi.accounting import Accounting
    from proxyapi.config import parse_config
    from proxyapi.pricing import Pricer
    from proxyapi.providers.base import Usage
    from proxyapi.usage import UsageEntry, UsageRecorder

    config = parse_config({"providers": PROVIDERS, "pricing": {"prices": PRICES}}, ENV)
    pricer = Pricer(config.pricing, config.providers)
    usage = Usage(prompt_tokens=9, completion_tokens=2, total_tokens=11, model=MODEL)
    for provider in CASES:
        print(f"# {provider}: cost of the answer {pricer.cost(provider, MODEL, usage)!r} USD")
    # One hour of flush interval: the thread sleeps, so only the request path is timed.
    recorder = UsageRecorder(NoopStore(), flush_interval=3600)
    accounting = Accounting(pricer, None, recorder, on_cost=lambda *_: None)
    entry = UsageEntry(
        at=time.time(),
        key="bench",
        route="chat",
        provider="openai",
        model=MODEL,
        cache_hit=False,
        input_tokens=9,
        output_tokens=2,
    )

    def cost_of(provider: str) -> Callable[[], object]:
        return lambda: pricer.cost(provider, MODEL, usage)

    def account_of(provider: str) -> Callable[[], object]:
        return lambda: accounting.account(
            key="bench",
            route="chat",
            provider=provider,
            model=MODEL,
            model_label=MODEL,
            usage=usage,
            cache_hit=False,
        )

    rows: list[tuple[str, Callable[[], object]]] = [("empty call (loop overhead)", lambda: None)]
    rows += [(f"Pricer.cost, {label}", cost_of(p)) for p, label in CASES.items()]
    answer = genai_prices.Usage(input_tokens=9, output_tokens=2)
    found = genai_prices.calc_price(answer, MODEL, provider_id="openai")
    rows.append(
        (
            "genai_prices.calc_price (reference)",
            lambda: genai_prices.calc_price(answer, MODEL, provider_id="openai"),
        )
    )
    rows.append(("ModelPrice.calc_price (reference)", lambda: found.model_price.calc_price(answer)))
    rows.append(("UsageRecorder.record, no-op store", lambda: recorder.record(entry)))
    rows += [(f"Accounting.account, {label}", account_of(p)) for p, label in CASES.items()]
    print(f"time per call, µs: median of {rounds} rounds of {iterations} calls (fastest-slowest)")
    for label, fn in rows:
        median, fastest, slowest = per_call_us(fn, iterations, rounds)
        print(f"  {label:58} {median:8.2f}   ({fastest:.2f}-{slowest:.2f})")
    recorder.close()


def stub_genai_prices() -> None:
    """Put an empty ``genai_prices`` in ``sys.modules``: every name it is asked for is a class
    that nothing instantiates (with the table off and no config prices, none is used)."""

    def any_name(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})

    for name in ("genai_prices", "genai_prices.types"):
        module = types.ModuleType(name)
        module.__getattr__ = any_name  # type: ignore[method-assign]
        sys.modules[name] = module
    sys.modules["genai_prices"].types = sys.modules["genai_prices.types"]  # type: ignore[attr-defined]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(case: str, tmp: Path) -> None:
    """One case of part 2, in a fresh process: build what the case builds, print the RSS."""
    if case == "import":
        import genai_prices  # noqa: F401
    elif case != "python":
        if case == "stub":
            stub_genai_prices()
        import proxyapi
        from proxyapi.providers.base import Usage

        config: dict[str, Any] = {
            "providers": PROVIDERS[:1],
            "cache": {"dir": str(tmp / "cache")},
            "usage": {"path": str(tmp / "usage.sqlite3")},
        }
        if case in ("table-off", "stub"):
            config["pricing"] = {"table": False}
        if case == "usage-off":
            config["usage"] = {"enabled": False}
        os.environ.update(ENV)
        app = proxyapi.create_app(config)
        accounting = app.extensions["proxyapi.accounting"]
        accounting.account(
            key="bench",
            route="chat",
            provider="openai",
            model=MODEL,
            model_label=MODEL,
            usage=Usage(9, 2, 11, model=MODEL),
            cache_hit=False,
        )
        accounting.flush()
    gc.collect()
    loaded = {name: name in sys.modules for name in ("genai_prices", "pydantic")}
    if case == "stub":
        loaded["genai_prices"] = False
    print(json.dumps({"rss_kb": rss_kb(), **loaded}))


def run_child(case: str, tmp: Path) -> Mapping[str, Any]:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}  # as gunicorn.conf.py does
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--tmp", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"{case}: the child failed:\n{out.stderr}")
    result: Mapping[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def memory(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-bench-accounting-"))
    print(f"RSS after create_app, MB: median of {rounds} fresh processes")
    medians: dict[str, float] = {}
    for case, label in RSS_CASES.items():
        try:
            runs = [run_child(case, tmp) for _ in range(rounds)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        medians[case] = statistics.median(r["rss_kb"] for r in runs) / 1024
        loaded = ", ".join(
            f"{name} {'loaded' if runs[0][name] else 'not loaded'}"
            for name in ("genai_prices", "pydantic")
        )
        print(f"  {label:42} {medians[case]:7.1f}   ({loaded})")
    on = medians["on"]
    print(
        f"genai-prices per worker (accounting on - no genai-prices): {on - medians['stub']:.1f} MB"
    )
    print(f"the table's lookups (accounting on - table off): {on - medians['table-off']:.1f} MB")
    print(f"the usage log (accounting on - usage off): {on - medians['usage-off']:.1f} MB")
    print(f"import genai_prices alone: {medians['import'] - medians['python']:.1f} MB")
    tmp.rmdir()


def through_gateway(n: int) -> None:
    """Part 3: the same request, in turn to four gateways running side by side."""
    sys.path.insert(0, str(ROOT / "bench"))
    import overhead  # bench/overhead.py: the fake upstream, the gateway launcher, the variants
    import requests

    variants = {
        "usage on (unpriced)": {},
        "usage off": overhead.USAGE_OFF,
        "usage on + config price": overhead.CONFIG_PRICE,
        # The same as "usage off": how much two gateways differ for no reason (the noise).
        "usage off, again (A/A)": overhead.USAGE_OFF,
    }
    tmp = Path(tempfile.mkdtemp(prefix="proxyapi-bench-accounting-"))
    upstream, port = overhead.start_upstream()
    running: list[subprocess.Popen[bytes]] = []
    try:
        urls = {}
        for name, variant in variants.items():
            proc, gw_port, _ = overhead.start_gateway(port, 1, 4, tmp, None, variant)
            running.append(proc)
            urls[name] = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {overhead.CLIENT_KEY}"}
        sessions = {name: requests.Session() for name in variants}
        latency: dict[str, list[float]] = {name: [] for name in variants}
        own: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for i in range(n + 200):  # the first 200 rounds warm up
            for name in names[i % len(names) :] + names[: i % len(names)]:  # each first in turn
                start = time.perf_counter_ns()
                answer = sessions[name].post(urls[name], json=overhead.BODY, headers=headers)
                took = (time.perf_counter_ns() - start) / 1e6
                answer.raise_for_status()
                if i >= 200:
                    latency[name].append(took)
                    own[name].append(float(answer.headers["X-ProxyAPI-Overhead-Ms"]))
    finally:
        for proc in running:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        upstream.terminate()
        upstream.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"through the gateway, {n} requests each, interleaved, one at a time (1 worker each)")
    print(f"  {'':26} {'client p50 ms':>14} {'p90':>8} {'X-ProxyAPI-Overhead-Ms p50':>28}")
    for name in names:
        cuts = statistics.quantiles(latency[name], n=10)
        own_p50 = statistics.median(own[name])
        print(
            f"  {name:26} {statistics.median(latency[name]):14.3f} {cuts[-1]:8.3f} {own_p50:28.3f}"
        )
    off = names[1]
    for name in (names[0], *names[2:]):
        paired = statistics.median(a - b for a, b in zip(latency[name], latency[off], strict=True))
        own_paired = statistics.median(a - b for a, b in zip(own[name], own[off], strict=True))
        print(
            f"  {name} - usage off: {paired * 1000:+.0f} µs per request (median of paired "
            f"differences; overhead header {own_paired * 1000:+.0f} µs)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per call measured")
    parser.add_argument("--iterations", type=int, default=20000, help="calls per timed round")
    parser.add_argument("--rss-rounds", type=int, default=3, help="processes per memory case")
    parser.add_argument("--skip-rss", action="store_true", help="only the time per call")
    parser.add_argument(
        "--gateway",
        type=int,
        default=0,
        metavar="N",
        help="also send N requests to each of 4 gateways (usage on, off, priced, off), interleaved",
    )
    parser.add_argument("--child", choices=RSS_CASES, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tmp)
        return
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    timings(args.iterations, args.rounds)
    if not args.skip_rss:
        memory(args.rss_rounds)
    if args.gateway:
        through_gateway(args.gateway)


if __name__ == "__main__":
    main()
