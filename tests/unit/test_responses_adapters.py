"""The Responses API plumbing around the translation: a provider's own Responses stream relayed
as it is, the bridge that serves Responses through any adapter's chat call, the adapters'
Responses calls, the Responses dialect, and the relay's hooks for a Responses stream.

The translation itself (``proxyapi.translate.responses_chat``) has its own tests
(``test_responses_chat.py``); these test the wiring. Upstream streams come from the fake
provider's Responses API (:mod:`tests.fakes.responses_api`), which follows OpenAI's event
order. All pure apart from the dialect's store, which needs an app.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from proxyapi import create_app, response_store
from proxyapi.auth import hash_key
from proxyapi.config import ProviderConfig, parse_config
from proxyapi.dialects.responses import RESPONSES_DIALECT
from proxyapi.errors import (
    InvalidRequest,
    ProxyAPIError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamStreamFailed,
    secret_forms,
)
from proxyapi.providers import adapter_for, serving
from proxyapi.providers.anthropic import AnthropicAdapter
from proxyapi.providers.azure import AzureAdapter
from proxyapi.providers.base import (
    Adapter,
    ClientBody,
    Operation,
    StreamTranslator,
    UpstreamReply,
    Usage,
)
from proxyapi.providers.openai import OpenAIEventStream
from proxyapi.providers.responses_over_chat import Chained, ResponsesOverChat
from proxyapi.providers.responses_passthrough import ResponsesPassThrough
from proxyapi.providers.sse import SSEParser, sse_event
from proxyapi.routing import Target
from proxyapi.streaming import Relay, TranslatedStream
from proxyapi.translate.responses_chat import ChatToResponsesStream
from tests.fakes.responses_api import ResponsesAPI, frame
from tests.schemas import assert_valid
from tests.unit.test_streaming import Raw

NOW = 1_741_569_952
KEY = "sk-up-test"
ENV = {"UP_KEY": KEY}
RESPONSE_ID = re.compile(r"resp_[0-9a-f]{48}")
# UTF-8 of 2, 3 and 4 bytes and U+2028 (a line break to naive splitters), for byte-wise cuts.
REPLY_TEXT = "Héllo \u2028 wörld, 🌍 ok"
TRUNCATED = UpstreamError(
    "The stream from provider 'up' ended before it was complete.",
    error_code="upstream_stream_truncated",
)


def provider(**raw: Any) -> ProviderConfig:
    """One provider as the config loader builds it (defaults: an OpenAI-compatible host)."""
    entry = {"name": "up", "base_url": "http://h:1/v1", "models": ["m"], "api_key_env": "UP_KEY"}
    config = parse_config({"providers": [{**entry, **raw}]}, ENV)
    return config.providers[0]


def adapter(**raw: Any) -> Adapter:
    return adapter_for(provider(**raw))


def reply(body: object, status: int = 200) -> UpstreamReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return UpstreamReply(status, {}, raw)


def fake_events(body: dict[str, Any] | None = None, **create: Any) -> list[dict[str, Any]]:
    """A Responses stream's events as OpenAI sends them (the fake provider's model)."""
    api = ResponsesAPI(REPLY_TEXT, "call_1", {"city": "Paris"})
    request = {"model": "gpt-4o", "input": "hi", "stream": True, **(body or {})}
    events = api.create(request, ["gpt-4o"], create.pop("chunks", 3), **create).events
    assert events is not None
    return events


def wire(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(frame(e) for e in events)


def feed(translator: StreamTranslator, raw: bytes, step: int | None = None) -> list[bytes]:
    """Feed a whole stream (in pieces of ``step`` bytes); return the output, close included."""
    pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
    out: list[bytes] = []
    for piece in pieces:
        out.extend(translator.feed(piece))
    out.extend(translator.close())
    return out


def decode(out: Iterable[bytes]) -> list[tuple[str, Any]]:
    """Check that every output item is whole events; return each event's name and data."""
    events: list[tuple[str, Any]] = []
    for item in out:
        parser = SSEParser()
        parsed = parser.feed(item)
        assert parsed and parser.close() == [], item
        for event in parsed:
            try:
                data = json.loads(event.data)
            except ValueError:
                data = event.data
            events.append((event.event, data))
    return events


def passthrough(request: dict[str, Any] | None = None) -> ResponsesPassThrough:
    translator = adapter(responses_api=True).stream_translator(
        Operation.RESPONSES, request or {"model": "gpt-4o", "input": "hi", "stream": True}
    )
    assert isinstance(translator, ResponsesPassThrough)
    return translator


# ------------------------------------------------------------- a provider's own stream


def test_passthrough_relays_every_event_byte_for_byte_and_reports_the_end() -> None:
    body = {"reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]}
    events = fake_events(body)
    translator = passthrough()
    out = feed(translator, wire(events))
    # OpenAI's framing is already the normalized one: nothing changes, encrypted reasoning kept.
    assert b"".join(out) == wire(events)
    assert [data for _, data in decode(out)] == events
    assert b'"encrypted_content"' in b"".join(out)
    final = events[-1]["response"]
    assert translator.complete
    assert translator.final == final
    assert translator.usage == Usage.from_responses(final["usage"])
    assert translator.usage is not None and translator.usage.reasoning_tokens > 0
    assert translator.usage.model == final["model"]
    for _, data in decode(out):
        assert_valid("ResponseStreamEvent", data)


def test_passthrough_normalizes_the_framing_only() -> None:
    created = b'{"type":"response.created","sequence_number":0,"response":{}}'
    delta = b'{"type":"response.output_text.delta","delta":"a","sequence_number":1}'
    raw = (
        b"\xef\xbb\xbf: a comment\r\n"
        + b"data: "
        + created
        + b"\r\n\r\n"
        + b"id: 7\r\nretry: 10\r\nevent: wrong-name\r\ndata:"
        + delta
        + b"\r\n\r\n"
        # One event's JSON over two data lines: joined with "\n", sent on two lines again.
        + b'data: {"type": "response.output_text.delta",\ndata:  "delta": "b"}\n\n'
    )
    out = feed(passthrough(), raw)
    assert out == [
        b"event: response.created\ndata: " + created + b"\n\n",
        b"event: response.output_text.delta\ndata: " + delta + b"\n\n",
        b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta",\n'
        b'data:  "delta": "b"}\n\n',
    ]


def test_the_opening_events_wait_for_the_next_one() -> None:
    events = fake_events()
    translator = passthrough()
    assert [e["type"] for e in events[:3]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert translator.feed(frame(events[0])) == []
    assert translator.feed(frame(events[1])) == []
    assert translator.feed(frame(events[2])) == [frame(e) for e in events[:3]]
    assert translator.feed(frame(events[3])) == [frame(events[3])]


@pytest.mark.parametrize(
    ("code", "kind"),
    [("rate_limit_exceeded", "rate_limit_error"), ("server_error", "upstream_error")],
)
def test_a_failure_before_anything_was_sent_raises_for_the_fallback(code: str, kind: str) -> None:
    events = fake_events(fail_after=2, fail_code=code)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    translator = passthrough()
    with pytest.raises(UpstreamStreamFailed) as info:
        feed(translator, wire(events))
    error = events[-1]["response"]["error"]
    assert info.value.error_code == code
    assert info.value.type == kind
    assert info.value.description == error["message"]
    assert not translator.complete
    with pytest.raises(UpstreamStreamFailed):  # and it stays failed
        translator.close()


def test_an_error_event_before_anything_was_sent_raises() -> None:
    translator = passthrough()
    assert translator.feed(frame(fake_events()[0])) == []
    error = {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 1}
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(frame(error))
    assert (info.value.description, info.value.error_code) == ("boom", "server_error")


@pytest.mark.parametrize(
    "raw",
    [
        b"event: error\ndata: not json\n\n",
        b'event: response.failed\ndata: {"response": "not an object"}\n\n',
        b'data: {"type": "response.failed", "response": {"error": {"code": 5, "message": ""}}}\n\n',
        b'data: {"type": "error", "message": ["x"]}\n\n',
    ],
)
def test_a_malformed_failure_before_anything_was_sent_still_raises(raw: bytes) -> None:
    with pytest.raises(UpstreamStreamFailed) as info:
        passthrough().feed(raw)
    assert info.value.description == "The response failed."
    assert info.value.error_code == "upstream_error"  # the class's: the event named none
    assert info.value.type == "upstream_error"


def test_a_failure_after_something_was_sent_is_relayed_as_it_is() -> None:
    events = fake_events(fail_after=5)
    assert events[-1]["type"] == "response.failed"
    translator = passthrough()
    out = feed(translator, wire(events))
    assert b"".join(out) == wire(events)
    assert translator.complete  # response.failed is an end: the relay adds nothing
    assert translator.final is None
    assert translator.usage is None


def test_an_error_event_after_something_was_sent_is_relayed_and_does_not_end_it() -> None:
    events = fake_events()[:4]
    error = {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 4}
    translator = passthrough()
    out = feed(translator, wire([*events, error]))
    assert b"".join(out) == wire([*events, error])
    assert not translator.complete


def test_events_after_the_end_are_dropped() -> None:
    events = fake_events()
    translator = passthrough()
    feed(translator, wire(events))
    extra = {"type": "response.output_text.delta", "delta": "late", "sequence_number": 99}
    assert translator.feed(frame(extra)) == []
    assert translator.feed(wire(events)) == []


def test_data_that_is_not_json_is_relayed_under_its_event_name() -> None:
    translator = passthrough()
    out = feed(translator, b"data: {not json\n\nevent: custom\ndata: \xff\xfe\n\n")
    assert out == [b"data: {not json\n\n", b"event: custom\ndata: \xff\xfe\n\n"]
    assert not translator.complete
    assert translator.final is None


def test_an_event_without_a_type_goes_by_its_event_line() -> None:
    translator = passthrough()
    # Named as opening by its event line only: held like one.
    assert translator.feed(b'event: response.created\ndata: {"id": 1}\n\n') == []
    out = translator.feed(b'data: {"delta": "x"}\n\n')
    assert out == [
        b'event: response.created\ndata: {"id": 1}\n\n',
        b'data: {"delta": "x"}\n\n',  # neither a type nor an event line: none is made up
    ]
    # A type that is not a string is no type.
    assert translator.feed(b'event: e\ndata: {"type": 5}\n\n') == [
        b'event: e\ndata: {"type": 5}\n\n'
    ]


def test_a_type_no_event_line_can_carry_goes_without_the_line() -> None:
    translator = passthrough()
    for kind in ("response.output_text.delta\nevent: x", "a\rb", "a\u2028b"):
        data = json.dumps({"type": kind, "delta": "a"}).encode()
        assert translator.feed(b"data: " + data + b"\n\n") == [b"data: " + data + b"\n\n"]


def test_a_completed_response_without_usage_completes_without_usage() -> None:
    events = fake_events()
    final = {k: v for k, v in events[-1]["response"].items() if k != "usage"}
    events[-1] = {**events[-1], "response": final}
    translator = passthrough()
    feed(translator, wire(events))
    assert translator.complete
    assert translator.final == final
    assert translator.usage is None


@pytest.mark.parametrize("kind", ["response.completed", "response.incomplete"])
def test_a_terminal_event_without_a_response_completes_without_final(kind: str) -> None:
    translator = passthrough()
    translator.feed(frame(fake_events()[2]))
    assert translator.feed(frame({"type": kind, "sequence_number": 3})) != []
    assert translator.complete
    assert translator.final is None
    assert translator.usage is None


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 3, "output_tokens": 4}, Usage(3, 4, 7)),
        ({"input_tokens": 3, "output_tokens": 4, "total_tokens": 9}, Usage(3, 4, 9)),
        ({"input_tokens": True, "output_tokens": "4", "total_tokens": 2.0}, Usage(0, 0, 0)),
        ({}, Usage(0, 0, 0)),
        (None, None),
        ([1, 2], None),
        ("usage", None),
        (
            {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 60},
                "output_tokens": 30,
                "output_tokens_details": {"reasoning_tokens": 20},
                "total_tokens": 130,
            },
            Usage(100, 30, 130, cache_read_tokens=60, reasoning_tokens=20),
        ),
    ],
)
def test_responses_usage(usage: Any, expected: Usage | None) -> None:
    assert Usage.from_responses(usage) == expected


def test_any_cut_of_the_stream_gives_the_same_events() -> None:
    body = {"reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]}
    events = fake_events(body)
    raw = wire(events)
    assert raw.decode("utf-8").count("\u2028") > 0  # a cut inside multi-byte UTF-8 happens
    whole = passthrough()
    expected = feed(whole, raw)
    for newline in (b"\n", b"\r\n", b"\r"):
        framed = raw.replace(b"\n", newline)
        for step in (1, 2, 7):
            translator = passthrough()
            out = feed(translator, framed, step=step)
            assert b"".join(out) == b"".join(expected), (newline, step)
            # Whole events only: each output item holds one or more of them, never a piece.
            assert [data for _, data in decode(out)] == events
            assert translator.final == whole.final
            assert translator.usage == whole.usage


# ------------------------------------------------------------------ its error event


def test_error_event_continues_the_sequence_with_the_same_response() -> None:
    events = fake_events()[:6]
    translator = passthrough()
    feed(translator, wire(events))
    assert not translator.complete
    name, data = decode([translator.error_event(TRUNCATED)])[0]
    assert name == "response.failed"
    assert data["type"] == "response.failed"
    assert data["sequence_number"] == 6
    started = events[0]["response"]
    assert data["response"] == {
        **started,
        "status": "failed",
        "error": {"code": "server_error", "message": str(TRUNCATED.description)},
    }
    assert_valid("ResponseStreamEvent", data)


def test_error_event_skips_sequence_numbers_that_are_not_integers() -> None:
    translator = passthrough()
    for n, seq in enumerate([0, 1, "7", 9.0, True, None, [8], -3]):
        translator.feed(frame({"type": f"response.x{n}", "sequence_number": seq}))
    data = decode([translator.error_event(TRUNCATED)])[0][1]
    assert data["sequence_number"] == 2


def test_error_event_counts_from_the_highest_number_seen() -> None:
    translator = passthrough()
    for seq in (0, 10, 4):
        translator.feed(frame({"type": "response.x", "sequence_number": seq}))
    first = decode([translator.error_event(TRUNCATED)])[0][1]
    second = decode([translator.error_event(TRUNCATED)])[0][1]
    assert (first["sequence_number"], second["sequence_number"]) == (11, 12)


def test_error_event_without_a_response_yet_makes_one_for_the_request() -> None:
    translator = passthrough({"model": "gpt-4o", "input": "hi", "instructions": "Be brief."})
    data = decode([translator.error_event(TRUNCATED)])[0][1]
    response = data["response"]
    assert data["sequence_number"] == 0
    assert RESPONSE_ID.fullmatch(response["id"])
    assert (response["status"], response["model"], response["instructions"]) == (
        "failed",
        "gpt-4o",
        "Be brief.",
    )
    assert response["error"]["code"] == "server_error"
    assert_valid("ResponseStreamEvent", data)


def test_error_event_ignores_a_response_snapshot_without_an_id() -> None:
    translator = passthrough()
    translator.feed(frame({"type": "response.in_progress", "response": {"id": 5}}))
    response = decode([translator.error_event(TRUNCATED)])[0][1]["response"]
    assert RESPONSE_ID.fullmatch(response["id"])


def test_error_event_scrubs_secrets_and_names_the_code() -> None:
    translator = passthrough()
    feed(translator, wire(fake_events()[:4]))
    exc = UpstreamStreamFailed(f"key {KEY} over quota", error_code="rate_limit_exceeded")
    error = decode([translator.error_event(exc, secret_forms([KEY]))])[0][1]["response"]["error"]
    assert error == {"code": "rate_limit_exceeded", "message": "key [redacted] over quota"}


# ------------------------------------------------------------------ the adapters' calls


def test_openai_responses_sends_the_clients_bytes_as_they_are() -> None:
    raw = b'{"model": "gpt-4o",   "input": "h\\u00e9", "zz": {"new": [1, 2.50]}}'
    body = ClientBody(json.loads(raw), raw, {})
    call = adapter(responses_api=True).build(Operation.RESPONSES, body, "gpt-4o", stream=False)
    assert (call.method, call.url, call.body, call.stream) == (
        "POST",
        "http://h:1/v1/responses",
        raw,
        False,
    )
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.headers["Accept"] == "application/json"


def test_openai_responses_with_another_model_is_reencoded() -> None:
    raw = b'{"model": "alias", "input": "hi", "zz": 1}'
    body = ClientBody(json.loads(raw), raw, {})
    call = adapter(responses_api=True).build(Operation.RESPONSES, body, "gpt-4o", stream=True)
    assert call.body is not None
    assert json.loads(call.body) == {"model": "gpt-4o", "input": "hi", "zz": 1}
    assert call.stream
    assert call.headers["Accept"] == "text/event-stream"
    assert call.headers["Accept-Encoding"] == "identity"
    # A revised body has no exact bytes: encoded again, even for the same model.
    revised = body.revised({"model": "gpt-4o", "input": [{"role": "user", "content": "hi"}]})
    call = adapter(responses_api=True).build(Operation.RESPONSES, revised, "gpt-4o", False)
    assert call.body == b'{"model":"gpt-4o","input":[{"role":"user","content":"hi"}]}'


def test_azure_responses_go_to_the_v1_api_with_the_deployment_as_model() -> None:
    azure = adapter(
        type="azure",
        base_url="https://r.openai.azure.com",
        deployments={"gpt-4o": "prod-4o"},
    )
    assert isinstance(azure, AzureAdapter)
    raw = b'{"model": "gpt-4o", "input": "hi"}'
    call = azure.build(Operation.RESPONSES, ClientBody(json.loads(raw), raw, {}), "gpt-4o", False)
    assert call.url == "https://r.openai.azure.com/openai/v1/responses"
    assert call.body is not None
    assert json.loads(call.body) == {"model": "prod-4o", "input": "hi"}
    assert call.headers["api-key"] == KEY
    assert "Authorization" not in call.headers
    # The deployment named as the model: the client's bytes as they are.
    raw = b'{"model":  "other", "input": "hi"}'
    call = azure.build(Operation.RESPONSES, ClientBody(json.loads(raw), raw, {}), "other", False)
    assert call.body == raw


def test_azure_refuses_a_model_that_cannot_be_a_deployment() -> None:
    azure = adapter(type="azure", base_url="https://r.openai.azure.com")
    with pytest.raises(InvalidRequest) as info:
        azure.build(Operation.RESPONSES, {"model": "a/b", "input": "hi"}, "a/b", False)
    assert info.value.param == "model"


@pytest.mark.parametrize(
    ("raw", "base"),
    [
        ({"responses_api": True}, "http://h:1/v1/responses"),
        (
            {"type": "azure", "base_url": "https://r.openai.azure.com"},
            "https://r.openai.azure.com/openai/v1/responses",
        ),
    ],
)
@pytest.mark.parametrize(
    ("op", "method"), [(Operation.RESPONSE_GET, "GET"), (Operation.RESPONSE_DELETE, "DELETE")]
)
def test_stored_response_calls_quote_the_id(
    raw: dict[str, Any], base: str, op: Operation, method: str
) -> None:
    call = adapter(**raw).build(op, {"id": "resp_1/../x?y=1#z %"}, "", stream=False)
    assert (call.method, call.url, call.body) == (
        method,
        f"{base}/resp_1%2F..%2Fx%3Fy%3D1%23z%20%25",
        None,
    )
    assert call.headers["Accept"] == "application/json"
    plain = adapter(**raw).build(op, {"id": "resp_abc"}, "", stream=False)
    assert plain.url == f"{base}/resp_abc"


@pytest.mark.parametrize("response_id", [".", ".."])
def test_a_dot_segment_id_is_refused_rather_than_resolved_out_of_the_path(
    response_id: str,
) -> None:
    """requests resolves dot segments: /responses/.. would reach the API root."""
    for op in (Operation.RESPONSE_GET, Operation.RESPONSE_DELETE):
        with pytest.raises(InvalidRequest) as info:
            adapter(responses_api=True).build(op, {"id": response_id}, "", stream=False)
        assert info.value.param == "id"
    call = adapter(responses_api=True).build(
        Operation.RESPONSE_GET, {"id": "..x"}, "", stream=False
    )
    sent = requests.Request(call.method, call.url).prepare().url
    assert sent == "http://h:1/v1/responses/..x"


@pytest.mark.parametrize("op", [Operation.RESPONSE_GET, Operation.RESPONSE_DELETE])
def test_stored_response_calls_need_the_responses_api(op: Operation) -> None:
    with pytest.raises(InvalidRequest) as info:
        adapter(responses_api=False).build(op, {"id": "resp_1"}, "", stream=False)
    assert info.value.param == "id"


def test_parse_responses_returns_the_bytes_and_the_usage() -> None:
    response = {
        "id": "resp_1",
        "object": "response",
        "output": [],
        "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
    }
    raw = json.dumps(response, indent=1).encode()
    parsed = adapter(responses_api=True).parse(Operation.RESPONSES, reply(raw))
    assert parsed == (raw, Usage(5, 2, 7))
    without = json.dumps({**response, "usage": None}).encode()
    assert adapter(responses_api=True).parse(Operation.RESPONSES, reply(without))[1] is None


@pytest.mark.parametrize(
    "body",
    [
        {"id": "chatcmpl-1", "object": "chat.completion", "choices": []},
        {"id": "resp_1", "object": "response"},
        {"id": "resp_1", "object": "response", "output": {}},
        {"id": "resp_1", "object": "chat.completion", "output": []},
        {"error": {"message": "hidden 200"}},
        [{"object": "response", "output": []}],
        b"<html>ok</html>",
        b"",
    ],
)
def test_a_200_to_responses_that_is_not_a_response_is_malformed(body: Any) -> None:
    for azure in (False, True):
        raw = {"type": "azure", "base_url": "https://r.openai.azure.com"} if azure else {}
        with pytest.raises(UpstreamMalformed):
            adapter(responses_api=True, **raw).parse(Operation.RESPONSES, reply(body))


@pytest.mark.parametrize("op", [Operation.RESPONSE_GET, Operation.RESPONSE_DELETE])
def test_parse_stored_response_checks_the_id(op: Operation) -> None:
    openai = adapter(responses_api=True)
    raw = json.dumps({"id": "resp_1", "object": "response", "deleted": True}).encode()
    assert openai.parse(op, reply(raw), {"id": "resp_1"}) == (raw, None)
    for other in ({"id": "resp_2", "object": "response"}, {"object": "response"}, {"id": 1}):
        with pytest.raises(UpstreamMalformed) as info:
            openai.parse(op, reply(other), {"id": "resp_1"})
        assert "another response id" in str(info.value.description)
    with pytest.raises(UpstreamMalformed):
        openai.parse(op, reply(b"[]"), {"id": "resp_1"})


def test_the_responses_stream_translator_is_the_pass_through() -> None:
    for raw in ({"responses_api": True}, {"type": "azure", "base_url": "https://r.a.com"}):
        body = {"model": "m", "input": "hi"}
        translator = adapter(**raw).stream_translator(Operation.RESPONSES, body)
        assert isinstance(translator, ResponsesPassThrough)
        assert translator.request is body
        assert translator.provider == "up"


# ------------------------------------------------------------------ which adapter serves


@pytest.mark.parametrize(
    ("raw", "bridged"),
    [
        ({}, True),
        ({"responses_api": True}, False),
        ({"base_url": "https://api.openai.com/v1"}, False),
        ({"base_url": "https://api.openai.com/v1", "responses_api": False}, True),
        ({"type": "azure", "base_url": "https://r.openai.azure.com"}, False),
        ({"type": "azure", "base_url": "https://r.openai.azure.com", "responses_api": False}, True),
        ({"type": "anthropic", "base_url": "https://api.anthropic.com"}, True),
    ],
)
def test_serving_bridges_responses_for_a_provider_without_that_api(
    raw: dict[str, Any], bridged: bool
) -> None:
    inner = adapter(**raw)
    served = serving(inner, Operation.RESPONSES)
    if bridged:
        assert isinstance(served, ResponsesOverChat)
        assert served.inner is inner
        assert served.provider is inner.provider
    else:
        assert served is inner
    for op in (Operation.CHAT, Operation.MESSAGES, Operation.RESPONSE_GET):
        assert serving(inner, op) is inner


# ------------------------------------------------------------------ the chat bridge

REQUEST = {
    "model": "m",
    "input": "hi",
    "instructions": "Be brief.",
    "max_output_tokens": 50,
    "reasoning": {"effort": "low"},
}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def bridge(**raw: Any) -> ResponsesOverChat:
    served = serving(adapter(**raw), Operation.RESPONSES)
    assert isinstance(served, ResponsesOverChat)
    return ResponsesOverChat(served.inner, clock=lambda: NOW)


def built(stream: bool = False, **raw: Any) -> tuple[str, dict[str, Any]]:
    call = bridge(**raw).build(Operation.RESPONSES, ClientBody(REQUEST, b"", {}), "up-1", stream)
    assert call.stream is stream
    assert call.body is not None
    return call.url, json.loads(call.body)


def test_bridge_to_a_chat_only_host_sends_chat_with_max_tokens() -> None:
    url, payload = built()
    assert url == "http://h:1/v1/chat/completions"
    # Other hosts get the older max_tokens and no reasoning_effort (many refuse it).
    assert payload == {"model": "up-1", "messages": MESSAGES, "max_tokens": 50}


def test_bridge_to_openai_without_responses_sends_its_chat_fields() -> None:
    url, payload = built(base_url="https://api.openai.com/v1", responses_api=False)
    assert url == "https://api.openai.com/v1/chat/completions"
    assert payload == {
        "model": "up-1",
        "messages": MESSAGES,
        "max_completion_tokens": 50,
        "reasoning_effort": "low",
    }


def test_bridge_streams_ask_for_usage() -> None:
    _, payload = built(stream=True)
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}


def test_bridge_to_anthropic_sends_a_messages_call() -> None:
    url, payload = built(type="anthropic", base_url="https://api.anthropic.com")
    assert url == "https://api.anthropic.com/v1/messages"
    assert payload == {
        "model": "up-1",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    url, payload = built(stream=True, type="anthropic", base_url="https://api.anthropic.com")
    assert payload["stream"] is True
    assert "stream_options" not in payload


def test_bridge_refuses_what_chat_cannot_take_by_name() -> None:
    body = {**REQUEST, "tools": [{"type": "web_search"}]}
    with pytest.raises(InvalidRequest) as info:
        bridge().build(Operation.RESPONSES, body, "up-1", False)
    assert info.value.param is not None and info.value.param.startswith("tools")


CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "up-1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def test_bridge_parses_a_chat_completion_into_a_response() -> None:
    body = ClientBody(REQUEST, b"", {})
    raw, usage = bridge().parse(Operation.RESPONSES, reply(CHAT_ANSWER), body)
    response = json.loads(raw)
    assert RESPONSE_ID.fullmatch(response["id"])
    assert (response["object"], response["status"], response["created_at"]) == (
        "response",
        "completed",
        NOW,
    )
    assert (response["model"], response["instructions"], response["max_output_tokens"]) == (
        "up-1",
        "Be brief.",
        50,
    )
    assert text_of(response) == "Hello!"
    assert response["usage"]["input_tokens"] == 9
    assert response["usage"]["output_tokens"] == 3
    assert response["previous_response_id"] is None
    assert usage == Usage(9, 3, 12)
    assert_valid("Response", response)
    again = json.loads(bridge().parse(Operation.RESPONSES, reply(CHAT_ANSWER), body)[0])
    assert again["id"] != response["id"]


def test_bridge_echoes_the_previous_response_id_the_gateway_replaced() -> None:
    # prepare() replaced previous_response_id by the conversation; the answer still names it.
    body = ClientBody(REQUEST, b"", {}).revised(REQUEST, previous_response_id="resp_prev")
    assert "previous_response_id" not in body
    response = json.loads(bridge().parse(Operation.RESPONSES, reply(CHAT_ANSWER), body)[0])
    assert response["previous_response_id"] == "resp_prev"
    assert_valid("Response", response)


@pytest.mark.parametrize(
    "answer",
    [
        {**CHAT_ANSWER, "choices": None},
        {"object": "response", "output": []},
        b"not json",
    ],
)
def test_bridge_refuses_what_is_not_a_chat_completion(answer: Any) -> None:
    with pytest.raises(UpstreamMalformed):
        bridge().parse(Operation.RESPONSES, reply(answer), REQUEST)


def test_bridge_refuses_a_chat_completion_without_a_choice() -> None:
    # The chat adapter takes an empty choices list; the Response cannot.
    with pytest.raises(UpstreamMalformed):
        bridge().parse(Operation.RESPONSES, reply({**CHAT_ANSWER, "choices": []}), REQUEST)


ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Bonjour é 🌍"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 5},
}


def anthropic_bridge() -> ResponsesOverChat:
    inner = AnthropicAdapter(
        provider(type="anthropic", base_url="https://api.anthropic.com"), clock=lambda: NOW
    )
    return ResponsesOverChat(inner, clock=lambda: NOW)


def test_bridge_parses_an_anthropic_message_into_a_response() -> None:
    raw, usage = anthropic_bridge().parse(Operation.RESPONSES, reply(ANTHROPIC_MESSAGE), REQUEST)
    response = json.loads(raw)
    assert RESPONSE_ID.fullmatch(response["id"])
    assert response["model"] == "claude-sonnet-4-5"
    assert response["status"] == "completed"
    assert text_of(response) == "Bonjour é 🌍"
    assert (response["usage"]["input_tokens"], response["usage"]["output_tokens"]) == (10, 5)
    assert usage == Usage(10, 5, 15)
    assert_valid("Response", response)
    cut = {**ANTHROPIC_MESSAGE, "stop_reason": "max_tokens"}
    response = json.loads(anthropic_bridge().parse(Operation.RESPONSES, reply(cut), REQUEST)[0])
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert_valid("Response", response)


def test_bridge_reads_errors_as_its_provider_does() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    info = anthropic_bridge().parse_error(reply(error, 529))
    assert (info.message, info.code) == ("Overloaded", "overloaded_error")
    assert info == anthropic_bridge().inner.parse_error(reply(error, 529))


def anthropic_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def anthropic_text_stream(*pieces: str) -> bytes:
    """A Messages stream in the documented order, text in ``pieces``."""
    message = {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None}
    message["usage"] = {"input_tokens": 25, "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        ),
        ("ping", {"type": "ping"}),
        *(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in pieces
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 15},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(anthropic_event(name, data) for name, data in events)


def anthropic_chain() -> StreamTranslator:
    translator = anthropic_bridge().stream_translator(
        Operation.RESPONSES, ClientBody(REQUEST, b"", {})
    )
    assert isinstance(translator, Chained)
    return translator


def test_an_anthropic_stream_becomes_a_responses_stream() -> None:
    translator = anthropic_chain()
    out = feed(translator, anthropic_text_stream("Bon", "jour é", " 🌍"))
    events = decode(out)
    for name, data in events:
        assert name == data["type"]
        assert_valid("ResponseStreamEvent", data)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[0][1]["type"] == "response.created"
    assert events[-1][1]["type"] == "response.completed"
    final = events[-1][1]["response"]
    assert RESPONSE_ID.fullmatch(final["id"])
    assert {data["response"]["id"] for _, data in events if "response" in data} == {final["id"]}
    assert text_of(final) == "Bon" + "jour é" + " 🌍"
    deltas = [d["delta"] for _, d in events if d["type"] == "response.output_text.delta"]
    assert deltas == ["Bon", "jour é", " 🌍"]
    assert final["model"] == "claude-sonnet-4-5"
    assert final["instructions"] == "Be brief."
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (25, 15)
    assert translator.complete
    assert translator.final == final
    assert translator.usage == Usage(25, 15, 40)
    assert_valid("Response", final)


def test_an_anthropic_stream_cut_anywhere_gives_the_same_events() -> None:
    raw = anthropic_text_stream("Bon", "jour é", " 🌍")
    whole = [data for _, data in decode(feed(anthropic_chain(), raw))]
    for step in (1, 5):
        translator = anthropic_chain()
        cut = [data for _, data in decode(feed(translator, raw, step=step))]
        # Ids are made per stream: compare everything else.
        assert [without_ids(e) for e in cut] == [without_ids(e) for e in whole]
        assert translator.complete and translator.usage == Usage(25, 15, 40)


def without_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_ids(v) for k, v in node.items() if k not in ("id", "item_id")}
    if isinstance(node, list):
        return [without_ids(v) for v in node]
    return node


def test_an_anthropic_error_before_any_text_sends_nothing_so_the_caller_can_fall_back() -> None:
    message = {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None}
    raw = anthropic_event("message_start", {"type": "message_start", "message": message})
    raw += anthropic_event(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    translator = anthropic_chain()
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(raw)
    assert "Overloaded" in str(info.value.description)
    assert not translator.complete


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def chat_chain() -> StreamTranslator:
    translator = bridge().stream_translator(Operation.RESPONSES, ClientBody(REQUEST, b"", {}))
    assert isinstance(translator, Chained)
    assert isinstance(translator.first, OpenAIEventStream)
    assert isinstance(translator.second, ChatToResponsesStream)
    return translator


CUT_CHAT = chat_chunk({"role": "assistant", "content": ""}) + chat_chunk({"content": "Hel"})


def test_a_chat_stream_without_done_is_not_complete_and_fails_with_its_id() -> None:
    translator = chat_chain()
    out = feed(translator, CUT_CHAT)
    events = [data for _, data in decode(out)]
    assert events and events[0]["type"] == "response.created"
    assert not translator.complete
    assert translator.final is None
    error_event = translator.error_event(TRUNCATED)
    assert error_event is not None
    name, failed = decode([error_event])[0]
    assert name == "response.failed"
    assert failed["sequence_number"] == events[-1]["sequence_number"] + 1
    assert failed["response"]["id"] == events[0]["response"]["id"]
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "server_error"
    assert_valid("ResponseStreamEvent", failed)


def test_a_whole_chat_stream_completes_with_usage() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    done = chat_chunk({}, "stop") + (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"up-1",'
        b'"choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\ndata: [DONE]\n\n"
    )
    translator = chat_chain()
    events = [data for _, data in decode(feed(translator, CUT_CHAT + done))]
    assert events[-1]["type"] == "response.completed"
    assert translator.complete
    assert translator.usage == Usage(4, 2, 6)
    assert translator.final == events[-1]["response"]
    assert text_of(events[-1]["response"]) == "Hel"


class Scripted(StreamTranslator):
    """A first translator that hands out the given batches, one list per feed."""

    def __init__(self, *batches: list[bytes]) -> None:
        self.batches = list(batches)

    def feed(self, chunk: bytes) -> list[bytes]:
        return self.batches.pop(0)


def test_chained_keeps_events_made_before_a_failure_in_the_same_batch() -> None:
    error = b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'
    second = ChatToResponsesStream("up", REQUEST, "resp_" + "0" * 48, NOW)
    # The content and the error in one item, then one more item: second raises for it.
    chain = Chained(Scripted([chat_chunk({"content": "Hel"}) + error, chat_chunk({})]), second)
    out = chain.feed(b"x")
    assert any(b"response.output_text.delta" in item for item in out)
    with pytest.raises(UpstreamStreamFailed, match="boom"):  # then the failure
        chain.feed(b"x")
    assert chain.error_event(UpstreamStreamFailed("boom")) is not None


# ------------------------------------------------------------------ the dialect

GOOD = {"model": "gpt-4o", "input": "hi"}


@pytest.mark.parametrize(
    "body",
    [
        GOOD,
        {"model": "gpt-4o", "input": [{"role": "user", "content": "hi"}]},
        {"model": "gpt-4o", "input": []},
        {"model": "gpt-4o", "previous_response_id": "resp_1"},
        {
            **GOOD,
            "instructions": None,
            "stream": True,
            "store": False,
            "tools": [],
            "include": [],
            "metadata": {},
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "text": {},
            "reasoning": {},
            "max_output_tokens": 1,
        },
    ],
)
def test_validate_takes_good_requests(body: dict[str, Any]) -> None:
    RESPONSES_DIALECT.validate(Operation.RESPONSES, body)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 5}, "model"),
        ({"model": "  "}, "model"),
        ({"model": "gpt\n4o"}, "model"),
        ({"model": "m" * 1000}, "model"),
        ({"input": None}, "input"),
        ({"input": 5}, "input"),
        ({"input": {"role": "user"}}, "input"),
        ({"input": ["hi"]}, "input"),
        ({"input": [{"role": "user", "content": "a"}, None]}, "input"),
        ({"previous_response_id": 5}, "previous_response_id"),
        ({"previous_response_id": ""}, "previous_response_id"),
        ({"previous_response_id": "resp\x00"}, "previous_response_id"),
        ({"previous_response_id": "r" * 1000}, "previous_response_id"),
        ({"instructions": ["x"]}, "instructions"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"store": "false"}, "store"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"include": "reasoning.encrypted_content"}, "include"),
        ({"metadata": []}, "metadata"),
        ({"tool_choice": 1}, "tool_choice"),
        ({"parallel_tool_calls": "true"}, "parallel_tool_calls"),
        ({"text": "plain"}, "text"),
        ({"reasoning": "high"}, "reasoning"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": -1}, "max_output_tokens"),
        ({"max_output_tokens": 1.5}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"max_output_tokens": "10"}, "max_output_tokens"),
    ],
)
def test_validate_refuses_each_bad_field_by_name(change: dict[str, Any], param: str) -> None:
    body = {**GOOD, **change}
    with pytest.raises(InvalidRequest) as info:
        RESPONSES_DIALECT.validate(Operation.RESPONSES, body)
    assert info.value.param == param
    assert info.value.code == 400


def test_validate_refuses_a_body_without_model_or_input() -> None:
    with pytest.raises(InvalidRequest) as info:
        RESPONSES_DIALECT.validate(Operation.RESPONSES, {"input": "hi"})
    assert info.value.param == "model"
    with pytest.raises(InvalidRequest) as info:
        RESPONSES_DIALECT.validate(Operation.RESPONSES, {"model": "m"})
    assert info.value.param == "input"


def test_the_dialects_error_event_is_a_whole_failed_response() -> None:
    exc = UpstreamStreamFailed(f"bad {KEY}", error_code="rate_limit_exceeded")
    events = decode([RESPONSES_DIALECT.error_event(exc, secret_forms([KEY]))])
    assert len(events) == 1
    name, data = events[0]
    assert name == "response.failed"
    assert data["sequence_number"] == 0
    assert RESPONSE_ID.fullmatch(data["response"]["id"])
    assert data["response"]["status"] == "failed"
    assert data["response"]["error"] == {
        "code": "rate_limit_exceeded",
        "message": "bad [redacted]",
    }
    assert_valid("ResponseStreamEvent", data)


def test_replay_tells_a_stored_response_as_its_stream() -> None:
    final = fake_events()[-1]["response"]
    events = RESPONSES_DIALECT.replay(json.dumps(final).encode(), {})
    assert events is not None
    decoded = [data for _, data in decode(events)]
    assert decoded[0]["type"] == "response.created"
    assert decoded[-1]["type"] == "response.completed"
    assert decoded[-1]["response"]["id"] == final["id"]
    assert [d["sequence_number"] for d in decoded] == list(range(len(decoded)))
    assert text_of(decoded[-1]["response"]) == REPLY_TEXT


@pytest.mark.parametrize("answer", [b"not json", b"[]", b'{"object": "chat.completion"}', b""])
def test_replay_of_what_is_not_a_response_is_none(answer: bytes) -> None:
    assert RESPONSES_DIALECT.replay(answer, {}) is None


@pytest.mark.parametrize(("store", "cacheable"), [(False, True), (True, False), (None, False)])
def test_only_a_request_that_stores_nothing_is_cacheable(store: Any, cacheable: bool) -> None:
    body = {**GOOD} if store is None else {**GOOD, "store": store}
    assert RESPONSES_DIALECT.cacheable(body) is cacheable


# ---------------------------------------------------------- the dialect and the store

OWNER = "alice:0123456789abcdef"


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(
        {
            "auth": {"keys": [{"name": "alice", "sha256": hash_key("k")}]},
            "providers": [
                {"name": "native", "base_url": "https://api.openai.com/v1", "models": ["m"]},
                {"name": "chat", "base_url": "http://chat.test/v1", "models": ["m"]},
            ],
        }
    )
    with app.app_context():
        yield app


def targets(app: Flask) -> list[Target]:
    return [Target(p, "m") for p in app.extensions["proxyapi.config"].providers]


def store(app: Flask) -> response_store.ResponseStore:
    found: response_store.ResponseStore = app.extensions[response_store.EXTENSION]
    return found


def client_body(data: dict[str, Any]) -> ClientBody:
    return ClientBody(data, json.dumps(data).encode(), {"x-h": "1"})


def test_prepare_leaves_a_first_turn_alone(app: Flask) -> None:
    body = client_body(GOOD)
    every = targets(app)
    assert RESPONSES_DIALECT.prepare(body, OWNER, every) == (body, every)


def test_prepare_sends_an_unknown_previous_id_to_the_providers_that_keep_theirs(
    app: Flask,
) -> None:
    body = client_body({**GOOD, "previous_response_id": "resp_elsewhere"})
    sent, chosen = RESPONSES_DIALECT.prepare(body, OWNER, targets(app))
    assert sent is body
    assert [t.provider.name for t in chosen] == ["native"]
    chat_only = [t for t in targets(app) if t.provider.name == "chat"]
    with pytest.raises(InvalidRequest) as info:
        RESPONSES_DIALECT.prepare(body, OWNER, chat_only)
    assert info.value.param == "previous_response_id"
    assert info.value.error_code == "previous_response_not_found"


def test_prepare_pins_a_follow_up_to_the_provider_that_keeps_it(app: Flask) -> None:
    assert store(app).pin(OWNER, "resp_native", "native")
    body = client_body({**GOOD, "previous_response_id": "resp_native"})
    sent, chosen = RESPONSES_DIALECT.prepare(body, OWNER, targets(app))
    assert sent is body
    assert [t.provider.name for t in chosen] == ["native"]
    chat_only = [t for t in targets(app) if t.provider.name == "chat"]
    with pytest.raises(InvalidRequest) as info:
        RESPONSES_DIALECT.prepare(body, OWNER, chat_only)
    assert info.value.param == "previous_response_id"
    assert "'native'" in str(info.value.description)
    # Another key's pin is no pin.
    with pytest.raises(InvalidRequest):
        RESPONSES_DIALECT.prepare(body, "bob:fedcba9876543210", chat_only)


def test_prepare_replaces_a_kept_response_by_its_conversation(app: Flask) -> None:
    earlier: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": "first"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
    ]
    response = {"id": "resp_kept", "object": "response", "output": [], "status": "completed"}
    assert store(app).keep(OWNER, response, earlier)
    body = client_body({**GOOD, "input": "second", "previous_response_id": "resp_kept"})
    sent, chosen = RESPONSES_DIALECT.prepare(body, OWNER, targets(app))
    assert chosen == targets(app)  # any provider can take a whole conversation
    assert dict(sent) == {
        "model": "gpt-4o",
        "input": [*earlier, {"type": "message", "role": "user", "content": "second"}],
    }
    assert sent.raw == b""
    assert sent.headers == {"x-h": "1"}
    assert sent.echo == {"previous_response_id": "resp_kept"}


def test_keeper_pins_a_native_answer_and_keeps_a_translated_one(app: Flask) -> None:
    body = {**GOOD, "input": [{"role": "user", "content": "hi"}]}
    keep = RESPONSES_DIALECT.keeper(body, OWNER)
    assert keep is not None
    keep("native", {"id": "resp_n", "output": [{"type": "message", "id": "msg_1"}]})
    assert store(app).lookup(OWNER, "resp_n") == response_store.Stored("resp_n", provider="native")
    output = [
        {"type": "reasoning", "id": "rs_1", "content": [{"type": "reasoning_text", "text": "t"}]},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": []},
        {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"},
    ]
    translated = {"id": "resp_t", "object": "response", "output": output}
    keep("chat", translated)
    found = store(app).lookup(OWNER, "resp_t")
    assert found is not None
    assert found.provider is None
    assert found.response == translated
    # The next turn's input: this turn's, then the output without ids and reasoning.
    assert found.items == [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": []},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ]
    keep("chat", {"output": []})  # without an id: nothing to keep, and no error
    assert store(app).lookup("bob:fedcba9876543210", "resp_t") is None


def test_keeper_keeps_nothing_for_a_request_that_stores_nothing(app: Flask) -> None:
    assert RESPONSES_DIALECT.keeper({**GOOD, "store": False}, OWNER) is None
    assert RESPONSES_DIALECT.keeper({**GOOD, "store": True}, OWNER) is not None


# ------------------------------------------------------------------ the relay


class Source(TranslatedStream):
    """A scripted upstream through a Responses stream translator, as the gateway reads one."""

    def __init__(self, translator: StreamTranslator, *items: object) -> None:
        raw = Raw(*items)
        super().__init__("up", raw.chunks, translator, raw.abort)
        self.aborted = raw.aborted


def sse_frame(data: dict[str, Any]) -> bytes:
    """An event as the gateway frames one it makes."""
    return sse_event(data, str(data["type"]))


def dialect_frame(exc: ProxyAPIError, secrets: Iterable[str]) -> bytes:
    return b"data: the dialect's frame\n\n"


def relay_of(source: Source) -> tuple[Relay, list[tuple[str, Any]]]:
    """A relay whose hooks write to the log it returns, in the order they run."""
    log: list[tuple[str, Any]] = []
    relay = Relay(source, 5, error_event=dialect_frame)
    relay.on_complete = lambda: log.append(("complete", source.final))
    relay.on_finish = lambda error: log.append(("finish", error))
    return relay, log


def run(relay: Relay, log: list[tuple[str, Any]]) -> bytes:
    relay.wait_first(5)
    for batch in relay.events():
        log.append(("batch", batch))
    return b"".join(item for kind, item in log if kind == "batch")


def test_a_responses_stream_cut_short_ends_with_its_own_failed_event() -> None:
    events = fake_events()[:6]
    relay, log = relay_of(Source(passthrough(), wire(events[:3]), wire(events[3:])))
    body = run(relay, log)
    assert body.startswith(wire(events))
    sent = decode([body])
    assert len(sent) == 7
    name, failed = sent[-1]
    assert name == "response.failed"
    assert failed["sequence_number"] == 6
    assert failed["response"]["id"] == events[0]["response"]["id"]
    assert failed["response"]["error"]["code"] == "server_error"
    assert_valid("ResponseStreamEvent", failed)
    assert b"the dialect's frame" not in body
    # No on_complete for a stream cut short; on_finish once, last.
    assert [kind for kind, _ in log if kind != "batch"] == ["finish"]
    assert log[-2] == ("batch", sse_frame(failed))
    error = log[-1][1]
    assert isinstance(error, UpstreamError)
    assert error.error_code == "upstream_stream_truncated"


def test_a_bridged_stream_cut_short_ends_with_the_translators_failed_event() -> None:
    relay, log = relay_of(Source(chat_chain(), CUT_CHAT))
    sent = [data for _, data in decode([run(relay, log)])]
    assert [d["sequence_number"] for d in sent] == list(range(len(sent)))
    assert sent[-1]["type"] == "response.failed"
    assert sent[-1]["response"]["id"] == sent[0]["response"]["id"]
    assert "complete" not in [kind for kind, _ in log]


def test_an_upstream_error_mid_stream_gets_the_translators_failed_event() -> None:
    events = fake_events()[:4]
    exc = UpstreamStreamFailed("connection reset")
    relay, log = relay_of(Source(passthrough(), wire(events), exc))
    sent = decode([run(relay, log)])
    name, failed = sent[-1]
    assert name == "response.failed"
    assert failed["sequence_number"] == 4
    assert failed["response"]["id"] == events[0]["response"]["id"]
    assert failed["response"]["error"]["message"] == "connection reset"
    assert log[-1] == ("finish", exc)


def test_on_complete_runs_once_right_before_the_batch_that_ends_the_stream() -> None:
    events = fake_events()
    # The pause lets every earlier event go out before the upstream's end is read.
    source = Source(passthrough(), wire(events[:-1]), 0.2, frame(events[-1]))
    relay, log = relay_of(source)
    assert run(relay, log) == wire(events)
    assert [kind for kind, _ in log] == ["batch"] * (len(events) - 1) + [
        "complete",
        "batch",
        "finish",
    ]
    # When it runs, the answer to keep is there, and the event that ends the stream not sent.
    assert log[-3] == ("complete", events[-1]["response"])
    assert log[-2] == ("batch", frame(events[-1]))
    assert log[-1] == ("finish", None)


def test_on_complete_runs_once_before_the_end_however_the_upstream_is_read() -> None:
    events = fake_events()
    for chunks in (
        [wire(events)],
        [frame(e) for e in events],
        [wire(events[:3]), wire(events[3:])],
    ):
        relay, log = relay_of(Source(passthrough(), *chunks))
        assert run(relay, log) == wire(events)
        kinds = [kind for kind, _ in log]
        assert kinds.count("complete") == 1
        last = next(i for i, (k, b) in enumerate(log) if k == "batch" and b"completed" in b)
        assert kinds.index("complete") < last
        assert log[kinds.index("complete")][1] == events[-1]["response"]


class SlowToFinal(ResponsesPassThrough):
    """Stands still between setting ``complete`` and ``final``, as a thread switch may."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "complete" and value:
            time.sleep(0.3)


def test_on_complete_sees_the_final_answer_whenever_it_runs() -> None:
    events = fake_events()
    translator = SlowToFinal("up", {"model": "gpt-4o"})
    relay, log = relay_of(Source(translator, wire(events[:-1]), frame(events[-1])))
    run(relay, log)
    assert ("complete", events[-1]["response"]) in log


def test_on_complete_failing_still_sends_the_answer() -> None:
    events = fake_events()
    relay = Relay(Source(passthrough(), wire(events)), 5)

    def broken() -> None:
        raise RuntimeError("store down")

    relay.on_complete = broken
    relay.wait_first(5)
    assert b"".join(relay.events()) == wire(events)


def test_a_relayed_failure_completes_the_stream_with_no_answer_to_keep() -> None:
    events = fake_events(fail_after=5)
    relay, log = relay_of(Source(passthrough(), wire(events)))
    assert run(relay, log) == wire(events)
    # response.failed ends the stream (no error event is added), with no final to keep.
    assert [entry for entry in log if entry[0] != "batch"] == [("complete", None), ("finish", None)]


def test_a_failure_right_after_the_start_raises_before_anything_is_sent() -> None:
    events = fake_events(fail_after=2, fail_code="rate_limit_exceeded")
    source = Source(passthrough(), wire(events))
    relay, log = relay_of(source)
    with pytest.raises(UpstreamStreamFailed) as info:
        relay.wait_first(5)
    assert info.value.error_code == "rate_limit_exceeded"
    assert source.aborted.is_set()
    assert log == []
