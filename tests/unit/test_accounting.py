"""What each answer costs and what the usage log keeps, from providers' own usage payloads.

The payloads are the ones the providers document (OpenAI's cached and reasoning tokens,
Anthropic's cache writes split by lifetime, Azure's prompt caching); the dollars are worked out
by hand from the published prices per million tokens.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.config import ConfigError, parse_config

OPENAI = "https://api.openai.com/v1"
ANTHROPIC = "https://api.anthropic.com"
AZURE = "https://example-resource.openai.azure.com"
LOCAL = "http://vllm.test/v1"
KEYS = [
    {"name": "alice", "sha256": hash_key("alice")},
    {"name": "bob", "sha256": hash_key("bob")},
    {"name": "root", "sha256": hash_key("root"), "admin": True},
]
PROVIDERS = [
    {"name": "openai", "base_url": OPENAI, "models": ["gpt-4o", "text-embedding-3-small"]},
    {"name": "anthropic", "type": "anthropic", "base_url": ANTHROPIC, "models": ["claude-*"]},
    {"name": "azure", "type": "azure", "base_url": AZURE, "models": ["gpt-4o-eu"]},
    {"name": "local", "base_url": LOCAL, "models": ["llama-3"]},
]
# OpenAI's documented usage with prompt caching and reasoning (gpt-4o-2024-08-06: $2.50 in,
# $1.25 cached in, $10 out per million): 86 x 2.50 + 1920 x 1.25 + 300 x 10 = 5615 micro-USD.
OPENAI_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
OPENAI_COST = "0.005615"
OPENAI_UNITS = {
    "input_tokens": 2006,
    "cache_read_tokens": 1920,
    "cache_write_tokens": 0,
    "cache_write_1h_tokens": 0,
    "output_tokens": 300,
    "reasoning_tokens": 256,
}
# Anthropic's documented usage with 5-minute and 1-hour cache writes (Claude Sonnet 4.5: $3 in,
# $0.30 read, $3.75 5m write, $6 1h write, $15 out): cache tokens come outside input_tokens.
# 2048 x 3 + 1800 x 0.30 + 148 x 3.75 + 100 x 6 + 503 x 15 = 15384 micro-USD.
ANTHROPIC_USAGE = {
    "input_tokens": 2048,
    "cache_read_input_tokens": 1800,
    "cache_creation_input_tokens": 248,
    "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
    "output_tokens": 503,
}
# Azure's documented prompt-caching answer (gpt-4o-2024-11-20, OpenAI's prices):
# 158 x 2.50 + 1408 x 1.25 + 1518 x 10 = 17335 micro-USD.
AZURE_USAGE = {
    "completion_tokens": 1518,
    "prompt_tokens": 1566,
    "total_tokens": 3084,
    "prompt_tokens_details": {"cached_tokens": 1408},
}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def chat_answer(usage: dict[str, Any], model: str = "gpt-4o-2024-08-06") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there"},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events
    )


def chunk(delta: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": None}],
        **({"usage": usage} if usage else {}),
    }


STREAM = sse(
    chunk({"role": "assistant", "content": "Hello"}),
    chunk({"content": " there"}),
    chunk({}, OPENAI_USAGE),
    "[DONE]",
)


def make(**config: Any) -> FlaskClient:
    return create_app(
        {
            "auth": {"keys": KEYS},
            "providers": [{**p, "retry": {"max_attempts": 1}} for p in PROVIDERS],
            "cache": {"responses": "off"},
            **config,
        }
    ).test_client()


def post(
    client: FlaskClient,
    body: dict[str, Any],
    key: str = "alice",
    path: str = "/v1/chat/completions",
) -> tuple[Any, bytes]:
    resp = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    data = b"".join(resp.response) if body.get("stream") else resp.get_data()
    resp.close()  # as the WSGI server does once the body is sent: the request is settled
    return resp, data


def usage(client: FlaskClient, as_key: str = "root", **args: str) -> Any:
    headers = {"Authorization": f"Bearer {as_key}"}
    return client.get("/v1/usage", query_string=args, headers=headers)


def units(row: dict[str, Any]) -> dict[str, int]:
    return {name: row[name] for name in OPENAI_UNITS}


@pytest.fixture
def upstream() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- each provider's payload -> units and dollars -----------------------------------------


def test_openai_cached_and_reasoning_tokens(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    client = make()
    resp, _ = post(client, CHAT)
    assert resp.headers["X-ProxyAPI-Cost-USD"] == OPENAI_COST
    (row,) = usage(client).json["data"]
    assert units(row) == OPENAI_UNITS
    assert row["key"] == "alice" and row["route"] == "chat" and row["provider"] == "openai"
    assert row["model"] == "gpt-4o-2024-08-06"  # the model as the provider billed it
    assert row["cost_usd"] == pytest.approx(0.005615) and row["unpriced"] is False
    assert row["cache_hit"] is False and row["requests"] == 1


def test_anthropic_cache_writes_by_lifetime_and_reads(upstream: Any) -> None:
    upstream.post(
        f"{ANTHROPIC}/v1/messages",
        json={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello there"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": ANTHROPIC_USAGE,
        },
    )
    client = make()
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp, _ = post(client, body, path="/v1/messages")
    assert resp.status_code == 200 and resp.headers["X-ProxyAPI-Cost-USD"] == "0.015384"
    (row,) = usage(client).json["data"]
    assert units(row) == {
        "input_tokens": 2048 + 1800 + 248,  # every input token, cached ones included, once
        "cache_read_tokens": 1800,
        "cache_write_tokens": 148,
        "cache_write_1h_tokens": 100,
        "output_tokens": 503,
        "reasoning_tokens": 0,
    }
    assert row["route"] == "messages" and row["model"] == "claude-sonnet-4-5-20250929"
    assert row["cost_usd"] == pytest.approx(0.015384)


def test_azure_prompt_caching(upstream: Any) -> None:
    upstream.post(
        f"{AZURE}/openai/deployments/gpt-4o-eu/chat/completions",
        json=chat_answer(AZURE_USAGE, model="gpt-4o-2024-11-20"),
    )
    client = make()
    resp, _ = post(client, {**CHAT, "model": "gpt-4o-eu"})
    assert resp.headers["X-ProxyAPI-Cost-USD"] == "0.017335"
    (row,) = usage(client).json["data"]
    assert row["provider"] == "azure" and row["model"] == "gpt-4o-2024-11-20"
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (
        1566,
        1408,
        1518,
    )


def test_responses_api_usage(upstream: Any) -> None:
    upstream.post(
        f"{OPENAI}/responses",
        json={
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "model": "gpt-4o-2024-08-06",
            "output": [],
            "usage": {
                "input_tokens": 2006,
                "input_tokens_details": {"cached_tokens": 1920},
                "output_tokens": 300,
                "output_tokens_details": {"reasoning_tokens": 256},
                "total_tokens": 2306,
            },
        },
    )
    client = make()
    resp, _ = post(client, {"model": "gpt-4o", "input": "hi"}, path="/v1/responses")
    assert resp.status_code == 200 and resp.headers["X-ProxyAPI-Cost-USD"] == OPENAI_COST
    (row,) = usage(client).json["data"]
    assert units(row) == OPENAI_UNITS and row["route"] == "responses"


def test_embeddings_are_priced_as_input(upstream: Any) -> None:
    upstream.post(
        f"{OPENAI}/embeddings",
        json={
            "object": "list",
            "data": [],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 500_000, "total_tokens": 500_000},
        },
    )
    client = make()
    resp, _ = post(client, {"model": "text-embedding-3-small", "input": "x"}, path="/v1/embeddings")
    assert resp.headers["X-ProxyAPI-Cost-USD"] == "0.010000"  # $0.02 per million
    (row,) = usage(client).json["data"]
    assert row["route"] == "embeddings" and row["input_tokens"] == 500_000


# --- streams, cache hits, overrides, unknown models ----------------------------------------


def test_a_stream_costs_what_the_same_answer_costs(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    client = make()
    plain, _ = post(client, CHAT)
    upstream.replace(
        responses.POST,
        f"{OPENAI}/chat/completions",
        body=STREAM,
        content_type="text/event-stream",
    )
    streamed, body = post(client, {**CHAT, "stream": True})
    assert "X-ProxyAPI-Cost-USD" not in streamed.headers  # sent before the stream's usage
    # The cost ends the stream, as an SSE comment every client skips, after its last event.
    assert body.endswith(b"data: [DONE]\n\n: cost_usd=" + OPENAI_COST.encode() + b"\n\n")
    assert plain.headers["X-ProxyAPI-Cost-USD"] == OPENAI_COST
    (row,) = usage(client).json["data"]
    assert row["requests"] == 2 and units(row) == {k: 2 * v for k, v in OPENAI_UNITS.items()}


def test_a_stream_cut_short_is_charged_what_was_relayed(upstream: Any) -> None:
    cut = sse(chunk({"role": "assistant", "content": "Hello"}), chunk({"content": " there"}))
    upstream.post(f"{OPENAI}/chat/completions", body=cut, content_type="text/event-stream")
    client = make()
    _, body = post(client, {**CHAT, "stream": True})
    assert b"Hello" in body and b"cost_usd" not in body  # no proper end: no trailer
    (row,) = usage(client).json["data"]
    assert row["output_tokens"] > 0 and row["input_tokens"] > 0  # never nothing
    assert row["cost_usd"] > 0


def test_a_cache_hit_costs_nothing_upstream(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    client = make(cache={"responses": "deterministic"})
    body = {**CHAT, "temperature": 0}
    first, _ = post(client, body)
    second, _ = post(client, body)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.headers["X-ProxyAPI-Cost-USD"] == "0.000000"
    assert len(upstream.calls) == 1
    answer = usage(client).json
    hit = next(r for r in answer["data"] if r["cache_hit"])
    miss = next(r for r in answer["data"] if not r["cache_hit"])
    assert units(hit) == units(miss) == OPENAI_UNITS  # a hit keeps the units it repeats
    assert hit["cost_usd"] == 0 and miss["cost_usd"] == pytest.approx(0.005615)
    assert answer["totals"]["cost_usd"] == pytest.approx(0.005615)
    assert answer["totals"]["requests"] == 2


def test_a_config_price_beats_the_table(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    price = {
        "provider": "openai",
        "model": "gpt-4o*",
        "input_per_mtok": 1.0,
        "output_per_mtok": 2.0,
        "cache_read_per_mtok": 0.5,
    }
    client = make(pricing={"prices": [price]})
    resp, _ = post(client, CHAT)
    # 86 x 1 + 1920 x 0.5 + 300 x 2 = 1646 micro-USD
    assert resp.headers["X-ProxyAPI-Cost-USD"] == "0.001646"
    (row,) = usage(client).json["data"]
    assert row["cost_usd"] == pytest.approx(0.001646)


def test_an_unknown_model_is_unpriced_never_free(
    upstream: Any, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.post(f"{LOCAL}/chat/completions", json=chat_answer(OPENAI_USAGE, model="llama-3"))
    client = make()
    with caplog.at_level(logging.INFO, logger="proxyapi.access"):
        resp, _ = post(client, {**CHAT, "model": "llama-3"})
    assert resp.headers["X-ProxyAPI-Cost-USD"] == "unpriced"
    assert "cost_usd=unpriced" in caplog.text
    answer = usage(client).json
    (row,) = answer["data"]
    assert row["cost_usd"] is None and row["unpriced"] is True
    assert units(row) == OPENAI_UNITS  # the units are kept: a price added later applies
    assert answer["totals"]["unpriced_requests"] == 1 and answer["totals"]["cost_usd"] == 0


def test_cost_reaches_the_metrics(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    upstream.post(f"{LOCAL}/chat/completions", json=chat_answer(OPENAI_USAGE, model="llama-3"))
    client = make()
    post(client, CHAT)
    post(client, {**CHAT, "model": "llama-3"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'proxyapi_cost_usd_total{key="alice",model="gpt-4o",provider="openai"} 0.005615' in text
    assert 'proxyapi_unpriced_answers_total{key="alice",model="llama-3",provider="local"} 1.0' in (
        text
    )
    assert 'kind="cache_read"' in text and 'kind="reasoning"' in text


# --- GET /v1/usage -------------------------------------------------------------------------


def test_a_key_sees_its_own_usage_and_an_admin_sees_all(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    client = make()
    post(client, CHAT, key="alice")
    post(client, CHAT, key="bob")
    post(client, CHAT, key="bob")
    assert [r["key"] for r in usage(client, "alice").json["data"]] == ["alice"]
    assert usage(client, "bob").json["totals"]["requests"] == 2
    assert [r["key"] for r in usage(client, "root").json["data"]] == ["alice", "bob"]
    assert usage(client, "root", key="bob").json["totals"]["requests"] == 2
    assert usage(client, "alice", key="alice").status_code == 200
    denied = usage(client, "alice", key="bob")
    assert denied.status_code == 403 and denied.json["error"]["code"] == "admin_required"
    assert usage(client, "root", model="gpt-4o-2024-08-06").json["totals"]["requests"] == 3
    assert usage(client, "root", model="gpt-4o").json["data"] == []  # the billed name
    assert usage(client, "root", provider="azure").json["data"] == []
    assert client.get("/v1/usage").status_code == 401


def test_usage_by_hour_and_over_a_range(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    client = make()
    post(client, CHAT)
    hourly = usage(client, group="hour").json
    (row,) = hourly["data"]
    assert hourly["group"] == "hour" and row["start"].endswith(":00:00Z")
    assert usage(client, start="2020-01-01", end="2020-02-01").json["data"] == []
    assert (
        usage(client, start="2026-01-01", end="2999-01-01T00:00:00+02:00").json["totals"][
            "requests"
        ]
        == 1
    )


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ({"group": "week"}, "group"),
        ({"format": "xml"}, "format"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-01-02", "end": "2026-01-01"}, "start"),
        ({"start": "2026-01-01", "end": "2026-03-01", "group": "hour"}, "group"),
        ({"end": "0001-01-01"}, "end"),
        ({"start": "9999-12-31T23:59:59"}, "start"),
        ({"model": "m" * 300}, "model"),
    ],
)
def test_bad_usage_queries_are_400s_naming_the_parameter(args: dict[str, str], param: str) -> None:
    resp = usage(make(), **args)
    assert resp.status_code == 400 and resp.is_json
    assert resp.json["error"]["param"] == param and resp.json["error"]["type"]


def test_csv_keeps_a_hostile_model_name_as_text(upstream: Any) -> None:
    # The billed model name comes from the provider's answer: a spreadsheet must not run it.
    upstream.post(
        f"{LOCAL}/chat/completions", json=chat_answer(OPENAI_USAGE, model='=HYPERLINK("x")')
    )
    client = make()
    post(client, {**CHAT, "model": "llama-3"})
    resp = usage(client, format="csv")
    assert resp.mimetype == "text/csv"
    (row,) = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert row["model"] == '\'=HYPERLINK("x")' and row["key"] == "alice"
    assert row["input_tokens"] == "2006" and row["unpriced"] == "true" and row["cost_usd"] == ""


def test_with_the_log_off_usage_is_a_404_and_answers_still_cost(upstream: Any) -> None:
    upstream.post(f"{OPENAI}/chat/completions", json=chat_answer(OPENAI_USAGE))
    client = make(usage={"enabled": False})
    resp, _ = post(client, CHAT)
    assert resp.headers["X-ProxyAPI-Cost-USD"] == OPENAI_COST
    off = usage(client)
    assert off.status_code == 404 and off.json["error"]["code"] == "usage_log_off"


def test_the_log_keeps_the_name_the_answer_was_priced_by(upstream: Any) -> None:
    # A price for the requested name only: the log names it, so /v1/usage prices it the same.
    upstream.post(f"{LOCAL}/chat/completions", json=chat_answer(OPENAI_USAGE, model="llama-3-8b"))
    price = {"provider": "local", "model": "llama-3", "input_per_mtok": 1, "output_per_mtok": 1}
    client = make(pricing={"prices": [price]})
    resp, _ = post(client, {**CHAT, "model": "llama-3"})
    assert resp.headers["X-ProxyAPI-Cost-USD"] == "0.002306"
    (row,) = usage(client).json["data"]
    assert row["model"] == "llama-3" and row["cost_usd"] == pytest.approx(0.002306)


def test_a_store_that_cannot_be_read_is_a_503(upstream: Any) -> None:
    client = make()
    accounting = client.application.extensions["proxyapi.accounting"]
    accounting.store.path.unlink()
    accounting.store.path.mkdir()  # no longer a database file
    accounting.store.close()
    resp = usage(client)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "usage_log_unavailable"


def test_a_host_that_refuses_stream_options_is_charged_an_estimate(upstream: Any) -> None:
    cut = sse(chunk({"role": "assistant", "content": "Hello there"}), "[DONE]")
    upstream.post(f"{LOCAL}/chat/completions", body=cut, content_type="text/event-stream")
    client = create_app(
        {
            "auth": {"keys": KEYS},
            "providers": [{**PROVIDERS[3], "stream_usage": False}, PROVIDERS[0]],
        }
    ).test_client()
    _, body = post(client, {**CHAT, "model": "llama-3", "stream": True})
    assert b"Hello there" in body
    assert "stream_options" not in json.loads(upstream.calls[0].request.body)
    (row,) = usage(client).json["data"]
    assert row["output_tokens"] > 0 and row["input_tokens"] > 0
    # Every other host is asked for the stream's usage, whatever the client asked.
    upstream.post(f"{OPENAI}/chat/completions", body=STREAM, content_type="text/event-stream")
    _, body = post(client, {**CHAT, "stream": True})
    sent = json.loads(upstream.calls[1].request.body)
    assert sent["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in body  # the client did not ask for it: it is not relayed


def test_stream_usage_is_an_openai_type_setting() -> None:
    with pytest.raises(ConfigError, match=r"stream_usage applies to type openai only"):
        parse_config({"providers": [{**PROVIDERS[1], "stream_usage": False}]})
    with pytest.raises(ConfigError, match=r"stream_usage"):
        parse_config({"providers": [{**PROVIDERS[3], "stream_usage": "no"}]})


def test_an_answer_without_usage_is_charged_an_estimate(upstream: Any) -> None:
    answer = chat_answer(OPENAI_USAGE)
    del answer["usage"]  # some hosts send none
    upstream.post(f"{OPENAI}/chat/completions", json=answer)
    client = make()
    resp, _ = post(client, CHAT)
    (row,) = usage(client).json["data"]
    assert row["input_tokens"] > 0 and row["output_tokens"] == 3  # "Hello there", 11 chars
    assert float(resp.headers["X-ProxyAPI-Cost-USD"]) == pytest.approx(row["cost_usd"], abs=1e-6)


def test_an_anthropic_stream_costs_what_the_same_message_costs(upstream: Any) -> None:
    """message_start carries the input and cache counts, message_delta the output: the stream
    is priced with the cache reads at their price, once, not as full input."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
        },
    }
    events = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 503},
        },
        {"type": "message_stop"},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    upstream.post(f"{ANTHROPIC}/v1/messages", body=body, content_type="text/event-stream")
    client = make()
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    _, streamed = post(client, request, path="/v1/messages")
    # After the last event, as a comment the anthropic SDK skips.
    assert streamed.index(b"event: message_stop") < streamed.index(b": cost_usd=0.015384\n\n")
    assert streamed.endswith(b": cost_usd=0.015384\n\n")
    (row,) = usage(client).json["data"]
    assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (1800, 148)
    assert (row["cache_write_1h_tokens"], row["output_tokens"]) == (100, 503)
    assert row["input_tokens"] == 4096
