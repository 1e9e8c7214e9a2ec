"""The mock provider (``type: mock``): its config, its answers, and its faults through the app."""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
import time
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.config import ConfigError, parse_config
from proxyapi.config.load import config_from_env
from proxyapi.config.model import MockConfig
from proxyapi.mock import answers
from proxyapi.mock.answers import plan
from proxyapi.upstream.mock_transport import _Response, _Schedule
from tests.schemas import assert_valid

KEY = "k-mock-test"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there, mock"}]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city"],
        },
    },
}


def mock_provider(name: str = "mock", priority: int = 1, **mock: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "mock",
        "priority": priority,
        "retry": {"max_attempts": 2, "base_delay": 0, "max_delay": 0},
        "mock": mock,
    }


def make_client(*providers: dict[str, Any], **extra: Any) -> FlaskClient:
    config = {
        "auth": {"keys": [{"name": "t", "sha256": hash_key(KEY)}]},
        "providers": list(providers) or [mock_provider()],
        "cache": {"responses": "off"},
        **extra,
    }
    return create_app(config).test_client()


def answer(body: dict[str, Any], **config: Any) -> answers.Plan:
    return plan(
        "POST", "/chat/completions", json.dumps(body).encode(), MockConfig(**config), ["*"], 1
    )


def events(delivery: answers.Plan) -> list[dict[str, Any]]:
    out = []
    for part in delivery.parts:
        assert part.startswith(b"data: ") and part.endswith(b"\n\n")
        data = part[6:-2]
        if data != b"[DONE]":
            out.append(json.loads(data))
    assert delivery.parts[-1] == b"data: [DONE]\n\n"
    return out


# ---------------------------------------------------------------- config


def test_a_mock_provider_needs_no_url_key_or_models() -> None:
    cfg = parse_config({"providers": [{"name": "demo", "type": "mock"}]}, environ={})
    (p,) = cfg.providers
    assert (p.type, p.base_url, p.models, p.api_key) == ("mock", "mock://demo", ("*",), None)
    assert p.mock == MockConfig()
    assert not p.responses_api  # Responses requests are answered through chat


@pytest.mark.parametrize(
    ("mock", "message"),
    [
        ({"latency": -1}, "providers[0] (m).mock.latency must be a number, 0 or more, got -1"),
        ({"latency": 3600}, "mock.latency must be at most 600 seconds"),
        ({"failures": [{"rate": 0.5}]}, "mock.failures[0] must name exactly one of"),
        ({"failures": [{"rate": 2, "status": 503}]}, "failures[0].rate must be a number from 0"),
        ({"failures": [{"rate": 1, "status": 200}]}, "failures[0].status must be an HTTP error"),
        ({"failures": [{"rate": 1, "reset": True, "retry_after": 1}]}, "retry_after applies to"),
        ({"failures": [{"rate": 1, "status": 503, "stall": 1}]}, "exactly one of"),
        ({"failures": [{"rate": 1, "cut_after": 1, "after": 2}]}, "after applies to a stall"),
        ({"failures": "often"}, "mock.failures must be a list, got 'often'"),
        ({"embedding_dimensions": 100000}, "embedding_dimensions must be at most 4096"),
        ({"speed": 1}, "unknown config key 'providers[0] (m).mock.speed'"),
    ],
)
def test_bad_mock_settings_are_refused_naming_the_key(mock: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"providers": [{"name": "m", "type": "mock", "mock": mock}]}, environ={})


def test_mock_settings_only_apply_to_mock_providers_and_it_takes_no_url() -> None:
    with pytest.raises(ConfigError, match=r"mock applies to type mock only \(this is openai\)"):
        parse_config(
            {"providers": [{"name": "o", "base_url": "http://x", "models": ["m"], "mock": {}}]},
            environ={},
        )
    with pytest.raises(ConfigError, match="base_url does not apply to type mock"):
        parse_config(
            {"providers": [{"name": "m", "type": "mock", "base_url": "http://x"}]}, environ={}
        )


def test_proxyapi_mock_in_the_environment_adds_a_mock_provider() -> None:
    cfg = config_from_env(
        {"PROXYAPI_KEYS": "demo", "PROXYAPI_MOCK": "1", "PROXYAPI_MOCK_LATENCY": "0.25"}
    )
    (p,) = cfg.providers
    assert (p.name, p.type, p.mock.latency) == ("mock", "mock", 0.25)
    assert config_from_env({"PROXYAPI_KEYS": "demo", "PROXYAPI_MOCK": "0"}).providers == ()
    with pytest.raises(ConfigError, match="PROXYAPI_MOCK must be 1 or true"):
        config_from_env({"PROXYAPI_MOCK": "yes"})
    with pytest.raises(ConfigError, match="PROXYAPI_MOCK_TOKENS_PER_SECOND must be a number"):
        config_from_env({"PROXYAPI_MOCK": "1", "PROXYAPI_MOCK_TOKENS_PER_SECOND": "fast"})


# ---------------------------------------------------------------- answers


def test_chat_answers_are_openai_shaped_deterministic_and_count_usage() -> None:
    first, again = answer(CHAT), answer(CHAT)
    assert first == again
    body = json.loads(first.parts[0])
    assert_valid("CreateChatCompletionResponse", body)
    text = body["choices"][0]["message"]["content"]
    assert text == "This is a mock answer. You said: Hello there, mock"
    assert body["usage"]["completion_tokens"] == len(text.split())
    assert body["usage"]["total_tokens"] == sum(
        body["usage"][k] for k in ("prompt_tokens", "completion_tokens")
    )
    other = json.loads(answer({**CHAT, "messages": [{"role": "user", "content": "x"}]}).parts[0])
    assert other["id"] != body["id"]


def test_a_streamed_chat_answer_is_the_same_text_in_chunks_with_usage_when_asked() -> None:
    whole = json.loads(answer(CHAT).parts[0])
    chunks = events(answer({**CHAT, "stream": True, "stream_options": {"include_usage": True}}))
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert "usage" not in events(answer({**CHAT, "stream": True}))[-1]


def test_offered_tools_are_called_with_arguments_that_fit_their_schema() -> None:
    body = json.loads(answer({**CHAT, "tools": [WEATHER]}).parts[0])
    assert_valid("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[arg-type]
    # Streamed: the same call, its arguments in a later chunk.
    chunks = events(answer({**CHAT, "tools": [WEATHER], "stream": True}))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    streamed = "".join(
        d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if "tool_calls" in d
    )
    assert json.loads(streamed) == arguments
    # After the tool's result, or with tool_choice none: text.
    result = {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    after = {**CHAT, "tools": [WEATHER], "messages": [*CHAT["messages"], result]}
    assert json.loads(answer(after).parts[0])["choices"][0]["finish_reason"] == "stop"
    none = json.loads(answer({**CHAT, "tools": [WEATHER], "tool_choice": "none"}).parts[0])
    assert none["choices"][0]["message"]["content"]


def test_structured_output_max_tokens_and_n() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    body = json.loads(answer({**CHAT, "response_format": fmt}).parts[0])
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), schema)
    cut = json.loads(answer({**CHAT, "max_tokens": 3, "n": 2}).parts[0])
    assert [c["message"]["content"] for c in cut["choices"]] == ["This is a"] * 2
    assert {c["finish_reason"] for c in cut["choices"]} == {"length"}
    assert cut["usage"]["completion_tokens"] == 6


def test_a_hostile_tool_schema_gets_a_bounded_answer_quickly() -> None:
    # Ten references wide and ten deep: 10^10 values if expanded naively.
    defs = {
        f"L{i}": {
            "type": "object",
            "properties": {f"p{j}": {"$ref": f"#/$defs/L{i + 1}"} for j in range(10)},
            "required": [f"p{j}" for j in range(10)],
        }
        for i in range(10)
    }
    defs["L10"] = {"type": "string", "minLength": 10**9}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/$defs/L0"}}}
    tool["function"]["parameters"]["$defs"] = defs  # type: ignore[index]
    started = time.monotonic()
    delivery = answer({**CHAT, "tools": [tool]})
    assert time.monotonic() - started < 2
    call = json.loads(delivery.parts[0])["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["arguments"] == "{}"
    weird = {
        "type": "function",
        "function": {"name": "g", "parameters": {"type": "integer", "minimum": "a lot"}},
    }
    assert json.loads(answer({**CHAT, "tools": [weird]}).parts[0])["choices"][0]["message"]


def test_embeddings_are_unit_vectors_as_floats_or_base64() -> None:
    def embed(**body: Any) -> dict[str, Any]:
        delivery = plan("POST", "/embeddings", json.dumps(body).encode(), MockConfig(), ["*"], 1)
        data: dict[str, Any] = json.loads(delivery.parts[0])
        return data

    floats = embed(model="e", input=["a", "b"])
    assert_valid("CreateEmbeddingResponse", floats)
    a, b = (d["embedding"] for d in floats["data"])
    assert len(a) == 8 and a != b and abs(sum(v * v for v in a) - 1) < 1e-4
    assert embed(model="e", input="a")["data"][0]["embedding"] == a
    packed = embed(model="e", input=["a"], encoding_format="base64", dimensions=4)
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert len(decoded) == 4


def test_models_are_the_provider_s_names_or_mock_ones() -> None:
    def models(names: list[str]) -> list[str]:
        delivery = plan("GET", "/models", None, MockConfig(), names, 1)
        return [m["id"] for m in json.loads(delivery.parts[0])["data"]]

    assert models(["*"]) == ["mock-chat", "mock-embedding"]
    assert models(["demo-large", "demo-*"]) == ["demo-large"]


def test_directives_steer_one_request() -> None:
    def steered(text: str) -> answers.Plan:
        return answer({**CHAT, "messages": [{"role": "user", "content": text}]})

    failed = steered("hi [mock:status=429,retry_after=2]")
    assert (failed.status, failed.headers["Retry-After"]) == (429, "2")
    assert json.loads(failed.parts[0])["error"]["type"] == "rate_limit_error"
    assert steered("[mock:reset]").reset
    stalled = steered("[mock:stall=3,after=2]")
    assert (stalled.stall, stalled.stall_after) == (3.0, 2)
    assert steered("[mock:cut_after=4]").cut_after == 4
    assert steered("[mock:latency=0.5]").latency == 0.5
    words = json.loads(steered("[mock:words=50]").parts[0])["choices"][0]["message"]["content"]
    assert len(words.split()) == 50
    for bad in ("[mock:status=200]", "[mock:stall=-1]", "[mock:words=20001]", "[mock:latency=x]"):
        refused = steered(bad)
        assert refused.status == 400, bad
        assert json.loads(refused.parts[0])["error"]["code"] == "mock_directive"


def test_the_pace_delays_whole_answers_and_spaces_stream_events() -> None:
    whole = answer(CHAT, latency=0.1, tokens_per_second=10)
    tokens = json.loads(whole.parts[0])["usage"]["completion_tokens"]
    assert whole.latency == pytest.approx(0.1 + tokens / 10)
    streamed = answer({**CHAT, "stream": True}, latency=0.1, tokens_per_second=10)
    assert (streamed.latency, streamed.interval) == (0.1, 0.1)


# ---------------------------------------------------------------- through the app


def test_the_gateway_serves_chat_stream_embeddings_and_models_from_a_mock() -> None:
    client = make_client()
    r = client.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert r.status_code == 200 and r.headers["X-ProxyAPI-Provider"] == "mock"
    assert r.get_json()["choices"][0]["message"]["content"].startswith("This is a mock answer.")
    s = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=HEADERS)
    assert s.status_code == 200 and b"data: [DONE]\n\n" in s.data
    e = client.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers=HEADERS)
    assert len(e.get_json()["data"][0]["embedding"]) == 8
    m = client.get("/v1/models", headers=HEADERS)
    assert {"mock-chat", "mock-embedding"} <= {x["id"] for x in m.get_json()["data"]}
    msg = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    a = client.post("/v1/messages", json=msg, headers=HEADERS)
    assert a.status_code == 200 and a.get_json()["type"] == "message"
    resp = client.post("/v1/responses", json={"model": "m", "input": "hi"}, headers=HEADERS)
    assert resp.status_code == 200 and resp.get_json()["output"][0]["type"] == "message"


def test_a_failing_mock_is_retried_then_fallen_back_from() -> None:
    client = make_client(
        mock_provider("flaky", 1, failures=[{"rate": 1.0, "status": 503}]),
        mock_provider("steady", 2),
    )
    r = client.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert r.status_code == 200
    assert r.headers["X-ProxyAPI-Provider"] == "steady"
    assert r.headers["X-ProxyAPI-Attempts"] == "3"  # two on flaky (one retry), one on steady


def test_a_directed_fault_reaches_the_client_as_the_gateway_s_error() -> None:
    client = make_client()
    body = {**CHAT, "messages": [{"role": "user", "content": "[mock:status=503]"}]}
    r = client.post("/v1/chat/completions", json=body, headers=HEADERS)
    assert r.status_code == 502 and r.headers["X-ProxyAPI-Attempts"] == "2"
    assert r.get_json()["error"]["type"] == "upstream_error"
    bad = {**CHAT, "messages": [{"role": "user", "content": "[mock:status=9]"}]}
    refused = client.post("/v1/chat/completions", json=bad, headers=HEADERS)
    assert refused.status_code == 400
    assert "takes an HTTP error status" in refused.get_json()["error"]["message"]
    reset = {**CHAT, "messages": [{"role": "user", "content": "[mock:reset]"}]}
    dropped = client.post("/v1/chat/completions", json=reset, headers=HEADERS)
    assert dropped.status_code == 502 and dropped.headers["X-ProxyAPI-Attempts"] == "2"


def test_a_stall_past_the_read_timeout_times_out_like_a_silent_host() -> None:
    provider = {**mock_provider(), "timeout": {"connect": 1, "read": 0.2}}
    client = make_client(provider)
    body = {**CHAT, "messages": [{"role": "user", "content": "[mock:stall=5]"}]}
    started = time.monotonic()
    r = client.post("/v1/chat/completions", json=body, headers=HEADERS)
    assert time.monotonic() - started < 2
    assert r.status_code == 504 and r.get_json()["error"]["type"] == "timeout"


def test_a_stream_cut_or_stalled_midway_ends_with_an_error_event() -> None:
    provider = {**mock_provider(), "timeout": {"connect": 1, "read": 0.3}}
    client = make_client(provider)
    for directive in ("[mock:cut_after=3]", "[mock:stall=5,after=3]"):
        body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": directive}]}
        started = time.monotonic()
        r = client.post("/v1/chat/completions", json=body, headers=HEADERS)
        assert time.monotonic() - started < 3, directive
        assert r.status_code == 200
        text = r.get_data(as_text=True)
        assert text.count('"content"') >= 2, directive  # the first events arrived
        assert '"error"' in text and "data: [DONE]" not in text.split('"error"')[0], directive


def test_shutting_a_stalled_answer_down_ends_it_at_once() -> None:
    delivery = answer({**CHAT, "stream": True}, latency=0)
    schedule = _Schedule(replace(delivery, stall=30, stall_after=1), read_timeout=60)
    raw = _Response(schedule, headers={}, status=200, preload_content=False)
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.extend(iter(lambda: raw.read1(65536), b"")))
    reader.start()
    time.sleep(0.3)
    assert len(read) == 1 and reader.is_alive()  # the first event, then the stall
    started = time.monotonic()
    raw.shutdown()
    reader.join(timeout=2)
    assert not reader.is_alive() and time.monotonic() - started < 1


def test_a_mock_costs_nothing_unless_the_config_prices_it() -> None:
    free = make_client()
    r = free.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert r.headers["X-ProxyAPI-Cost-USD"] == "0.000000"
    priced = make_client(
        pricing={
            "prices": [
                {"provider": "mock", "model": "*", "input_per_mtok": 1e4 / 10, "output_per_mtok": 1}
            ]
        }
    )
    r = priced.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert float(r.headers["X-ProxyAPI-Cost-USD"]) > 0


@pytest.mark.parametrize(
    "body",
    [
        {**CHAT, "n": 16, "messages": [{"role": "user", "content": "[mock:words=2000]"}]},
        {"model": "e", "input": ["x"] * 2049},
        {"model": "e", "input": ["x"] * 300, "dimensions": 4096},
    ],
)
def test_requests_for_huge_answers_get_a_400_not_a_huge_answer(body: dict[str, Any]) -> None:
    path = "/embeddings" if "input" in body else "/chat/completions"
    delivery = plan("POST", path, json.dumps(body).encode(), MockConfig(), ["*"], 1)
    assert delivery.status == 400 and len(delivery.parts[0]) < 500
