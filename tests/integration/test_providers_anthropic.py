"""Anthropic through real gunicorn, with the official openai SDK as the client.

The SDK's parsed objects must be what an OpenAI upstream would have produced for the same
content: same message text, tool calls (arguments as a JSON string), finish reasons and usage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import requests

from tests.conftest import ALICE_KEY, UPSTREAM_KEY
from tests.fakes.anthropic import (
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    REPLY_TEXT,
    TOOL_INPUT,
    TOOL_PREAMBLE,
    AnthropicFault,
    FakeAnthropic,
)
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream
from tests.schemas import assert_valid

MODEL = "claude-sonnet-4-5"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "units": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def claude_server() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def claude(claude_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    claude_server.reset()
    yield claude_server
    claude_server.reset()


@pytest.fixture(scope="module")
def gateway_with_claude(
    claude_server: FakeAnthropic,
    fake_server: FakeUpstream,
    start_gateway: Callable[..., GatewayProcess],
) -> GatewayProcess:
    return start_gateway(
        {
            "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
            "providers": [
                {
                    "name": "claude",
                    "type": "anthropic",
                    "base_url": claude_server.base_url,
                    "api_key_env": "FAKE_UPSTREAM_KEY",
                    "models": ["claude-*"],
                    "max_tokens": 1000,
                    "retry": {"max_attempts": 2, "base_delay": 0.05, "max_delay": 0.1},
                    "breaker": {"fail_max": 1000},
                },
                {
                    "name": "fake",
                    "type": "openai",
                    "base_url": fake_server.base_url,
                    "api_key_env": "FAKE_UPSTREAM_KEY",
                    "models": ["gpt-4o-mini"],
                },
            ],
            "models": {"smart": [f"claude/{MODEL}", "fake/gpt-4o-mini"]},
            "cache": {"responses": "off"},
        }
    )


@pytest.fixture
def client(
    gateway_with_claude: GatewayProcess,
    claude: FakeAnthropic,
    fake: FakeUpstream,
    sdk: Callable[..., openai.OpenAI],
) -> openai.OpenAI:
    return sdk(gateway_with_claude)


def test_chat_is_translated_both_ways(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert_valid("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == REPLY_TEXT
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    (call,) = claude.calls("/v1/messages")
    assert call.headers["x-api-key"] == UPSTREAM_KEY and "anthropic-version" in call.headers
    assert ALICE_KEY not in json.dumps(call.headers)
    assert call.body["system"] == "You are terse."
    assert call.body["max_tokens"] == 1000  # the provider's default: the client sent none
    assert all(m["role"] != "system" for m in call.body["messages"])


def test_tool_calls_non_streaming(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    (tool_call,) = choice.message.tool_calls or []
    assert tool_call.type == "function" and tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == TOOL_INPUT  # U+2028 included
    sent = claude.calls("/v1/messages")[0].body
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert sent["tool_choice"] == {"type": "auto"}


def test_tool_round_trip_sends_tool_use_and_tool_result(
    client: openai.OpenAI, claude: FakeAnthropic
) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL])
    tool_call = (first.choices[0].message.tool_calls or [])[0]
    follow_up: list[Any] = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "18C"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    sent = claude.calls("/v1/messages")[-1].body["messages"]
    assistant, user = sent[-2], sent[-1]
    assert assistant["role"] == "assistant"
    assert any(b["type"] == "tool_use" and b["id"] == tool_call.id for b in assistant["content"])
    assert user["role"] == "user" and user["content"][0]["type"] == "tool_result"
    assert user["content"][0]["tool_use_id"] == tool_call.id


def test_streamed_text_with_usage(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    claude.report_cache_tokens = True
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    for chunk in chunks:
        data = chunk.model_dump(exclude_unset=True)
        if data.get("usage") is None:
            data.pop("usage", None)
        assert_valid("CreateChatCompletionStreamResponse", data)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY_TEXT
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["stop"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == CACHE_READ_TOKENS
    assert usage.prompt_tokens >= CACHE_READ_TOKENS + CACHE_CREATION_TOKENS


def test_streamed_tool_call_reassembles(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    with client.chat.completions.stream(model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL]) as s:
        final = s.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    (tool_call,) = choice.message.tool_calls or []
    assert json.loads(tool_call.function.arguments) == TOOL_INPUT
    # The arguments really arrived in many small fragments.
    assert len(claude.calls("/v1/messages")) == 1


def test_error_event_mid_stream_raises_in_the_sdk(
    client: openai.OpenAI, claude: FakeAnthropic
) -> None:
    claude.script(AnthropicFault(error_after=4))
    with pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "Overloaded" in str(info.value)


def test_overloaded_529_is_retried_then_falls_back(
    client: openai.OpenAI, claude: FakeAnthropic, fake: FakeUpstream
) -> None:
    claude.mode = AnthropicFault(status=529)
    raw = client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.headers["X-ProxyAPI-Provider"] == "fake"
    assert raw.headers["X-ProxyAPI-Attempts"] == "3"  # 529, retried 529, then the fallback
    assert len(claude.calls("/v1/messages")) == 2 and len(fake.calls()) == 1


def test_what_anthropic_cannot_do_is_a_clear_400(
    gateway_with_claude: GatewayProcess, claude: FakeAnthropic
) -> None:
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    emb = requests.post(
        f"{gateway_with_claude.url}/v1/embeddings",
        headers=headers,
        timeout=10,
        json={"model": MODEL, "input": "x"},
    )
    assert emb.status_code == 400 and "embeddings" in emb.json()["error"]["message"]
    n2 = requests.post(
        f"{gateway_with_claude.url}/v1/chat/completions",
        headers=headers,
        timeout=10,
        json={"model": MODEL, "messages": MESSAGES, "n": 2},
    )
    assert n2.status_code == 400 and n2.json()["error"]["param"] == "n"
    assert claude.calls("/v1/messages") == []


def test_anthropic_errors_are_openai_shaped(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    claude.script(AnthropicFault(status=400))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.code == "invalid_request_error"
    assert (
        isinstance(info.value.body, dict) and info.value.body.get("type") == "invalid_request_error"
    )


def test_overloaded_at_stream_start_falls_back(
    client: openai.OpenAI, claude: FakeAnthropic, fake: FakeUpstream
) -> None:
    # Anthropic reports overload inside a 200 stream, right after message_start: nothing has
    # reached the client yet, so the next target of the alias answers.
    claude.mode = AnthropicFault(error_after=1)
    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=True
    )
    assert raw.headers["X-ProxyAPI-Provider"] == "fake"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "


PLACE_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


def test_structured_output_and_strict_tools_reach_anthropic(
    client: openai.OpenAI, claude: FakeAnthropic
) -> None:
    # What openai's parse(), pydantic-ai and the Agents SDK send: a strict json_schema and
    # strict tools. Both used to be refused with 400.
    strict_tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": PLACE_SCHEMA, "strict": True},
    }
    completion = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": PLACE_SCHEMA, "strict": True},
        },
        tools=[strict_tool],
    )
    assert completion.choices[0].message.role == "assistant"
    sent = claude.calls("/v1/messages")[-1].body
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": PLACE_SCHEMA}}
    assert sent["tools"] == [{"name": "lookup", "input_schema": PLACE_SCHEMA, "strict": True}]
    assert "response_format" not in sent
    client.chat.completions.create(
        model=MODEL, messages=MESSAGES, response_format={"type": "json_object"}
    )
    sent = claude.calls("/v1/messages")[-1].body
    assert "output_config" not in sent and sent["system"].endswith(
        "nothing else: no prose, no code fences."
    )
