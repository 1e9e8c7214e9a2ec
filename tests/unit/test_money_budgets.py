"""Money budgets end to end: reserved in nano-USD, settled to the priced usage, refused at 429.

Prices are config overrides of 2 USD per million input and 8 per million output tokens, so a
prompt token costs 2,000 nano-USD and a completion token 8,000: every figure below is exact
(the headers show USD to six places, a thousand nano-USD). The budgets' clock is pinned an
hour into a day window, so no window moves on during a test.
"""

from __future__ import annotations

import json
import logging
import math
from decimal import Decimal
from typing import Any

import pytest
import redis
import responses
from flask import Flask
from flask.testing import FlaskClient

from proxyapi import budgets, create_app, fleet, routing
from proxyapi.auth import hash_key
from proxyapi.budgets import estimate_prompt
from proxyapi.budgets.store import NANO_USD, Ask, RedisBudgetStore, Rule
from proxyapi.config import ConfigError, parse_config
from proxyapi.providers.base import Operation
from tests.schemas import assert_valid

URL = "http://up.test/v1"
LOCAL = "http://127.0.0.1:9/v1"  # an openai-type host genai-prices cannot price
MAX = 100  # CHAT's max_tokens
CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": MAX,
}
UNCAPPED = {k: v for k, v in CHAT.items() if k != "max_tokens"}  # the gateway sets the cap
PRICE = {"provider": "up", "model": "m", "input_per_mtok": 2.0, "output_per_mtok": 8.0}
NANO = 1_000_000_000
IN, OUT = 2_000, 8_000  # nano-USD per prompt and per completion token
PROMPT = estimate_prompt(Operation.CHAT, CHAT)  # 11: 32 bytes of messages at 3 a token
HOLD = PROMPT * IN + MAX * OUT  # what CHAT reserves: 822,000
COST = 100 * IN + 50 * OUT  # what an answer using 100 + 50 tokens costs: 600,000
BUDGET = 5_000_000  # $0.005
SERVED = 7  # answers before less than HOLD is left: 5M - 7 * 600k = 800k < 822k
DAY = 86_400
T0 = 20_000 * DAY + 3600.0  # an hour into a day window


class Clock:
    """The budgets' clock (``proxyapi.budgets.time``), moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(budgets, "time", fake)
    return fake


def answer(prompt: int = 100, completion: int = 50) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


@pytest.fixture
def upstream() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{URL}/chat/completions", json=answer())
        mock.post(f"{LOCAL}/chat/completions", json=answer())
        yield mock


def config(keys: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"sha256": hash_key(k["name"]), **k} for k in keys]},
        "providers": [
            {"name": "up", "base_url": URL, "models": ["m"], "retry": {"max_attempts": 1}},
            {"name": "local", "base_url": LOCAL, "models": ["llama"]},
        ],
        "pricing": {"prices": [PRICE]},
        "cache": {"responses": "off"},
        **extra,
    }


def make(keys: list[dict[str, Any]], **extra: Any) -> FlaskClient:
    return create_app(config(keys, **extra)).test_client()


def dollars(nano_usd: int, period: str = "day", **more: Any) -> dict[str, Any]:
    return {"usd": nano_usd / NANO, "period": period, **more}


def post(client: FlaskClient, key: str, body: dict[str, Any] = CHAT) -> Any:
    resp = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    resp.get_data()
    resp.close()  # as the WSGI server does once the body is sent: the budget is settled
    return resp


def remaining(resp: Any) -> int:
    """The response's X-ProxyAPI-Budget-Remaining-USD, in nano-USD."""
    return int(Decimal(resp.headers["X-ProxyAPI-Budget-Remaining-USD"]) * NANO)


def left(client: FlaskClient, key: str) -> int:
    """What the key's money budget has left now: a request that can never fit is refused
    with the budget as it stands (nothing reserved, nothing sent)."""
    resp = post(client, key, {**CHAT, "max_tokens": 10**7})
    assert resp.status_code == 429, resp.json
    return remaining(resp)


def assert_budget_exceeded(resp: Any, limit: int, left_now: int) -> None:
    assert resp.status_code == 429
    assert_valid("ErrorResponse", resp.json)
    err = resp.json["error"]
    assert (err["type"], err["code"]) == ("rate_limit_error", "budget_exceeded")
    assert resp.headers["Retry-After"] == str(DAY - 3600)
    assert int(Decimal(resp.headers["X-ProxyAPI-Budget-Limit-USD"]) * NANO) == limit
    assert remaining(resp) == left_now
    assert resp.headers["X-ProxyAPI-Budget-Reset"] == str(DAY - 3600)


def test_answers_spend_the_budget_exactly_until_the_next_would_pass_it(upstream: Any) -> None:
    client = make([{"name": "k", "budget": dollars(BUDGET)}])
    for n in range(SERVED):
        resp = post(client, "k")
        assert resp.status_code == 200, resp.json
        assert "Retry-After" not in resp.headers
        assert resp.headers["X-ProxyAPI-Budget-Limit-USD"] == "0.005000"
        assert resp.headers["X-ProxyAPI-Budget-Reset"] == str(DAY - 3600)
        # n answers settled, this one's reservation held
        assert remaining(resp) == BUDGET - n * COST - HOLD
    refused = post(client, "k")
    assert_budget_exceeded(refused, BUDGET, BUDGET - SERVED * COST)
    message = refused.json["error"]["message"]
    assert "for key 'k': $0.005 per day" in message
    assert "may cost up to $0.000822 and $0.000800 is left" in message
    assert len(upstream.calls) == SERVED


def test_a_request_that_may_cost_more_than_is_left_is_never_sent(upstream: Any) -> None:
    client = make([{"name": "k", "budget": dollars(HOLD + 1000)}])
    assert post(client, "k", {**CHAT, "max_tokens": 101}).status_code == 429
    assert len(upstream.calls) == 0
    # A request without a cap is sent with the one the budget can pay for.
    assert post(client, "k", UNCAPPED).status_code == 200
    sent = json.loads(upstream.calls[0].request.body)
    assert sent["max_completion_tokens"] == MAX  # (823k - 22k for the prompt) // 8000


def reserve(app: Flask, body: dict[str, Any] = CHAT) -> budgets.Ticket:
    """Reserve for ``body`` as the chat route does, without sending anything."""
    key = app.extensions["proxyapi.config"].auth.keys[0]
    targets = app.extensions[routing.EXTENSION].resolve(body["model"])
    counted: budgets.Budgets = app.extensions[budgets.EXTENSION]
    ticket, _ = counted.reserve(key, Operation.CHAT, dict(body), targets)
    assert ticket is not None
    return ticket


def test_reservations_in_flight_count_against_the_budget() -> None:
    app = create_app(config([{"name": "k", "budget": dollars(2 * HOLD - 1000)}]))
    first = reserve(app)
    with pytest.raises(budgets.BudgetExceeded):
        reserve(app)
    first.settle()  # no provider answered: nothing spent, the whole hold given back
    assert reserve(app).held == (HOLD,)


def test_prices_per_token_round_up_only_what_they_must() -> None:
    # 0.267 USD per million is 267 nano-USD a token, though 0.267e9 / 1e6 is 267.00000000000006.
    cheap = {**PRICE, "input_per_mtok": 0.267, "output_per_mtok": 0.267}
    app = create_app(
        config([{"name": "k", "budget": dollars(BUDGET)}], pricing={"prices": [cheap]})
    )
    assert reserve(app).held == ((PROMPT + MAX) * 267,)


def test_a_request_no_provider_answered_costs_nothing(upstream: Any) -> None:
    upstream.replace(responses.POST, f"{URL}/chat/completions", json={}, status=500)
    client = make([{"name": "k", "budget": dollars(BUDGET)}])
    assert post(client, "k").status_code == 502
    assert left(client, "k") == BUDGET


def test_the_reservation_is_settled_to_the_real_cost(upstream: Any) -> None:
    client = make([{"name": "k", "budget": dollars(BUDGET)}])
    first = post(client, "k")
    assert remaining(first) == BUDGET - HOLD
    assert first.headers["X-ProxyAPI-Cost-USD"].startswith("0.0006")
    assert left(client, "k") == BUDGET - COST
    upstream.replace(responses.POST, f"{URL}/chat/completions", json=answer(7, 3))
    post(client, "k")
    assert left(client, "k") == BUDGET - COST - (7 * IN + 3 * OUT)


def test_an_unpriced_model_is_refused_only_to_keys_with_a_money_budget(upstream: Any) -> None:
    client = make([{"name": "k", "budget": dollars(BUDGET)}, {"name": "free"}])
    llama = {**CHAT, "model": "llama"}
    resp = post(client, "k", llama)
    assert resp.status_code == 403
    assert_valid("ErrorResponse", resp.json)
    assert resp.json["error"]["code"] == "model_unpriced"
    assert "provider 'local' has no price for model 'llama'" in resp.json["error"]["message"]
    assert len(upstream.calls) == 0
    assert post(client, "free", llama).status_code == 200
    assert len(upstream.calls) == 1


def warnings_metric(app: Flask, key: str) -> float:
    registry = app.extensions["proxyapi.metrics"].registry
    return registry.get_sample_value("proxyapi_budget_warnings_total", {"key": key}) or 0.0


def test_crossing_warn_at_warns_once_per_window(
    upstream: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(config([{"name": "k", "budget": dollars(BUDGET, warn_at=0.5)}]))
    client = app.test_client()

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "proxyapi.budgets.money"]

    with caplog.at_level(logging.WARNING, "proxyapi.budgets.money"):
        # Without a cap this reserves nearly all that is left, but spends 12%: no warning.
        assert remaining(post(client, "k", UNCAPPED)) < HOLD
        for _ in range(3):  # spent 2.4M of 5M
            post(client, "k")
        assert warned() == [] and warnings_metric(app, "k") == 0
        for _ in range(2):  # 3M (past half: said once), then 3.6M
            post(client, "k")
        assert warned() == ["key k has spent 60% of its budget of $0.005 per day (warned at 50%)"]
        assert warnings_metric(app, "k") == 1
        clock.now += DAY  # the next window: 23/24 of the last one's 3.6M still count
        post(client, "k")
        post(client, "k")
    assert warned()[1:] == ["key k has spent 81% of its budget of $0.005 per day (warned at 50%)"]
    assert warnings_metric(app, "k") == 2


@pytest.mark.parametrize(
    ("tokens", "usd", "code"),
    [
        # tokens reserve 11 + 100 and settle to 150: room for 2 answers, then 100 left < 111
        ("400/day", BUDGET, "token_budget_exceeded"),
        ("100000/day", 2 * COST + HOLD - 1000, "budget_exceeded"),
    ],
)
def test_tokens_and_money_together_the_tighter_refuses(
    upstream: Any, tokens: str, usd: int, code: str
) -> None:
    client = make([{"name": "k", "token_limits": [tokens], "budget": dollars(usd)}])
    for _ in range(2):
        resp = post(client, "k")
        assert resp.status_code == 200
        assert {"X-RateLimit-Remaining-Tokens", "X-ProxyAPI-Budget-Remaining-USD"} <= set(
            resp.headers.keys()
        )
    refused = post(client, "k")
    assert refused.status_code == 429 and refused.json["error"]["code"] == code
    assert len(upstream.calls) == 2


def test_the_tightest_of_several_budgets_refuses_and_is_shown(upstream: Any) -> None:
    hour = 2 * COST + HOLD - 1000
    client = make([{"name": "k", "budget": [dollars(10 * BUDGET, "month"), dollars(hour, "hour")]}])
    first = post(client, "k")
    assert first.headers["X-ProxyAPI-Budget-Limit-USD"] == "0.002021"  # the hour's
    assert (remaining(first), first.headers["X-ProxyAPI-Budget-Reset"]) == (hour - HOLD, "3600")
    assert post(client, "k").status_code == 200
    refused = post(client, "k")
    assert refused.status_code == 429 and "$0.002021 per hour" in refused.json["error"]["message"]
    assert refused.headers["Retry-After"] == "3600"


def test_redis_counts_amounts_lua_would_print_as_exponents(redis_url: str) -> None:
    """1e8 nano-USD ($0.10) reserved and given back exactly (Redis 7.2.0-7.2.4 would pass the
    Lua number 1e8 to INCRBY as '1e+08')."""
    store = RedisBudgetStore(redis.Redis.from_url(redis_url), "ns")
    rules = [Rule(10 * NANO, DAY, "$10 per day", NANO_USD)]
    ask = Ask(0, 100, False, 0, 0, "t", 60.0, costs=((0, 1_000_000),))
    held = store.reserve("k", rules, ask, T0)
    assert held.lefts == (10 * NANO - 10**8,)
    store.settle("k", rules, held.windows, (-(10**8),), "t", False)
    assert store.reserve("k", rules, ask, T0).lefts == held.lefts


def test_two_hosts_on_one_redis_spend_one_budget_exactly(
    upstream: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No fleet thread: it would go on writing to the session's Redis after this test.
    monkeypatch.setattr(fleet.Fleet, "start", lambda self: None)
    keys = [{"name": "k", "budget": dollars(BUDGET)}]
    hosts = [make(keys, redis={"url": redis_url}, usage={"store": "sqlite"}) for _ in range(2)]
    for n in range(3):
        for host in hosts:
            assert post(host, "k").status_code == 200
        assert left(hosts[n % 2], "k") == BUDGET - 2 * (n + 1) * COST
    codes = [post(hosts[i % 2], "k").status_code for i in range(3)]
    assert codes == [200, 429, 429]  # the 8th request: refused as on one host
    assert left(hosts[0], "k") == left(hosts[1], "k") == BUDGET - SERVED * COST
    assert len(upstream.calls) == SERVED


def test_two_hosts_on_one_redis_warn_once(
    upstream: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fleet.Fleet, "start", lambda self: None)
    keys = [{"name": "k", "budget": dollars(BUDGET, warn_at=0.5)}]
    # The usage log stays on this host: Redis is the session's, gone at exit.
    shared = {"redis": {"url": redis_url}, "usage": {"store": "sqlite"}}
    apps = [create_app(config(keys, **shared)) for _ in range(2)]
    hosts = [app.test_client() for app in apps]
    with caplog.at_level(logging.WARNING, "proxyapi.budgets.money"):
        for i in range(6):  # past half the budget at the 5th, then both hosts see it passed
            assert post(hosts[i % 2], "k").status_code == 200
    said = [r for r in caplog.records if r.name == "proxyapi.budgets.money"]
    assert len(said) == 1  # one host claimed the window's warning; the other stayed quiet
    assert sum(warnings_metric(app, "k") for app in apps) == 1


def test_a_cache_hit_costs_nothing(upstream: Any) -> None:
    client = make([{"name": "k", "budget": dollars(BUDGET)}], cache={"responses": "deterministic"})
    body = {**CHAT, "temperature": 0}
    assert post(client, "k", body).headers["X-Cache"] == "MISS"
    assert left(client, "k") == BUDGET - COST
    hit = post(client, "k", body)
    assert hit.headers["X-Cache"] == "HIT"
    assert left(client, "k") == BUDGET - COST
    assert len(upstream.calls) == 1


def test_a_stream_cut_short_is_charged_what_was_relayed(upstream: Any) -> None:
    # 40 characters of text (10 tokens), then the stream ends: no usage, no [DONE].
    events = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"x" * 40 + b'"}}]}\n\n'
    upstream.replace(
        responses.POST, f"{URL}/chat/completions", body=events, content_type="text/event-stream"
    )
    client = make([{"name": "k", "budget": dollars(BUDGET)}])
    streamed = post(client, "k", {**CHAT, "stream": True})
    assert streamed.status_code == 200 and remaining(streamed) == BUDGET - HOLD
    assert b"x" * 40 in streamed.get_data()
    charged = BUDGET - left(client, "k")
    assert 0 < charged <= HOLD
    assert charged == PROMPT * IN + 10 * OUT  # the estimated prompt and the text relayed


# ---------------------------------------------------------------- config


def key_with(budget: Any) -> dict[str, Any]:
    return {"auth": {"keys": [{"name": "k", "sha256": "0" * 64, "budget": budget}]}}


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"usd": 0, "period": "day"}, r"auth\.keys\[0\] \(k\)\.budget\.usd must be .* got 0"),
        ({"usd": -5, "period": "day"}, r"\(k\)\.budget\.usd must be a number above 0, got -5"),
        ({"usd": math.nan, "period": "day"}, r"\(k\)\.budget\.usd must .* got nan"),
        ({"usd": 1_000_001, "period": "day"}, r"\(k\)\.budget\.usd must be at most .* 1000001"),
        ({"usd": "50", "period": "day"}, r"\(k\)\.budget\.usd must .* got '50'"),
        ({"usd": 5, "period": "year"}, r"\(k\)\.budget\.period must be one of .* got 'year'"),
        ({"usd": 5}, r"\(k\)\.budget\.period is required"),
        ({"usd": 5, "period": "day", "warn_at": 1.5}, r"\(k\)\.budget\.warn_at .* got 1\.5"),
        ({"usd": 5, "period": "day", "warn_at": -0.1}, r"\(k\)\.budget\.warn_at .* got -0\.1"),
        ({"usd": 5, "period": "day", "cap": 1}, r"'auth\.keys\[0\] \(k\)\.budget\.cap'"),
        (
            [{"usd": 5, "period": "day"}, {"usd": 9, "period": "day"}],
            r"duplicate value in auth\.keys\[0\] \(k\)\.budget\[\]\.period: 'day'",
        ),
        ([{"usd": 5, "period": "day"}, 7], r"\(k\)\.budget\[1\] must be a mapping .* got 7"),
    ],
)
def test_bad_budgets_are_refused_naming_the_key_and_value(budget: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(key_with(budget), environ={})


def test_a_warn_at_of_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\(k\)\.budget\.warn_at .* got 0"):
        parse_config(key_with({"usd": 5, "period": "day", "warn_at": 0}), environ={})


def test_several_budgets_parse_with_their_defaults() -> None:
    budget = [{"usd": 50, "period": "month"}, {"usd": 5, "period": "day", "warn_at": 1}]
    parsed = parse_config(key_with(budget), environ={}).auth.keys[0].money_budgets
    assert [(b.usd, b.seconds, b.warn_at) for b in parsed] == [
        (50.0, 30 * DAY, 0.8),
        (5.0, DAY, 1.0),
    ]


def test_an_answer_is_settled_before_it_is_sent(upstream: Any) -> None:
    # A client may send its next request (to any host) as soon as it has read an answer, before
    # the server has closed that response: the budget must already be settled by then.
    client = make([{"name": "k", "budget": dollars(BUDGET)}])
    headers = {"Authorization": "Bearer k"}
    first = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    first.get_data()  # read, not closed
    second = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    second.get_data()
    assert remaining(second) == BUDGET - COST - HOLD  # the first settled to its cost, not held
    first.close()
    second.close()
    assert left(client, "k") == BUDGET - 2 * COST
