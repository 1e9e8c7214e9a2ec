"""Request limits, token budgets, provider caps and model allowlists, in one process."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key, may_use
from proxyapi.config import KeyConfig, parse_config
from proxyapi.ratelimit import per_process_problem
from tests.schemas import assert_valid

URL = "http://up.test/v1"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def answer(tokens: int = 10) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": tokens // 2,
            "completion_tokens": tokens - tokens // 2,
            "total_tokens": tokens,
        },
    }


def make(keys: list[dict[str, Any]], **rate_limits: Any) -> FlaskClient:
    return create_app(
        {
            "auth": {"keys": [{"sha256": hash_key(k["name"]), **k} for k in keys]},
            "providers": [
                {
                    "name": "up",
                    "base_url": URL,
                    "models": ["m", "e", "gpt-4o-mini"],
                    "retry": {"max_attempts": 1},
                }
            ],
            "models": {"fast": ["up/m"]},
            "rate_limits": rate_limits,
        }
    ).test_client()


def post(
    client: FlaskClient, key: str, body: dict[str, Any] = CHAT, path: str = "/v1/chat/completions"
) -> Any:
    resp = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    if not body.get("stream"):
        resp.get_data()
        resp.close()  # as the WSGI server does once the body is sent: the tokens are settled
    return resp


@pytest.fixture
def upstream() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{URL}/chat/completions", json=answer())
        mock.post(
            f"{URL}/embeddings",
            json={
                "object": "list",
                "data": [],
                "model": "e",
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )
        yield mock


def test_per_key_limits_own_or_default_with_headers_counting_down(upstream: Any) -> None:
    client = make([{"name": "own", "limits": ["3/minute"]}, {"name": "dflt"}], per_key="2/minute")
    remaining = []
    for _ in range(3):
        resp = post(client, "own")
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Limit"] == "3"
        assert "Retry-After" not in resp.headers  # no Retry-After on a 200
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    resp = post(client, "own")
    assert resp.status_code == 429
    assert_valid("ErrorResponse", resp.json)
    err = resp.json["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert "for key 'own': 3 per 1 minute" in err["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 61
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert [post(client, "dflt").status_code for _ in range(3)] == [200, 200, 429]
    assert len(upstream.calls) == 5  # the 429s never reached the provider


def test_burst_and_sustained_limits_together(upstream: Any) -> None:
    client = make([{"name": "k", "limits": ["2/second", "3/minute"]}])
    assert [post(client, "k").status_code for _ in range(3)] == [200, 200, 429]
    assert "2 per 1 second" in post(client, "k").json["error"]["message"]


def test_global_limit_is_one_counter_for_every_key(upstream: Any) -> None:
    client = make([{"name": "a"}, {"name": "b"}], **{"global": "3/minute"})
    codes = [post(client, k).status_code for k in ("a", "b", "a", "b")]
    assert codes == [200, 200, 200, 429]
    assert "for the whole gateway" in post(client, "a").json["error"]["message"]


def test_route_limit_applies_to_its_path_only(upstream: Any) -> None:
    client = make([{"name": "a"}, {"name": "b"}], routes={"/v1/embeddings": "1/minute"})
    emb = {"model": "e", "input": "x"}
    assert post(client, "a", emb, "/v1/embeddings").status_code == 200
    resp = post(client, "b", emb, "/v1/embeddings")
    assert resp.status_code == 429 and "for /v1/embeddings" in resp.json["error"]["message"]
    assert post(client, "b").status_code == 200  # chat is not limited


def test_token_budget_is_reserved_settled_and_refuses_before_any_upstream_call(
    upstream: Any,
) -> None:
    client = make([{"name": "t", "token_limits": ["60/minute"]}])
    capped = {**CHAT, "max_tokens": 10}  # prompt estimate 11 (32 bytes / 3) + 10 reserved
    first = post(client, "t", capped)
    assert first.headers["X-RateLimit-Limit-Tokens"] == "60"
    assert first.headers["X-RateLimit-Remaining-Tokens"] == "39"  # 60 - 21 reserved
    # The first was settled to its usage (10): 60 - 10 - 21.
    assert post(client, "t", capped).headers["X-RateLimit-Remaining-Tokens"] == "29"
    assert post(client, "t", capped).status_code == 200
    assert post(client, "t", capped).headers["X-RateLimit-Remaining-Tokens"] == "9"
    refused = post(client, "t", capped)  # 20 left, 21 needed
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "token_budget_exceeded"
    assert "needs about 21 and 20 are left" in refused.json["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(upstream.calls) == 4


def test_a_request_without_max_tokens_gets_the_cap_the_budget_has_left(upstream: Any) -> None:
    client = make([{"name": "t", "token_limits": ["100/minute"], "max_tokens": 50}])
    assert post(client, "t").status_code == 200
    assert json.loads(upstream.calls[-1].request.body)["max_completion_tokens"] == 50
    for _ in range(6):  # 10 used each: 30 left after these
        post(client, "t", {**CHAT, "max_tokens": 5})
    assert post(client, "t").status_code == 200
    # 30 left, 11 of them for the prompt: the cap is lowered to 19.
    assert json.loads(upstream.calls[-1].request.body)["max_completion_tokens"] == 19
    # The client's own max_tokens is never lowered: it fits, or the request is refused.
    assert post(client, "t", {**CHAT, "max_tokens": 100}).status_code == 429


def test_max_concurrent_counts_requests_in_flight() -> None:
    app = create_app(
        {
            "auth": {"keys": [{"name": "c", "sha256": hash_key("c"), "max_concurrent": 2}]},
            "providers": [{"name": "up", "base_url": URL, "models": ["m"]}],
        }
    )
    budgets = app.extensions["proxyapi.budgets"]
    key = app.extensions["proxyapi.config"].auth.keys[0]
    from proxyapi.budgets import BudgetExceeded
    from proxyapi.providers.base import Operation

    first, _ = budgets.reserve(key, Operation.CHAT, dict(CHAT))
    second, _ = budgets.reserve(key, Operation.CHAT, dict(CHAT))
    with pytest.raises(BudgetExceeded) as info:
        budgets.reserve(key, Operation.CHAT, dict(CHAT))
    assert info.value.error_code == "concurrency_limit_exceeded"
    first.settle()
    first.settle()  # once only
    third, _ = budgets.reserve(key, Operation.CHAT, dict(CHAT))
    assert third is not None and second is not None


def test_health_is_never_limited() -> None:
    client = make([{"name": "a"}], **{"global": "1/minute"})
    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize(
    ("allowed", "model", "upstream_models", "ok"),
    [
        ((), "anything", [], True),
        (("gpt-4o*",), "gpt-4o-mini", ["gpt-4o-mini"], True),
        (("gpt-4o*",), "openai/gpt-4o-mini", ["gpt-4o-mini"], True),
        (("gpt-4o*",), "o1", ["o1"], False),
        (("gpt-4o*",), "fake/gpt-4o-mini", ["fake/gpt-4o-mini"], False),  # a glob provider
        (("fast",), "fast", ["llama3", "gpt-4o"], True),
        (("gpt-4o*", "llama*"), "fast", ["llama3", "gpt-4o"], True),
        (("gpt-4o*",), "fast", ["llama3", "gpt-4o"], False),
    ],
)
def test_model_allowlist_rules(
    allowed: tuple[str, ...], model: str, upstream_models: list[str], ok: bool
) -> None:
    assert may_use(KeyConfig("k", "0" * 64, models=allowed), model, upstream_models) is ok


def test_disallowed_model_is_403_and_hidden_from_models(upstream: Any) -> None:
    client = make([{"name": "k", "models": ["m", "fast"]}])
    resp = post(client, "k", {**CHAT, "model": "gpt-4o-mini"})
    assert resp.status_code == 403
    assert resp.json["error"]["type"] == "permission_error"
    assert resp.json["error"]["code"] == "model_not_allowed"
    assert post(client, "k", {**CHAT, "model": "up/m"}).status_code == 200
    listed = client.get("/v1/models", headers={"Authorization": "Bearer k"}).json["data"]
    assert sorted(m["id"] for m in listed) == ["fast", "m"]
    assert (
        client.get("/v1/models/gpt-4o-mini", headers={"Authorization": "Bearer k"}).status_code
        == 403
    )


def test_provider_cap_moves_traffic_to_the_next_provider() -> None:
    client = create_app(
        {
            "auth": {"keys": [{"name": "k", "sha256": hash_key("k")}]},
            "providers": [
                {
                    "name": "a",
                    "base_url": "http://a.test/v1",
                    "models": ["m"],
                    "rate_limit": "2/minute",
                },
                {
                    "name": "b",
                    "base_url": "http://b.test/v1",
                    "models": ["m"],
                    "priority": 2,
                    "rate_limit": ["1/minute"],
                },
            ],
        }
    ).test_client()
    with responses.RequestsMock() as mock:
        mock.post("http://a.test/v1/chat/completions", json=answer())
        mock.post("http://b.test/v1/chat/completions", json=answer())
        served = [post(client, "k").headers.get("X-ProxyAPI-Provider") for _ in range(3)]
        assert served == ["a", "a", "b"]
        resp = post(client, "k")
    assert resp.status_code == 429
    assert resp.json["error"]["code"] == "upstream_rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60


@pytest.mark.parametrize(
    ("workers", "extra", "problem"),
    [
        (1, {"rate_limits": {"per_key": "1/second"}}, False),
        (2, {"rate_limits": {"per_key": "1/second"}}, True),
        (2, {"rate_limits": {"per_key": "1/second", "allow_per_process": True}}, False),
        (2, {"rate_limits": {"per_key": "1/second"}, "redis": {"url": "redis://h:6379/0"}}, False),
        (4, {}, False),  # no limits at all: nothing to get wrong
    ],
)
def test_per_process_storage_with_several_workers_is_refused(
    workers: int, extra: dict[str, Any], problem: bool
) -> None:
    message = per_process_problem(parse_config(extra, environ={}), workers)
    assert (message is not None) is problem
    if message:
        assert f"{workers} workers" in message and "REDIS_URL" in message


def test_limit_strings_are_validated_naming_the_key() -> None:
    from proxyapi.config import ConfigError

    with pytest.raises(ConfigError, match=r"auth.keys\[0\].limits has '10/fortnight'"):
        parse_config(
            {"auth": {"keys": [{"name": "a", "sha256": "0" * 64, "limits": ["10/fortnight"]}]}},
            environ={},
        )
    with pytest.raises(ConfigError, match=r"rate_limits\.strategy must be one of"):
        parse_config({"rate_limits": {"strategy": "token-bucket"}}, environ={})
    with pytest.raises(ConfigError, match=r"rate_limits\.on_storage_error must be one of"):
        parse_config({"rate_limits": {"on_storage_error": "ignore"}}, environ={})
    with pytest.raises(ConfigError, match=r"rate_limits\.routes keys must be paths"):
        parse_config({"rate_limits": {"routes": {"embeddings": "1/second"}}}, environ={})


# A chat stream whose last chunk reports its usage (12 tokens).
STREAM_WITH_USAGE = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}}\n\n'
    b"data: [DONE]\n\n"
)


def test_stream_usage_is_asked_for_and_kept_from_a_client_that_did_not(upstream: Any) -> None:
    upstream.replace(
        responses.POST,
        f"{URL}/chat/completions",
        body=STREAM_WITH_USAGE,
        content_type="text/event-stream",
    )
    client = make([{"name": "t", "token_limits": ["60/minute"]}])
    streamed = post(client, "t", {**CHAT, "stream": True})
    body = b"".join(streamed.response)
    streamed.close()  # as the WSGI server does once the body is sent: the tokens are settled
    assert b'"usage"' not in body and body.endswith(b"data: [DONE]\n\n: cost_usd=unpriced\n\n")
    sent = json.loads(upstream.calls[-1].request.body)
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_completion_tokens"] == 49  # what the budget had left after the prompt
    upstream.replace(responses.POST, f"{URL}/chat/completions", json=answer())
    resp = post(client, "t", {**CHAT, "max_tokens": 10})
    assert resp.headers["X-RateLimit-Remaining-Tokens"] == "27"  # 60 - 12 used - 21 reserved


def test_a_stream_without_usage_is_charged_from_what_was_relayed(upstream: Any) -> None:
    events = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"x" * 400 + b'"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    upstream.replace(
        responses.POST, f"{URL}/chat/completions", body=events, content_type="text/event-stream"
    )
    client = make([{"name": "t", "token_limits": ["1000/minute"]}])
    streamed = post(client, "t", {**CHAT, "stream": True})
    b"".join(streamed.response)
    streamed.close()
    upstream.replace(responses.POST, f"{URL}/chat/completions", json=answer())
    resp = post(client, "t", {**CHAT, "max_tokens": 10})
    # 11 (prompt estimate) + 100 (400 characters relayed) charged, never 0.
    assert resp.headers["X-RateLimit-Remaining-Tokens"] == str(1000 - 111 - 21)


def models_from(client: FlaskClient, key: str, address: str) -> int:
    resp = client.get(
        "/v1/models",
        headers={"Authorization": f"Bearer {key}"},
        environ_base={"REMOTE_ADDR": address},
    )
    return int(resp.status_code)


def test_failed_authentications_lock_out_their_address_only() -> None:
    client = make([{"name": "alice"}], failed_auth="3/minute")
    assert [models_from(client, "guess", "10.0.0.1") for _ in range(3)] == [401, 401, 401]
    locked = client.get(
        "/v1/models",
        headers={"Authorization": "Bearer guess"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert locked.status_code == 429
    assert locked.json["error"]["code"] == "too_many_failed_authentications"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    # The address is refused whatever key it sends now (else guessing could go on: a right
    # guess would still answer 200); another address, and valid traffic, are untouched.
    assert models_from(client, "alice", "10.0.0.1") == 429
    assert models_from(client, "alice", "10.0.0.2") == 200
    assert models_from(client, "guess", "10.0.0.2") == 401


def test_valid_keys_never_count_against_the_failed_authentication_limit() -> None:
    client = make([{"name": "alice"}], failed_auth="2/minute")
    assert {models_from(client, "alice", "10.0.0.3") for _ in range(10)} == {200}
    missing = client.get("/v1/models", environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert missing.status_code == 401  # no key at all is a client bug, not a guess
    assert models_from(client, "guess", "10.0.0.3") == 401


def test_failed_authentication_limit_can_be_off() -> None:
    client = make([{"name": "alice"}], failed_auth="off")
    assert {models_from(client, "guess", "10.0.0.4") for _ in range(30)} == {401}


def test_a_finished_stream_is_settled_before_its_last_event_is_sent(upstream: Any) -> None:
    """A client that sends its next request as soon as it reads [DONE] (on another connection,
    while the first response has not closed yet) finds the stream's tokens settled."""
    upstream.replace(
        responses.POST,
        f"{URL}/chat/completions",
        body=STREAM_WITH_USAGE,
        content_type="text/event-stream",
    )
    client = make([{"name": "t", "token_limits": ["60/minute"]}])
    streamed = post(client, "t", {**CHAT, "stream": True})
    sent = b""
    for part in streamed.response:
        sent += part
        if b"[DONE]" in sent:
            break  # the response is not closed
    upstream.replace(responses.POST, f"{URL}/chat/completions", json=answer())
    resp = post(client, "t", {**CHAT, "max_tokens": 10})
    assert resp.headers["X-RateLimit-Remaining-Tokens"] == "27"  # 60 - 12 used - 21 reserved
    streamed.close()  # settles nothing twice
    assert post(client, "t", {**CHAT, "max_tokens": 10}).headers[
        "X-RateLimit-Remaining-Tokens"
    ] == str(60 - 12 - 10 - 21)
