"""The Anthropic Messages API (``/v1/messages``) through real gunicorn.

The official anthropic SDK is the client wherever a client would be; raw ``requests`` calls
shaped like Claude Code's check what must survive byte for byte. To an ``anthropic`` provider
(the fake Anthropic) a Messages request passes through; to an ``openai`` provider (the fake
OpenAI upstream) it is translated to Chat Completions and the answer or stream back.
"""

from __future__ import annotations

import json
import re
import secrets as pysecrets
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import anthropic
import pytest
import requests

from proxyapi.budgets import estimate_prompt
from proxyapi.providers.base import Operation
from tests.conftest import ALICE_KEY, UPSTREAM_KEY
from tests.fakes.anthropic import (
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    TOOL_INPUT,
    TOOL_PREAMBLE,
    AnthropicFault,
    FakeAnthropic,
)
from tests.fakes.anthropic import REPLY_TEXT as CLAUDE_TEXT
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import REPLY_TEXT as GPT_TEXT
from tests.fakes.upstream import TOOL_ARGUMENTS, TOOL_CALL_ID, FakeUpstream, Fault
from tests.schemas import assert_valid

MODEL = "claude-sonnet-4-5"
GPT = "gpt-4o-mini"
VERSION = "2023-06-01"
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
BILLING = "x-anthropic-billing-header: cc_version=1.0.0; cc_entrypoint=cli; cch=abc123;"
HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "units": {"type": "string"}},
        "required": ["city"],
    },
}
# Keys of this module's own: one with a token budget, one with a request limit.
CAROL_KEY = "pk-carol-" + pysecrets.token_hex(12)
DAVE_KEY = "pk-dave-" + pysecrets.token_hex(12)
CAROL_BUDGET = 300
# A log line starts with a timestamp (ours, or gunicorn's in brackets); a traceback's lines are
# indented. Anything else at the left margin was planted by a client.
LOG_LINE = re.compile(r"^(\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|    |\{\"ts\")")
ANTHROPIC_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
}


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def claude_server() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def claude(claude_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The module's fake Anthropic, with recorded traffic, faults and overrides cleared."""
    claude_server.reset()
    yield claude_server
    claude_server.reset()


def _providers(claude: FakeAnthropic, fake: FakeUpstream) -> list[dict[str, Any]]:
    # No retries and a breaker that never opens: each test sees its own fault's effect.
    common = {
        "api_key_env": "FAKE_UPSTREAM_KEY",
        "timeout": {"connect": 2, "read": 5},
        "retry": {"max_attempts": 1},
        "breaker": {"fail_max": 10000},
    }
    return [
        {
            "name": "claude",
            "type": "anthropic",
            "base_url": claude.base_url,
            "models": ["claude-*"],
            **common,
        },
        {
            "name": "gpt",
            "type": "openai",
            "base_url": fake.base_url,
            "models": [GPT, "gpt-4o"],
            **common,
        },
    ]


@pytest.fixture(scope="module")
def messages_gateway(
    claude_server: FakeAnthropic,
    fake_server: FakeUpstream,
    start_gateway: Callable[..., GatewayProcess],
) -> GatewayProcess:
    """Anthropic and OpenAI providers, an alias across both, a budgeted and a limited key."""
    return start_gateway(
        {
            "cache": {"responses": "off"},
            "auth": {
                "keys": [
                    {"name": "alice", "key_env": "ALICE_KEY"},
                    {
                        "name": "carol",
                        "key_env": "CAROL_KEY",
                        "token_limits": [f"{CAROL_BUDGET}/hour"],
                    },
                    {"name": "dave", "key_env": "DAVE_KEY", "limits": ["2/minute"]},
                ]
            },
            "providers": _providers(claude_server, fake_server),
            "models": {"smart": [f"claude/{MODEL}", f"gpt/{GPT}"]},
        },
        env={"CAROL_KEY": CAROL_KEY, "DAVE_KEY": DAVE_KEY},
    )


@pytest.fixture(scope="module")
def caching_gateway(
    claude_server: FakeAnthropic,
    fake_server: FakeUpstream,
    start_gateway: Callable[..., GatewayProcess],
) -> GatewayProcess:
    """The same providers, with every Messages answer cached."""
    return start_gateway(
        {
            "cache": {"responses": "off", "routes": {"/v1/messages": "all"}},
            "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
            "providers": _providers(claude_server, fake_server),
        }
    )


@pytest.fixture
def gw(
    messages_gateway: GatewayProcess, claude: FakeAnthropic, fake: FakeUpstream
) -> GatewayProcess:
    return messages_gateway


@pytest.fixture
def make_client() -> Iterator[Callable[..., anthropic.Anthropic]]:
    """Make official anthropic SDK clients; all are closed after the test."""
    clients: list[anthropic.Anthropic] = []

    def make(gw: GatewayProcess, key: str = ALICE_KEY, **kwargs: Any) -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            base_url=gw.url, api_key=key, max_retries=0, **{"timeout": 15, **kwargs}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(
    gw: GatewayProcess, make_client: Callable[..., anthropic.Anthropic]
) -> anthropic.Anthropic:
    return make_client(gw)


# ---------------------------------------------------------------------------------- helpers


def claude_code_headers(key: str = ALICE_KEY, **extra: str) -> dict[str, str]:
    """The headers Claude Code sends (with ANTHROPIC_AUTH_TOKEN set)."""
    return {
        "Authorization": f"Bearer {key}",
        "anthropic-version": VERSION,
        "anthropic-beta": BETA,
        "content-type": "application/json",
        "user-agent": "claude-cli/1.0.0 (external, cli)",
        "x-app": "cli",
        "X-Claude-Code-Session-Id": "sess-raw",
        **extra,
    }


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def sse_events(data: bytes) -> list[tuple[str | None, bytes]]:
    """(event name, data bytes) of each event in an SSE body; comments skipped."""
    out: list[tuple[str | None, bytes]] = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, lines = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                lines.append(line[5:].removeprefix(b" "))
        if lines:
            out.append((name, b"\n".join(lines)))
    return out


def claude_input_tokens(body: dict[str, Any]) -> int:
    """What the fake Anthropic counts for a request it received."""
    prompt = {k: body.get(k) for k in ("system", "messages", "tools")}
    return max(1, len(json.dumps(prompt, ensure_ascii=False)) // 4)


def gpt_prompt_tokens(chat: dict[str, Any]) -> int:
    """What the fake OpenAI upstream reports as prompt tokens for a chat request it received."""
    return max(1, len(json.dumps(chat["messages"])) // 4)


def assert_anthropic_error(exc: anthropic.APIStatusError, status: int, kind: str) -> None:
    """An SDK exception carrying an Anthropic-shaped error body and the request id."""
    assert exc.status_code == status
    body = exc.body
    assert isinstance(body, dict), body
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    request_id = exc.response.headers.get("request-id")
    assert request_id, dict(exc.response.headers)
    assert exc.request_id == request_id == body["request_id"]
    assert exc.response.headers["X-Request-ID"] == request_id


def raw_http(gw: GatewayProcess, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes; return everything the gateway sends back until it closes."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def status_and_body(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split(b" ", 2)[1]), json.loads(body)


def new_log(gw: GatewayProcess, before: str, marker: str, timeout: float = 3.0) -> str:
    """The log written since ``before``, once it has a line with ``marker``."""
    deadline = time.monotonic() + timeout
    while True:
        new = gw.logs()[len(before) :]
        if marker in new or time.monotonic() > deadline:
            return new
        time.sleep(0.02)


# ------------------------------------------------------------- pass-through to Anthropic


def test_create_passes_through_with_text_and_usage(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    claude.report_cache_tokens = True
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, messages=HELLO)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == CLAUDE_TEXT
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    (call,) = claude.calls("/v1/messages")
    assert message.usage.input_tokens == claude_input_tokens(call.body)
    assert message.usage.output_tokens == len(CLAUDE_TEXT.split(" "))
    assert message.usage.cache_read_input_tokens == CACHE_READ_TOKENS
    assert message.usage.cache_creation_input_tokens == CACHE_CREATION_TOKENS
    assert raw.headers["X-ProxyAPI-Provider"] == "claude"
    assert raw.headers["request-id"] == raw.headers["X-Request-ID"] == message._request_id
    sent = lower(call.headers)
    # The SDK's own version (not the provider's default) is what Anthropic gets.
    assert sent["anthropic-version"] == client.default_headers["anthropic-version"]
    assert sent["x-api-key"] == UPSTREAM_KEY and "authorization" not in sent
    assert ALICE_KEY not in json.dumps(call.headers)


def test_stream_passes_through_text_and_final_message(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert len(pieces) > 3 and "".join(pieces) == CLAUDE_TEXT
    assert final.content[0].type == "text" and final.content[0].text == CLAUDE_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(CLAUDE_TEXT.split(" "))
    (call,) = claude.calls("/v1/messages")
    assert call.body["stream"] is True
    assert final.usage.input_tokens == claude_input_tokens(call.body)
    assert headers["X-ProxyAPI-Provider"] == "claude"
    assert headers["content-type"].startswith("text/event-stream")


def test_tools_pass_through_answered_and_streamed(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    answer = client.messages.create(model=MODEL, max_tokens=256, messages=HELLO, tools=[WEATHER])
    assert answer.stop_reason == "tool_use"
    text, tool = answer.content
    assert text.type == "text" and text.text == TOOL_PREAMBLE
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == TOOL_INPUT

    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=HELLO, tools=[WEATHER], tool_choice={"type": "auto"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    partials = [e.partial_json for e in events if e.type == "input_json"]
    assert len(partials) > 3  # the input really arrived in many fragments
    assert json.loads("".join(partials)) == TOOL_INPUT  # U+2028 included
    assert final.stop_reason == "tool_use"
    text, tool = final.content
    assert text.type == "text" and text.text == TOOL_PREAMBLE
    assert tool.type == "tool_use" and tool.name == "get_weather"
    assert tool.input == TOOL_INPUT and tool.id.startswith("toolu_")
    sent = claude.calls("/v1/messages")[-1].body
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == {"type": "auto"}


def claude_code_body(model: str = MODEL, billing: str = BILLING) -> bytes:
    """A Claude Code turn as bytes in a layout no re-encoding would reproduce: spaces after
    separators in some places and not others, keys out of order, escaped and raw non-ASCII."""
    system = (
        f'[{{"type": "text", "text": "{billing}"}}, '
        '{"type":"text","text":"You are Claude Code, Anthropic\'s official CLI for Claude.",'
        '"cache_control":{"type":"ephemeral"}}]'
    )
    messages = (
        '[{"role": "user", "content": [{"type": "text", "text": "Fix the caf\\u00e9 bug", '
        '"cache_control": {"type": "ephemeral"}}]},'
        ' {"content": ['
        '{"type":"thinking","thinking":"The user wants a fix \u2014 look at app.py.",'
        '"signature":"EqQBCkgIARABGAIiQL+sig/0123456789abcdef+/=="},'
        '{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw"},'
        '{"type":"text","text":"Looking."}], "role": "assistant"},\n'
        '  {"role":"user","content":[{"type":"text","text":"Go on.",'
        '"cache_control":{"type":"ephemeral","ttl":"5m"}}]}]'
    )
    return (
        f'{{"model":"{model}", "max_tokens": 512,"system":{system},\n'
        f'"messages": {messages}, "metadata": {{"user_id": "user_abc_account_def_session_123"}},'
        '"thinking": {"type": "enabled", "budget_tokens": 1024}}'
    ).encode()


def test_claude_code_request_reaches_anthropic_byte_for_byte(
    gw: GatewayProcess, claude: FakeAnthropic
) -> None:
    body = claude_code_body()
    json.loads(body)  # valid JSON, however it is laid out
    resp = requests.post(
        f"{gw.url}/v1/messages?beta=true", data=body, headers=claude_code_headers(), timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"] == [{"type": "text", "text": CLAUDE_TEXT}]
    (call,) = claude.calls("/v1/messages")
    assert call.raw == body
    sent = lower(call.headers)
    assert sent["anthropic-version"] == VERSION
    assert sent["anthropic-beta"] == BETA
    assert sent["x-api-key"] == UPSTREAM_KEY and "authorization" not in sent
    assert resp.headers["X-ProxyAPI-Provider"] == "claude"


def test_a_rewritten_model_name_changes_nothing_else(
    gw: GatewayProcess, claude: FakeAnthropic
) -> None:
    body = claude_code_body(model=f"claude/{MODEL}")  # the provider prefix is stripped
    resp = requests.post(
        f"{gw.url}/v1/messages?beta=true", data=body, headers=claude_code_headers(), timeout=10
    )
    assert resp.status_code == 200, resp.text
    (call,) = claude.calls("/v1/messages")
    assert call.body == {**json.loads(body), "model": MODEL}
    assert lower(call.headers)["anthropic-beta"] == BETA


# A stream with thinking, in Anthropic's own framing; the data lines have a layout of their own
# (spaces, key order) that a relay re-encoding them would change.
SIGNATURE = "ErUBCkYIAxgCIkBZ0Ls6M+xK/3qHVZ5Ww==" + "Zm9v" * 20 + "+/="
THINKING_EVENTS: list[tuple[str, str]] = [
    (
        "message_start",
        '{"type": "message_start", "message": {"id": "msg_01Think", "type": "message", '
        '"role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, '
        '"stop_sequence": null, "usage": {"input_tokens": 21, "cache_creation_input_tokens": 0, '
        '"cache_read_input_tokens": 0, "output_tokens": 1}}}',
    ),
    ("ping", '{"type": "ping"}'),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,'
        '"content_block":{"type":"thinking","thinking":"","signature":""}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,'
        '"delta":{"type":"thinking_delta","thinking":"Let me think"}}',
    ),
    (
        "content_block_delta",
        '{"index":0,"type":"content_block_delta",'
        '"delta":{"thinking":" step by step \u2028 caf\\u00e9.","type":"thinking_delta"}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,'
        f'"delta":{{"type":"signature_delta","signature":"{SIGNATURE}"}}}}',
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    (
        "content_block_start",
        '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
    ),
    ("ping", '{"type": "ping"}'),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"42."}}',
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":1}'),
    (
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        '"usage":{"output_tokens":37}}',
    ),
    ("message_stop", '{"type":"message_stop"}'),
]
THINKING_SSE = "".join(f"event: {n}\ndata: {d}\n\n" for n, d in THINKING_EVENTS).encode()


def test_thinking_and_signature_deltas_reach_the_sdk(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    claude.script(AnthropicFault(body=THINKING_SSE, content_type="text/event-stream"))
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=HELLO,
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    thinking, text = final.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me think step by step \u2028 caf\u00e9."
    assert thinking.signature == SIGNATURE
    assert text.type == "text" and text.text == "42."
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 37


def test_stream_events_are_relayed_unchanged(gw: GatewayProcess, claude: FakeAnthropic) -> None:
    claude.script(AnthropicFault(body=THINKING_SSE, content_type="text/event-stream"))
    body = {"model": MODEL, "max_tokens": 2048, "stream": True, "messages": HELLO}
    resp = requests.post(
        f"{gw.url}/v1/messages?beta=true", json=body, headers=claude_code_headers(), timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert sse_events(resp.content) == [(n, d.encode()) for n, d in THINKING_EVENTS]


# ---------------------------------------------------------------------------------- count_tokens


def test_count_tokens_asks_the_anthropic_provider(
    client: anthropic.Anthropic, claude: FakeAnthropic, fake: FakeUpstream
) -> None:
    raw = client.messages.with_raw_response.count_tokens(
        model=MODEL, system="You are terse.", messages=HELLO, tools=[WEATHER]
    )
    counted = raw.parse()
    (call,) = claude.calls("/v1/messages/count_tokens")
    assert counted.input_tokens == claude_input_tokens(call.body)
    assert call.body["tools"] == [WEATHER] and call.body["system"] == "You are terse."
    assert raw.headers["X-ProxyAPI-Token-Count"] == "provider"
    assert raw.headers["X-ProxyAPI-Provider"] == "claude"
    assert raw.headers["request-id"]
    assert claude.calls("/v1/messages") == [] and fake.calls() == []


def test_count_tokens_is_estimated_for_a_model_only_openai_serves(
    client: anthropic.Anthropic, claude: FakeAnthropic, fake: FakeUpstream
) -> None:
    params: dict[str, Any] = {"model": GPT, "system": "You are terse.", "messages": HELLO}
    raw = client.messages.with_raw_response.count_tokens(**params, tools=[WEATHER])
    counted = raw.parse()
    expected = estimate_prompt(Operation.MESSAGES, {**params, "tools": [WEATHER]})
    assert counted.input_tokens == expected > 0
    assert raw.headers["X-ProxyAPI-Token-Count"] == "estimated"
    assert raw.headers["request-id"]
    assert claude.calls() == [] and fake.calls() == []


# ---------------------------------------------------------------------------------- models


def test_models_list_in_anthropics_shape_and_pages(
    client: anthropic.Anthropic, gw: GatewayProcess
) -> None:
    everything = client.models.list(limit=1000)
    ids = [m.id for m in everything.data]
    assert {"smart", GPT, "gpt-4o", MODEL, "claude-haiku-4-5"} <= set(ids)
    assert "fake-claude" not in ids  # the fake lists it, but claude-* does not admit it
    assert len(ids) == len(set(ids)) and everything.has_more is False
    assert everything.first_id == ids[0] and everything.last_id == ids[-1]
    for model in everything.data:
        assert model.type == "model" and model.display_name == model.id
        assert isinstance(model.created_at, datetime) and model.created_at.tzinfo is not None

    first = client.models.list(limit=1)
    assert [m.id for m in first.data] == ids[:1]
    assert first.has_more is True and first.first_id == first.last_id == ids[0]
    second = client.models.list(limit=1, after_id=first.last_id)
    assert [m.id for m in second.data] == ids[1:2] and second.first_id == ids[1]
    back = client.models.list(limit=1, before_id=ids[1])
    assert [m.id for m in back.data] == ids[:1] and back.has_more is False
    last = client.models.list(limit=2, after_id=ids[-3])
    assert [m.id for m in last.data] == ids[-2:] and last.has_more is False
    # The SDK's auto-paging follows after_id from page to page.
    assert [m.id for m in client.models.list(limit=2)] == ids
    assert client.models.retrieve(MODEL).id == MODEL

    # Without anthropic-version, the same route answers in OpenAI's shape.
    openai_shape = requests.get(
        f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=5
    ).json()
    assert openai_shape["object"] == "list"
    assert [m["id"] for m in openai_shape["data"]] == ids


# ---------------------------------------------------------------------------------- errors


def test_unknown_model_is_not_found(client: anthropic.Anthropic, claude: FakeAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such-model", max_tokens=16, messages=HELLO)
    assert_anthropic_error(info.value, 404, "not_found_error")
    assert "no-such-model" in info.value.body["error"]["message"]
    assert claude.calls() == []


def test_wrong_key_is_an_authentication_error(
    gw: GatewayProcess, make_client: Callable[..., anthropic.Anthropic], claude: FakeAnthropic
) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        make_client(gw, key="pk-wrong-" + "0" * 24).messages.create(
            model=MODEL, max_tokens=16, messages=HELLO
        )
    assert_anthropic_error(info.value, 401, "authentication_error")
    assert claude.calls() == []


def test_missing_max_tokens_is_a_bad_request(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=anthropic.omit, messages=HELLO)
    assert_anthropic_error(info.value, 400, "invalid_request_error")
    assert "max_tokens" in info.value.body["error"]["message"]
    assert claude.calls() == []


def test_an_anthropic_providers_refusal_is_relayed(
    client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    claude.script(AnthropicFault(status=400))
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert_anthropic_error(info.value, 400, "invalid_request_error")


def test_the_keys_own_request_limit_is_a_rate_limit_error(
    gw: GatewayProcess, make_client: Callable[..., anthropic.Anthropic], claude: FakeAnthropic
) -> None:
    dave = make_client(gw, key=DAVE_KEY)
    for _ in range(2):
        dave.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as info:
        dave.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert_anthropic_error(info.value, 429, "rate_limit_error")
    assert int(info.value.response.headers["Retry-After"]) > 0
    assert len(claude.calls("/v1/messages")) == 2


def test_malformed_http_on_messages_is_refused_in_anthropics_shape(gw: GatewayProcess) -> None:
    out = raw_http(
        gw,
        b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {ALICE_KEY}\r\n".encode()
        + b"anthropic-version: 2023-06-01\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    status, body = status_and_body(out)
    assert status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "could not be read" in body["error"]["message"]
    # The same on an OpenAI route stays OpenAI's.
    out = raw_http(
        gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    status, body = status_and_body(out)
    assert status == 400 and body["error"]["code"] == "invalid_chunked_body"


# ------------------------------------------------------------- translation to OpenAI's chat


def test_create_is_translated_to_chat_and_back(
    client: anthropic.Anthropic, fake: FakeUpstream, claude: FakeAnthropic
) -> None:
    raw = client.messages.with_raw_response.create(
        model=GPT,
        max_tokens=300,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
        stop_sequences=["STOP"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5},  # no longer a parameter of the SDK's own
        extra_headers={"anthropic-beta": BETA},
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == GPT
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == GPT_TEXT
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.id.startswith("msg_")
    (call,) = fake.calls("/chat/completions")
    chat = call.body
    assert_valid("CreateChatCompletionRequest", chat)
    assert chat["model"] == GPT and chat["max_tokens"] == 300
    assert chat["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"},
    ]
    assert chat["temperature"] == 0.5 and chat["stop"] == ["STOP"] and chat["user"] == "u-1"
    assert "stream" not in chat
    assert message.usage.input_tokens == gpt_prompt_tokens(chat)
    assert message.usage.output_tokens == len(GPT_TEXT.split(" "))
    sent = lower(call.headers)
    assert not [name for name in sent if name.startswith("anthropic")], sent
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert raw.headers["X-ProxyAPI-Provider"] == "gpt" and raw.headers["request-id"]
    assert claude.calls() == []


def test_stream_is_translated_to_chat_and_back(
    client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    with client.beta.messages.stream(
        model=GPT,
        max_tokens=64,
        system="You are terse.",
        messages=HELLO,
        betas=["interleaved-thinking-2025-05-14"],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert pieces == [f"tok{i} " for i in range(5)]
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "tok0 tok1 tok2 tok3 tok4 "
    assert final.stop_reason == "end_turn"
    (call,) = fake.calls("/chat/completions")
    chat = call.body
    assert_valid("CreateChatCompletionRequest", chat)
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["messages"][0] == {"role": "system", "content": "You are terse."}
    assert final.usage.output_tokens == 5
    assert final.usage.input_tokens == gpt_prompt_tokens(chat)
    assert headers["X-ProxyAPI-Provider"] == "gpt"
    assert not [name for name in lower(call.headers) if name.startswith("anthropic")]
    assert call.path == "/v1/chat/completions"  # not ?beta=true


def test_tools_are_translated_both_ways(client: anthropic.Anthropic, fake: FakeUpstream) -> None:
    answer = client.messages.create(
        model=GPT,
        max_tokens=128,
        messages=HELLO,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    assert answer.stop_reason == "tool_use"
    (tool,) = answer.content
    assert tool.type == "tool_use" and tool.id == TOOL_CALL_ID and tool.name == "get_weather"
    assert tool.input == TOOL_ARGUMENTS  # U+2028 included
    chat = fake.calls("/chat/completions")[0].body
    assert_valid("CreateChatCompletionRequest", chat)
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False

    with client.messages.stream(
        model=GPT, max_tokens=128, messages=HELLO, tools=[WEATHER], tool_choice={"type": "any"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    partials = [e.partial_json for e in events if e.type == "input_json"]
    assert len(partials) > 3 and json.loads("".join(partials)) == TOOL_ARGUMENTS
    assert final.stop_reason == "tool_use"
    (tool,) = final.content
    assert tool.type == "tool_use" and tool.id == TOOL_CALL_ID and tool.input == TOOL_ARGUMENTS
    chat = fake.calls("/chat/completions")[1].body
    assert_valid("CreateChatCompletionRequest", chat)
    assert chat["tool_choice"] == "required" and chat["stream"] is True


def test_tool_history_becomes_tool_calls_and_tool_messages(
    client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    history: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "A tool will know.", "signature": "c2ln"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris", "units": "celsius"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    answer = client.messages.create(model=GPT, max_tokens=64, messages=history)
    assert answer.content[0].type == "text" and answer.content[0].text == GPT_TEXT
    chat = fake.calls("/chat/completions")[0].body
    assert_valid("CreateChatCompletionRequest", chat)
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Paris","units":"celsius"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]


def test_claude_codes_own_request_is_translated_for_openai(
    gw: GatewayProcess, fake: FakeUpstream
) -> None:
    # What cannot cross (thinking blocks, their signatures, cache breakpoints) is dropped.
    resp = requests.post(
        f"{gw.url}/v1/messages?beta=true",
        data=claude_code_body(model=GPT),
        headers=claude_code_headers(),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"] == [{"type": "text", "text": GPT_TEXT}]
    (call,) = fake.calls("/chat/completions")
    assert_valid("CreateChatCompletionRequest", call.body)
    assert [m["role"] for m in call.body["messages"]] == ["system", "user", "assistant", "user"]
    assert call.body["messages"][0]["content"].startswith(BILLING)
    assert call.body["messages"][2] == {"role": "assistant", "content": "Looking."}
    assert "cache_control" not in call.raw.decode() and "signature" not in call.raw.decode()
    assert not [name for name in lower(call.headers) if name.startswith("anthropic")]


# ---------------------------------------------------------------------------------- fallback


def test_alias_falls_back_from_anthropic_to_openai(
    client: anthropic.Anthropic, claude: FakeAnthropic, fake: FakeUpstream
) -> None:
    claude.mode = AnthropicFault(status=529)
    raw = client.messages.with_raw_response.create(model="smart", max_tokens=64, messages=HELLO)
    message = raw.parse()
    assert raw.headers["X-ProxyAPI-Provider"] == "gpt"
    assert raw.headers["X-ProxyAPI-Attempts"] == "2"
    assert message.type == "message" and message.content[0].text == GPT_TEXT
    assert message.stop_reason == "end_turn"
    assert len(claude.calls("/v1/messages")) == 1
    (call,) = fake.calls("/chat/completions")
    assert call.body["model"] == GPT
    assert_valid("CreateChatCompletionRequest", call.body)


@pytest.mark.parametrize(
    "fault",
    [
        AnthropicFault(status=500),
        # Overloaded right after message_start: nothing has reached the client yet.
        AnthropicFault(error_after=1),
    ],
    ids=["status-500", "error-event-at-start"],
)
def test_alias_stream_falls_back_from_anthropic_to_openai(
    client: anthropic.Anthropic, claude: FakeAnthropic, fake: FakeUpstream, fault: AnthropicFault
) -> None:
    claude.mode = fault
    with client.messages.stream(model="smart", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert headers["X-ProxyAPI-Provider"] == "gpt"
    assert text == "tok0 tok1 tok2 tok3 tok4 " and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert len(claude.calls("/v1/messages")) == 1 and len(fake.calls("/chat/completions")) == 1


# ---------------------------------------------------------------------------------- mid-stream


def test_anthropic_error_mid_stream_ends_with_an_error_event(
    gw: GatewayProcess, client: anthropic.Anthropic, claude: FakeAnthropic
) -> None:
    claude.script(AnthropicFault(error_after=4))
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        received.extend(stream.text_stream)
    assert received == [CLAUDE_TEXT[:5]]  # the first delta came before the failure
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}

    claude.script(AnthropicFault(error_after=4))
    resp = requests.post(
        f"{gw.url}/v1/messages",
        json={"model": MODEL, "max_tokens": 64, "stream": True, "messages": HELLO},
        headers=claude_code_headers(),
        timeout=10,
    )
    events = sse_events(resp.content)
    assert [n for n, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    error = json.loads(events[-1][1])
    assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"


def test_openai_failure_mid_stream_ends_with_an_anthropic_error_event(
    gw: GatewayProcess, client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    fake.script(Fault(chunks=5, reset_after=3))
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=GPT, max_tokens=64, messages=HELLO) as stream,
    ):
        received.extend(stream.text_stream)
    assert received == ["tok0 ", "tok1 "]
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] in ANTHROPIC_ERROR_TYPES and body["error"]["message"]

    fake.script(Fault(chunks=5, reset_after=3))
    resp = requests.post(
        f"{gw.url}/v1/messages",
        json={"model": GPT, "max_tokens": 64, "stream": True, "messages": HELLO},
        headers=claude_code_headers(),
        timeout=10,
    )
    events = sse_events(resp.content)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-1] == "error", names
    assert "message_stop" not in names
    error = json.loads(events[-1][1])
    assert set(error) <= {"type", "error", "request_id"} and error["type"] == "error"
    assert error["error"]["type"] == "api_error" and "'gpt'" in error["error"]["message"]


# ---------------------------------------------------------------------------------- cache


def test_the_billing_line_does_not_defeat_the_cache(
    caching_gateway: GatewayProcess,
    claude: FakeAnthropic,
    make_client: Callable[..., anthropic.Anthropic],
) -> None:
    def turn(cch: str) -> requests.Response:
        billing = BILLING.replace("cch=abc123", f"cch={cch}")
        return requests.post(
            f"{caching_gateway.url}/v1/messages?beta=true",
            data=claude_code_body(billing=billing),
            headers=claude_code_headers(),
            timeout=10,
        )

    first = turn("a1b2c3")
    assert first.status_code == 200, first.text
    assert first.headers["X-Cache"] == "MISS"
    second = turn("d4e5f6")
    assert second.status_code == 200, second.text
    assert second.headers["X-Cache"] == "HIT"
    assert second.content == first.content
    assert second.headers["X-Cache-Key"] == first.headers["X-Cache-Key"]
    (call,) = claude.calls("/v1/messages")  # the second made no upstream call
    assert b"cch=a1b2c3" in call.raw  # the upstream still got the line

    # Another question is another entry.
    other = requests.post(
        f"{caching_gateway.url}/v1/messages",
        json={"model": MODEL, "max_tokens": 64, "system": BILLING, "messages": HELLO},
        headers=claude_code_headers(),
        timeout=10,
    )
    assert other.headers["X-Cache"] == "MISS" and len(claude.calls("/v1/messages")) == 2


def test_a_cached_answer_is_replayed_as_anthropic_events(
    caching_gateway: GatewayProcess,
    claude: FakeAnthropic,
    make_client: Callable[..., anthropic.Anthropic],
) -> None:
    client = make_client(caching_gateway)
    question: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 200,
        "system": f"{BILLING}\nYou are terse.",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER],
    }
    raw = client.messages.with_raw_response.create(**question)
    assert raw.headers["X-Cache"] == "MISS"
    answer = raw.parse()
    question["system"] = question["system"].replace("abc123", "fff999")
    with client.messages.stream(**question) as stream:
        events = list(stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert headers["X-Cache"] == "HIT" and headers["X-ProxyAPI-Attempts"] == "0"
    assert headers["content-type"].startswith("text/event-stream")
    assert len(claude.calls("/v1/messages")) == 1
    assert final.id == answer.id and final.stop_reason == answer.stop_reason == "tool_use"
    assert [b.to_dict(exclude_none=True) for b in final.content] == [
        b.to_dict(exclude_none=True) for b in answer.content
    ]
    assert final.content[1].type == "tool_use" and final.content[1].input == TOOL_INPUT
    assert final.usage.output_tokens == answer.usage.output_tokens
    assert any(e.type == "input_json" for e in events)


# ---------------------------------------------------------------------------------- logs


def test_the_access_line_names_the_claude_code_session(
    gw: GatewayProcess, make_client: Callable[..., anthropic.Anthropic]
) -> None:
    before = gw.logs()
    client = make_client(gw, default_headers={"X-Claude-Code-Session-Id": "sess-123"})
    client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    new = new_log(gw, before, "session=sess-123")
    (line,) = [line for line in new.splitlines() if "proxyapi.access" in line]
    assert "POST /v1/messages 200" in line and line.endswith("session=sess-123")


def test_control_characters_in_the_session_id_start_no_log_line(gw: GatewayProcess) -> None:
    before = gw.logs()
    forged = b"2026-01-01 00:00:00,000 INFO [1] [-] proxyapi.access: FORGED"
    body = json.dumps({"model": MODEL, "max_tokens": 16, "messages": HELLO}).encode()
    head = (
        b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {ALICE_KEY}\r\n".encode()
        + b"anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n" % len(body)
    )
    # A CR/LF in the value ends the header there: what follows is a header line of its own
    # (refused: a name with spaces) or a folded continuation (refused: obsolete).
    for smuggled in (b"sess-1\r\n" + forged, b"sess-1\r\n " + forged, b"sess-1\r" + forged):
        out = raw_http(gw, head + b"X-Claude-Code-Session-Id: " + smuggled + b"\r\n\r\n" + body)
        status, error = status_and_body(out)
        assert status == 400, out
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    # Line breaks HTTP lets through (NEL, a C1 control) reach the log escaped.
    out = raw_http(gw, head + b"X-Claude-Code-Session-Id: sess-2\x85" + forged + b"\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 200"), out
    new = new_log(gw, before, "session=sess-2")
    lines = [line for line in new.splitlines() if line]  # splitlines() splits at NEL too
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    (line,) = [line for line in lines if "session=sess-2" in line]
    assert "session=sess-2\\x85" in line and "FORGED" in line
    assert "\x85" not in new


# ---------------------------------------------------------------------------------- budgets


def test_token_budgets_apply_to_messages(
    gw: GatewayProcess, make_client: Callable[..., anthropic.Anthropic], claude: FakeAnthropic
) -> None:
    carol = make_client(gw, key=CAROL_KEY)
    before = gw.logs()
    question = [{"role": "user", "content": "Summarize: " + "lorem ipsum " * 40}]
    reserved = estimate_prompt(Operation.MESSAGES, {"messages": question}) + 50
    assert reserved < CAROL_BUDGET < 2 * reserved
    raw = carol.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=question)
    message = raw.parse()
    assert raw.headers["X-RateLimit-Limit-Tokens"] == str(CAROL_BUDGET)
    assert int(raw.headers["X-RateLimit-Remaining-Tokens"]) == CAROL_BUDGET - reserved
    spent = message.usage.input_tokens + message.usage.output_tokens
    assert CAROL_BUDGET - spent < reserved  # what is left cannot hold the same question again
    # The budget is settled when the response closes, just before its access line is written.
    assert "key=carol" in new_log(gw, before, "key=carol")
    with pytest.raises(anthropic.RateLimitError) as info:
        carol.messages.create(model=MODEL, max_tokens=50, messages=question)
    assert_anthropic_error(info.value, 429, "rate_limit_error")
    assert "Token budget" in info.value.body["error"]["message"]
    headers = info.value.response.headers
    assert int(headers["Retry-After"]) > 0
    assert int(headers["X-RateLimit-Remaining-Tokens"]) == CAROL_BUDGET - spent
    assert len(claude.calls("/v1/messages")) == 1
