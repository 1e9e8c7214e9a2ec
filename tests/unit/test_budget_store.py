"""The budget counters, in memory and in a real Redis, give the same answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from proxyapi.budgets.store import (
    OVER_BUDGET,
    RESERVED,
    TOO_MANY,
    Ask,
    BudgetStore,
    MemoryBudgetStore,
    RedisBudgetStore,
    Rule,
)

HOUR = Rule(100, 3600, "100 per 1 hour")
MINUTE = Rule(30, 60, "30 per 1 minute")
T0 = 1_800_000_000.0  # the start of an hour window (and of a minute one)


def ask(prompt: int, completion: int, flexible: bool = False, **kw: object) -> Ask:
    return Ask(
        prompt,
        completion,
        flexible,
        kw.pop("min_completion", 0),
        kw.pop("max_concurrent", 0),
        kw.pop("ticket", "t"),
        60.0,
    )  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    url = request.getfixturevalue("redis_url")
    yield RedisBudgetStore(redis.Redis.from_url(url), "ns")


def test_reserve_all_or_nothing_then_settle_to_what_was_used(store: BudgetStore) -> None:
    first = store.reserve("k", [HOUR, MINUTE], ask(10, 10), T0)
    assert (first.status, first.completion, first.rule) == (RESERVED, 10, 2)
    assert first.remaining == 10  # the minute budget is the tighter one: 30 - 20
    refused = store.reserve("k", [HOUR, MINUTE], ask(10, 10), T0 + 1)
    assert refused.status == OVER_BUDGET and refused.remaining == 10
    store.settle("k", [HOUR, MINUTE], first.windows, 5 - 20, "t", False)  # used 5
    again = store.reserve("k", [HOUR, MINUTE], ask(10, 10), T0 + 2)
    assert again.status == RESERVED and again.remaining == 5  # 30 - 5 - 20


def test_a_flexible_request_gets_what_is_left_or_is_refused(store: BudgetStore) -> None:
    got = store.reserve("k", [MINUTE], ask(10, 4096, flexible=True, min_completion=16), T0)
    assert got.status == RESERVED and got.completion == 20
    starved = store.reserve("k", [MINUTE], ask(1, 4096, flexible=True, min_completion=1), T0)
    assert starved.status == OVER_BUDGET


def test_the_window_slides(store: BudgetStore) -> None:
    store.reserve("k", [MINUTE], ask(30, 0), T0 + 30)  # spend it all half-way through
    assert store.reserve("k", [MINUTE], ask(1, 0), T0 + 59).status == OVER_BUDGET
    # 45 s into the next window, a quarter of the last one still counts: 30 * 0.25 = 7.5.
    later = store.reserve("k", [MINUTE], ask(22, 0), T0 + 105)
    assert later.status == RESERVED and later.remaining == pytest.approx(0.5)
    assert store.reserve("k", [MINUTE], ask(1, 0), T0 + 105).status == OVER_BUDGET


def test_concurrency_slots_are_taken_freed_and_expire(store: BudgetStore) -> None:
    two = [ask(0, 0, max_concurrent=2, ticket=f"t{i}") for i in range(3)]
    assert store.reserve("k", [], two[0], T0).status == RESERVED
    assert store.reserve("k", [], two[1], T0).status == RESERVED
    assert store.reserve("k", [], two[2], T0).status == TOO_MANY
    store.settle("k", [], (), 0, "t0", True)
    assert store.reserve("k", [], two[2], T0).status == RESERVED
    # A slot whose worker died is free once its lease (60 s) has run out.
    assert (
        store.reserve("k", [], ask(0, 0, max_concurrent=2, ticket="t3"), T0 + 61).status == RESERVED
    )


def test_keys_are_apart(store: BudgetStore) -> None:
    store.reserve("a", [MINUTE], ask(30, 0), T0)
    assert store.reserve("b", [MINUTE], ask(30, 0), T0).status == RESERVED


def test_redis_keeps_one_hash_slot_and_o1_space_per_key(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisBudgetStore(client, "ns")
    for i in range(50):
        outcome = store.reserve("k", [HOUR], ask(1, 0), T0 + i)
        store.settle("k", [HOUR], outcome.windows, 0, "t", False)
    keys = sorted(k.decode() for k in client.scan_iter())
    assert keys == ["{ns:tokens:k}:3600:500000"]
    assert int(client.get(keys[0])) == 50  # type: ignore[arg-type]
    client.script_flush()  # a restarted or failed-over server: NOSCRIPT, loaded again
    assert store.reserve("k", [HOUR], ask(1, 0), T0 + 60).status == RESERVED
