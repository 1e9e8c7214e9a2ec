"""Usage and cost through real gunicorn: the usage log adds up exactly to what the fake reported,
across the workers of a host (SQLite) and across hosts (Redis), streamed or not, with money
budgets exact across hosts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import openai
import requests

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream, Fault

ADMIN_KEY = "pk-admin-usage-test-key"
# Prices for the fake's models, per million tokens: $2.50 in, $1.25 cached in, $10 out.
PRICE = {
    "provider": "fake",
    "model": "gpt-4o*",
    "input_per_mtok": 2.5,
    "output_per_mtok": 10.0,
    "cache_read_per_mtok": 1.25,
}
# What the fake adds to every usage: OpenAI's cache and reasoning detail.
DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 3},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
UNITS = ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens")


def usage_config(fake: FakeUpstream, **extra: Any) -> dict[str, Any]:
    config = base_config(fake)
    config["auth"]["keys"].append({"name": "root", "key_env": "ADMIN_KEY", "admin": True})
    config["pricing"] = {"prices": [PRICE]}
    config["usage"] = {"flush_interval": 0.2}
    config.update(extra)
    return config


ENV = {"ADMIN_KEY": ADMIN_KEY}


def cost(units: dict[str, int]) -> float:
    uncached = units["input_tokens"] - units["cache_read_tokens"]
    per_mtok = uncached * 2.5 + units["cache_read_tokens"] * 1.25 + units["output_tokens"] * 10
    return per_mtok / 1e6


def add(total: dict[str, int], seen: openai.types.CompletionUsage) -> None:
    total["requests"] += 1
    total["input_tokens"] += seen.prompt_tokens
    total["output_tokens"] += seen.completion_tokens
    assert seen.prompt_tokens_details and seen.completion_tokens_details
    total["cache_read_tokens"] += seen.prompt_tokens_details.cached_tokens or 0
    total["reasoning_tokens"] += seen.completion_tokens_details.reasoning_tokens or 0


def traffic(
    hosts: list[GatewayProcess], sdk: Callable[..., openai.OpenAI], each: int
) -> dict[str, int]:
    """Send ``each`` requests per thread from 4 threads (two keys, streamed and not, prompts
    of different sizes); return the sum of the usage the fake reported to the clients."""
    total = dict.fromkeys(("requests", *UNITS), 0)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        # A new connection per request, so the requests spread over every worker (a kept-alive
        # one stays with the worker that accepted it).
        client = sdk(
            hosts[thread % len(hosts)],
            key=(ALICE_KEY, BOB_KEY)[thread % 2],
            default_headers={"Connection": "close"},
        )
        try:
            for i in range(each):
                messages: Any = [{"role": "user", "content": "hi " * (thread + i)}]
                if i % 2:
                    stream = client.chat.completions.create(
                        model="gpt-4o",
                        messages=messages,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    seen = [c.usage for c in stream if c.usage is not None]
                    assert len(seen) == 1
                    usage = seen[0]
                else:
                    answer = client.chat.completions.create(model="gpt-4o", messages=messages)
                    assert answer.usage is not None
                    usage = answer.usage
                with lock:
                    add(total, usage)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return total


def read_usage(gw: GatewayProcess, key: str = ADMIN_KEY, **args: str) -> dict[str, Any]:
    resp = requests.get(
        f"{gw.url}/v1/usage", params=args, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def settled(gw: GatewayProcess, expected: dict[str, int], **args: str) -> dict[str, Any]:
    """The usage totals once every worker has flushed (within a few flush intervals)."""
    deadline = time.monotonic() + 10
    while True:
        totals = read_usage(gw, **args)["totals"]
        if totals["requests"] >= expected["requests"] or time.monotonic() > deadline:
            return dict(totals)
        time.sleep(0.2)


def serving_pids(gw: GatewayProcess) -> set[str]:
    return set(re.findall(r"\[(\d+)\] \[\w+\] proxyapi\.access", gw.logs()))


def check(totals: dict[str, Any], expected: dict[str, int]) -> None:
    assert {k: totals[k] for k in expected} == expected
    assert abs(totals["cost_usd"] - cost(expected)) < 1e-9
    assert totals["unpriced_requests"] == 0


def scraped_cost(gw: GatewayProcess) -> float:
    text = requests.get(f"{gw.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^proxyapi_cost_usd_total\{.*\} (\S+)$", text, re.M))


def test_sqlite_usage_adds_up_across_two_workers(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    fake.usage_details = DETAILS
    gw = launch(usage_config(fake), env=ENV, workers=2)
    expected = traffic([gw], sdk, each=10)
    assert expected["requests"] == 40
    assert (expected["cache_read_tokens"], expected["reasoning_tokens"]) == (3 * 40, 2 * 40)
    check(settled(gw, expected), expected)
    assert len(serving_pids(gw)) == 2  # both workers wrote to the one file
    # A key sees its own part; each day's rows add up to the same totals as the hours'.
    alice = read_usage(gw, ALICE_KEY)
    assert {r["key"] for r in alice["data"]} == {"alice"}
    hourly = read_usage(gw, group="hour")["totals"]
    assert {k: hourly[k] for k in expected} == expected
    assert abs(scraped_cost(gw) - cost(expected)) < 1e-9  # the metric agrees, over workers


def test_redis_usage_adds_up_across_two_hosts(
    fake: FakeUpstream,
    launch: Callable[..., GatewayProcess],
    sdk: Callable[..., openai.OpenAI],
    redis_url: str,
) -> None:
    fake.usage_details = DETAILS
    config = usage_config(fake)
    env = {**ENV, "REDIS_URL": redis_url}
    hosts = [launch(config, env=env, workers=2), launch(config, env=env, workers=2)]
    expected = traffic(hosts, sdk, each=8)
    for gw in hosts:  # every host answers with every host's usage
        check(settled(gw, expected), expected)
    assert sum(len(serving_pids(gw)) for gw in hosts) == 4


def test_a_stream_the_client_leaves_is_charged_what_was_sent(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess]
) -> None:
    gw = launch(usage_config(fake), env=ENV)
    fake.script(Fault(chunks=40, chunk_delay=0.1))
    with requests.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {ALICE_KEY}"},
        stream=True,
        timeout=10,
    ) as resp:
        lines = resp.iter_lines()
        first = [next(lines) for _ in range(6)]
        assert any(b"tok" in line for line in first)
    totals = settled(gw, {"requests": 1})
    assert totals["requests"] == 1
    # Charged the prompt and what was relayed, less than the whole answer: never nothing.
    assert 0 < totals["output_tokens"] < 40 and totals["input_tokens"] > 0
    assert totals["cost_usd"] > 0


def test_a_money_budget_is_exact_across_two_hosts(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], redis_url: str
) -> None:
    config = usage_config(fake)
    alice = config["auth"]["keys"][0]
    alice["budget"] = {"usd": 0.002, "period": "day", "warn_at": 0.5}
    alice["max_tokens"] = 16
    env = {**ENV, "REDIS_URL": redis_url}
    hosts = [launch(config, env=env, workers=2), launch(config, env=env, workers=2)]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    answers = []
    for i in range(60):
        resp = requests.post(
            f"{hosts[i % 2].url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {ALICE_KEY}"},
            timeout=10,
        )
        answers.append(resp)
        if resp.status_code == 429:
            break
    ok, refused = answers[:-1], answers[-1]
    assert len(ok) >= 10  # each reserves about $0.0002 and spends about $0.0001
    assert refused.status_code == 429, [r.status_code for r in answers]
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.headers["X-ProxyAPI-Budget-Limit-USD"] == "0.002000"
    assert int(refused.headers["Retry-After"]) >= 1
    spent = sum(float(r.headers["X-ProxyAPI-Cost-USD"]) for r in ok)
    assert 0 < spent <= 0.002  # never overspent, whichever host served
    # Each answer's Remaining is the budget less what all hosts had spent, exactly.
    remaining = [float(r.headers["X-ProxyAPI-Budget-Remaining-USD"]) for r in ok]
    assert remaining == sorted(remaining, reverse=True)
    assert len(fake.calls("/chat/completions")) == len(ok)
    warned = "".join(gw.logs() for gw in hosts).count("of its budget of")
    assert warned == 1  # past half the budget: said once, by one of the four workers
