"""The fake Anthropic Messages API, called over real HTTP (not through the gateway)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.fakes.anthropic import (
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    REPLY_TEXT,
    TOOL_INPUT,
    TOOL_PREAMBLE,
    AnthropicFault,
    FakeAnthropic,
    json_fragments,
)
from tests.fakes.upstream import Fault

KEY = "sk-ant-test-key"
MODEL = "claude-haiku-4-5"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    server.reset()
    yield server
    server.reset()


def body(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        **extra,
    }


def post(
    fake: FakeAnthropic, payload: Any, headers: dict[str, str] | None = None, **kw: Any
) -> requests.Response:
    return requests.post(
        fake.messages_url, json=payload, headers=headers or HEADERS, timeout=5, **kw
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll briefly: the client can see a stream's last byte before the fake notes it ended."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE body on "\\n" only (U+2028 inside data is not a line break)."""
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def assemble(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rebuild content blocks from start/delta/stop events, as a client must."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
            partial[data["index"]] = ""
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] += delta["partial_json"]
        elif name == "content_block_stop" and blocks[data["index"]]["type"] == "tool_use":
            blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
    return [blocks[i] for i in sorted(blocks)]


# ---------------------------------------------------------------- auth and validation


def test_wrong_or_missing_key_is_401(fake: FakeAnthropic) -> None:
    for headers in (
        {"x-api-key": "nope", "anthropic-version": "2023-06-01"},
        {"anthropic-version": "2023-06-01"},
    ):
        r = post(fake, body(), headers)
        assert r.status_code == 401
        assert r.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }
    # An OpenAI-style bearer token is not an Anthropic key.
    r = post(fake, body(), {"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"})
    assert r.status_code == 401


def test_missing_version_header_is_400(fake: FakeAnthropic) -> None:
    r = post(fake, body(), {"x-api-key": KEY})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "status", "etype", "needle"),
    [
        (body(model="gpt-4o"), 404, "not_found_error", "model: gpt-4o"),
        (
            {k: v for k, v in body().items() if k != "max_tokens"},
            400,
            "invalid_request_error",
            "max_tokens",
        ),
        (body(max_tokens=0), 400, "invalid_request_error", "max_tokens"),
        (body(max_tokens="10"), 400, "invalid_request_error", "max_tokens"),
        (body(messages=[]), 400, "invalid_request_error", "messages"),
        (
            body(
                messages=[
                    {"role": "system", "content": "be nice"},
                    {"role": "user", "content": "hi"},
                ]
            ),
            400,
            "invalid_request_error",
            "system",
        ),
        (body(messages=[{"role": "tool", "content": "x"}]), 400, "invalid_request_error", "role"),
        (body(system=[{"type": "image"}]), 400, "invalid_request_error", "system"),
    ],
)
def test_invalid_bodies_are_rejected(
    fake: FakeAnthropic, payload: dict[str, Any], status: int, etype: str, needle: str
) -> None:
    r = post(fake, payload)
    assert r.status_code == status
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == etype
    assert needle in r.json()["error"]["message"]


def test_system_as_string_or_text_blocks_is_accepted(fake: FakeAnthropic) -> None:
    assert post(fake, body(system="Be brief.")).status_code == 200
    assert (
        post(
            fake,
            body(
                system=[
                    {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
                ]
            ),
        ).status_code
        == 200
    )


# ---------------------------------------------------------------- non-streaming answers


def test_text_answer(fake: FakeAnthropic) -> None:
    r = post(fake, body())
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["request-id"].startswith("req_")
    msg = r.json()
    assert msg["id"].startswith("msg_")
    assert msg["type"] == "message"
    assert msg["role"] == "assistant"
    assert msg["model"] == MODEL
    assert msg["content"] == [{"type": "text", "text": REPLY_TEXT}]
    assert msg["stop_reason"] == "end_turn"
    assert msg["stop_sequence"] is None
    assert msg["usage"]["input_tokens"] >= 1
    assert msg["usage"]["output_tokens"] == len(REPLY_TEXT.split())
    assert "cache_read_input_tokens" not in msg["usage"]


def test_reply_text_override(fake: FakeAnthropic) -> None:
    fake.reply_text = "Custom \u00e9 reply"
    assert post(fake, body()).json()["content"][0]["text"] == "Custom \u00e9 reply"


def test_tool_answer(fake: FakeAnthropic) -> None:
    r = post(fake, body(tools=[WEATHER_TOOL, {**WEATHER_TOOL, "name": "other"}]))
    # Non-ASCII arrives as real UTF-8, U+2028 included.
    assert "caf\u00e9 \u2028 ok".encode() in r.content
    msg = r.json()
    assert msg["stop_reason"] == "tool_use"
    text, tool = msg["content"]
    assert text == {"type": "text", "text": TOOL_PREAMBLE}
    assert tool["type"] == "tool_use"
    assert tool["id"].startswith("toolu_")
    assert tool["name"] == "get_weather"
    assert tool["input"] == {"city": "Paris", "units": "celsius", "note": "caf\u00e9 \u2028 ok"}


def test_tool_input_override_and_tool_result_turn(fake: FakeAnthropic) -> None:
    fake.tool_input = {"city": "Oslo"}
    first = post(fake, body(tools=[WEATHER_TOOL])).json()
    assert first["content"][1]["input"] == {"city": "Oslo"}
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": first["content"][1]["id"], "content": "5C"}
            ],
        },
    ]
    second = post(fake, body(tools=[WEATHER_TOOL], messages=history)).json()
    assert second["stop_reason"] == "end_turn"
    assert [b["type"] for b in second["content"]] == ["text"]


def test_max_tokens_stop(fake: FakeAnthropic) -> None:
    msg = post(fake, body(max_tokens=2)).json()
    assert msg["stop_reason"] == "max_tokens"
    assert msg["content"][0]["text"] == "Hello from"
    assert msg["usage"]["output_tokens"] == 2


def test_stop_sequence_stop(fake: FakeAnthropic) -> None:
    msg = post(fake, body(stop_sequences=["END", "STOP"])).json()
    assert msg["stop_reason"] == "stop_sequence"
    assert msg["stop_sequence"] == "END"
    other = post(fake, body(stop_sequences=["STOP"])).json()
    assert (other["stop_reason"], other["stop_sequence"]) == ("end_turn", None)


def test_cache_tokens(fake: FakeAnthropic) -> None:
    fake.report_cache_tokens = True
    usage = post(fake, body()).json()["usage"]
    assert usage["cache_read_input_tokens"] == CACHE_READ_TOKENS == 7
    assert usage["cache_creation_input_tokens"] == CACHE_CREATION_TOKENS == 3
    start = parse_sse(post(fake, body(stream=True)).content)[0][1]
    assert start["message"]["usage"]["cache_read_input_tokens"] == 7


def test_input_tokens_grow_with_the_prompt(fake: FakeAnthropic) -> None:
    short = post(fake, body()).json()["usage"]["input_tokens"]
    long = post(fake, body(system="x" * 400)).json()["usage"]["input_tokens"]
    assert long >= short + 90


# ---------------------------------------------------------------- streaming


def test_text_stream_events(fake: FakeAnthropic) -> None:
    r = post(fake, body(stream=True), stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Transfer-Encoding"] == "chunked"
    events = parse_sse(r.raw.read())
    names = [n for n, _ in events]
    assert all(data["type"] == name for name, data in events)
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("ping") == 2
    assert names.index("ping", 2) < names.index("content_block_stop")  # one ping mid-block
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1 and start["usage"]["input_tokens"] >= 1
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert len(deltas) > 3 and all(1 <= len(t) <= 6 for t in deltas)
    assert assemble(events) == [{"type": "text", "text": REPLY_TEXT}]
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {"output_tokens": len(REPLY_TEXT.split())}
    assert wait_for(lambda: fake.streams[-1].finished is not None)
    assert fake.streams[-1].events_sent == len(events)


def test_tool_stream_reassembles(fake: FakeAnthropic) -> None:
    events = parse_sse(post(fake, body(stream=True, tools=[WEATHER_TOOL])).content)
    blocks = assemble(events)
    assert blocks[0] == {"type": "text", "text": TOOL_PREAMBLE}
    assert blocks[1]["type"] == "tool_use" and blocks[1]["name"] == "get_weather"
    assert blocks[1]["input"] == TOOL_INPUT
    start = next(d for n, d in events if n == "content_block_start" and d["index"] == 1)
    assert start["content_block"]["input"] == {}
    fragments = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["index"] == 1
    ]
    assert fragments[0] == ""  # as the real API sends
    assert len(fragments) > 8 and all(3 <= len(f) <= 7 for f in fragments[1:])
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_json_fragments_never_leave_a_short_tail() -> None:
    for n in range(3, 60):
        parts = json_fragments("x" * n)
        assert "".join(parts) == "x" * n
        assert all(3 <= len(p) <= 7 for p in parts)


def test_stream_stop_reasons(fake: FakeAnthropic) -> None:
    events = parse_sse(post(fake, body(stream=True, stop_sequences=["END"])).content)
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    events = parse_sse(post(fake, body(stream=True, max_tokens=1)).content)
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_chunks_sets_text_delta_count(fake: FakeAnthropic) -> None:
    fake.script(Fault(chunks=2))
    events = parse_sse(post(fake, body(stream=True)).content)
    assert len([n for n, _ in events if n == "content_block_delta"]) == 2
    assert assemble(events)[0]["text"] == REPLY_TEXT


# ---------------------------------------------------------------- faults


def test_error_after_ends_stream_with_error_event(fake: FakeAnthropic) -> None:
    fake.script(AnthropicFault(error_after=4))
    r = post(fake, body(stream=True))
    assert r.status_code == 200  # the failure is in-band, and the stream still ends cleanly
    events = parse_sse(r.content)
    assert len(events) == 5
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert "message_stop" not in [n for n, _ in events]
    assert wait_for(lambda: fake.streams[-1].finished is not None)


def test_overloaded_529(fake: FakeAnthropic) -> None:
    fake.script(Fault(status=529))
    r = post(fake, body())
    assert r.status_code == 529
    assert r.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert post(fake, body()).status_code == 200  # one fault, one request


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (500, "api_error"),
    ],
)
def test_fault_error_types(fake: FakeAnthropic, status: int, etype: str) -> None:
    fake.script(Fault(status=status))
    r = post(fake, body(stream=True))
    assert r.status_code == status
    assert r.json()["error"]["type"] == etype


def test_rate_limit_429_with_retry_after(fake: FakeAnthropic) -> None:
    fake.script(Fault(status=429, headers={"retry-after": "3"}))
    r = post(fake, body())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_mode_applies_until_reset(fake: FakeAnthropic) -> None:
    fake.mode = Fault(status=500)
    assert [post(fake, body()).status_code for _ in range(2)] == [500, 500]
    fake.reset()
    assert post(fake, body()).status_code == 200


def test_reset_raw_body_and_delay(fake: FakeAnthropic) -> None:
    fake.script(Fault(reset=True), Fault(body=b"not json"), Fault(delay=0.1))
    with pytest.raises(requests.ConnectionError):
        post(fake, body())
    assert post(fake, body()).content == b"not json"
    t0 = time.monotonic()
    assert post(fake, body()).status_code == 200
    assert time.monotonic() - t0 >= 0.1


def test_reset_after_breaks_the_stream(fake: FakeAnthropic) -> None:
    fake.script(Fault(reset_after=3))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        post(fake, body(stream=True))


def test_client_disconnect_is_recorded(fake: FakeAnthropic) -> None:
    fake.script(Fault(stall_after=2, stall_for=0.2, chunk_delay=0.01))
    r = post(fake, body(stream=True), stream=True)
    r.raw.read(20)
    r.close()
    assert wait_for(lambda: fake.streams[-1].disconnected is not None)
    assert fake.streams[-1].finished is None


# ---------------------------------------------------------------- models and recording


def test_models_list(fake: FakeAnthropic) -> None:
    r = requests.get(f"{fake.base_url}/v1/models", headers=HEADERS, timeout=5)
    assert r.status_code == 200
    page = r.json()
    ids = [m["id"] for m in page["data"]]
    assert ids == fake.models
    assert page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
    first = page["data"][0]
    assert first["type"] == "model" and first["created_at"] == "2025-01-01T00:00:00Z"
    assert isinstance(first["display_name"], str) and first["display_name"]
    assert (
        requests.get(
            f"{fake.base_url}/v1/models",
            headers={"x-api-key": "bad", "anthropic-version": "2023-06-01"},
            timeout=5,
        ).status_code
        == 401
    )


def test_requests_are_recorded(fake: FakeAnthropic) -> None:
    post(fake, body(system="sys"))
    post(fake, body(), {"x-api-key": "wrong", "anthropic-version": "2023-06-01"})
    requests.get(f"{fake.base_url}/v1/models", headers=HEADERS, timeout=5)
    messages = fake.calls("/v1/messages")
    assert len(messages) == 2 and len(fake.requests) == 3
    first = messages[0]
    assert first.method == "POST" and first.path == "/v1/messages"
    assert first.body["system"] == "sys"
    assert first.headers["x-api-key"] == KEY
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert messages[1].headers["x-api-key"] == "wrong"
    assert fake.calls("/v1/models")[0].method == "GET"
    fake.reset()
    assert fake.requests == [] and fake.streams == []
