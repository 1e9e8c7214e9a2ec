"""The Anthropic dialect: pure request, answer, error and stream translation, no app or socket.

The fixtures follow the shapes of Anthropic's Messages API reference (a message, its error
body, and the documented event order of a stream: message_start, then per content block
content_block_start / content_block_delta... / content_block_stop, then message_delta and
message_stop, with ping events anywhere).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from proxyapi.config import ProviderConfig
from proxyapi.errors import InvalidRequest, UpstreamMalformed, UpstreamStreamFailed
from proxyapi.providers.anthropic import AnthropicAdapter
from proxyapi.providers.base import USER_AGENT, Operation, UpstreamReply, Usage
from tests.schemas import assert_valid

NOW = 1_700_000_000.0
PROVIDER = ProviderConfig(
    name="claude",
    type="anthropic",
    base_url="https://api.anthropic.com",
    models=("sonnet",),
    api_key="sk-ant-test",
)
UPSTREAM_MODEL = "claude-sonnet-4-5"
MSG_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
HELLO = [{"role": "user", "content": "Hello"}]


def make(**changes: Any) -> AnthropicAdapter:
    return AnthropicAdapter(replace(PROVIDER, **changes), clock=lambda: NOW)


def build(body: dict[str, Any], *, stream: bool = False, **changes: Any) -> dict[str, Any]:
    """Translate a chat request and return the Anthropic JSON body."""
    call = make(**changes).build(
        Operation.CHAT, {"model": "sonnet", "messages": HELLO, **body}, UPSTREAM_MODEL, stream
    )
    assert call.body is not None
    payload = json.loads(call.body)
    assert isinstance(payload, dict)
    return payload


def refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        build(body)
    return info.value


def reply(body: object, status: int = 200) -> UpstreamReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return UpstreamReply(status, {}, raw)


# ---------------------------------------------------------------------- requests


def test_build_targets_messages_with_anthropic_headers() -> None:
    call = make().build(Operation.CHAT, {"model": "sonnet", "messages": HELLO}, "m", stream=False)
    assert (call.method, call.url, call.stream) == (
        "POST",
        "https://api.anthropic.com/v1/messages",
        False,
    )
    assert call.headers == {
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": USER_AGENT,
        "x-api-key": "sk-ant-test",
    }


def test_build_stream_headers_and_flag() -> None:
    call = make().build(Operation.CHAT, {"model": "s", "messages": HELLO}, "m", stream=True)
    assert call.stream
    assert call.headers["accept"] == "text/event-stream"
    assert call.headers["accept-encoding"] == "identity"
    assert call.body is not None and json.loads(call.body)["stream"] is True


def test_build_without_key_and_with_config_headers_applied_last() -> None:
    adapter = make(
        api_key=None,
        anthropic_version="2099-01-01",
        headers={"anthropic-beta": "tools-x", "User-Agent": "mine/1"},
    )
    call = adapter.build(Operation.CHAT, {"model": "s", "messages": HELLO}, "m", stream=False)
    assert "x-api-key" not in call.headers
    assert call.headers["anthropic-version"] == "2099-01-01"
    assert call.headers["anthropic-beta"] == "tools-x"
    # A configured header replaces the built-in one of the same name, whatever its case.
    assert [k for k in call.headers if k.lower() == "user-agent"] == ["User-Agent"]
    assert call.headers["User-Agent"] == "mine/1"


def test_build_minimal_request_uses_provider_max_tokens() -> None:
    assert build({}) == {
        "model": UPSTREAM_MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }
    assert build({}, max_tokens=123)["max_tokens"] == 123


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 60}, 60),
        ({"max_completion_tokens": 60, "max_tokens": 50}, 60),
        ({"max_completion_tokens": None, "max_tokens": 50}, 50),
    ],
)
def test_build_max_tokens(body: dict[str, Any], expected: int) -> None:
    assert build(body)["max_tokens"] == expected


def test_build_maps_sampling_stop_and_user_and_ignores_harmless_parameters() -> None:
    payload = build(
        {
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "user": "user-42",
            "store": True,
            "metadata": {"run": "7"},
            "service_tier": "auto",
            "stream": False,
            "stream_options": None,
            "n": 1,
            "logprobs": False,
            "presence_penalty": 0,
            "frequency_penalty": 0.0,
            "logit_bias": {},
            "response_format": {"type": "text"},
            "modalities": ["text"],
            "seed": None,
        }
    )
    assert payload == {
        "model": UPSTREAM_MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
    }


def test_build_stop_list_becomes_stop_sequences() -> None:
    assert build({"stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in build({"stop": []})


def test_build_temperature_above_one_is_rejected_not_clamped() -> None:
    assert build({"temperature": 1})["temperature"] == 1
    error = refused({"temperature": 1.5})
    assert error.param == "temperature"
    assert "0 to 1" in str(error.description)


def test_build_system_and_developer_messages_join_into_system() -> None:
    payload = build(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": "Never lie."},
            ]
        }
    )
    assert payload["system"] == "Be brief.\n\nUse French.\n\nNever lie."
    assert payload["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "system" not in build({})


def test_build_system_rejects_non_text_parts() -> None:
    error = refused(
        {
            "messages": [
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                *HELLO,
            ]
        }
    )
    assert error.param == "messages"
    assert "image_url" in str(error.description)


def test_build_merges_consecutive_same_role_messages() -> None:
    payload = build(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "three"},
                {"role": "assistant", "content": "four"},
                {"role": "user", "content": "five"},
            ]
        }
    )
    assert payload["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "five"}]},
    ]


def test_build_leading_assistant_turn_passes_through() -> None:
    payload = build(
        {"messages": [{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Yo"}]}
    )
    assert [m["role"] for m in payload["messages"]] == ["assistant", "user"]


TOOL_ARGS = {"city": "Paris", "note": "caf\u00e9 \u2028 \U0001f600"}


def test_build_tool_calls_and_results() -> None:
    payload = build(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": json.dumps(TOOL_ARGS)},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"role": "user", "content": "Thanks; which is warmer?"},
            ]
        }
    )
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": TOOL_ARGS},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "text", "text": "Thanks; which is warmer?"},
            ],
        },
    ]


def test_build_tool_results_open_the_user_turn() -> None:
    payload = build(
        {
            "messages": [
                {"role": "user", "content": "Go"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
                {"role": "user", "content": "(while the tool ran)"},
                {"role": "tool", "tool_call_id": "t1", "content": "done"},
            ]
        }
    )
    # No empty text block for the null content; "" arguments read as no arguments.
    assert payload["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
    }
    assert [b["type"] for b in payload["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "null"])
def test_build_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}
    error = refused(
        {"messages": [*HELLO, {"role": "assistant", "content": "", "tool_calls": [call]}]}
    )
    assert error.param == "messages"
    assert "arguments" in str(error.description)


def test_build_images_from_data_and_http_urls() -> None:
    payload = build(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.jpg", "detail": "auto"},
                        },
                    ],
                }
            ]
        }
    )
    assert payload["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("part", "named"),
    [
        ({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}, "input_audio"),
        ({"type": "file", "file": {"file_id": "f"}}, "file"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,raw"}}, "base64"),
        ({"type": "image_url", "image_url": {"url": "ftp://h/x.png"}}, "http"),
    ],
)
def test_build_rejects_untranslatable_content_parts(part: dict[str, Any], named: str) -> None:
    error = refused({"messages": [{"role": "user", "content": [part]}]})
    assert error.param == "messages"
    assert named in str(error.description)


def test_build_rejects_unknown_role_and_assistant_function_call() -> None:
    assert refused({"messages": [{"role": "function", "content": "x"}]}).param == "messages"
    legacy = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "f", "arguments": "{}"},
    }
    assert refused({"messages": [*HELLO, legacy]}).param == "messages"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
NO_PARAMS_TOOL = {"type": "function", "function": {"name": "now"}}


def test_build_tools() -> None:
    assert build({"tools": [WEATHER_TOOL, NO_PARAMS_TOOL]})["tools"] == [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "weather"}}},
            {"type": "tool", "name": "weather"},
        ),
        ({"parallel_tool_calls": True}, None),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"parallel_tool_calls": False, "tool_choice": "required"},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        (
            {
                "parallel_tool_calls": False,
                "tool_choice": {"type": "function", "function": {"name": "weather"}},
            },
            {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        ),
        ({"parallel_tool_calls": False, "tool_choice": "none"}, {"type": "none"}),
    ],
)
def test_build_tool_choice(extra: dict[str, Any], expected: dict[str, Any] | None) -> None:
    payload = build({"tools": [WEATHER_TOOL], **extra})
    assert payload.get("tool_choice") == expected


def test_build_tool_choice_without_tools() -> None:
    assert "tool_choice" not in build({"tool_choice": "none", "parallel_tool_calls": False})
    assert refused({"tool_choice": "required"}).param == "tool_choice"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ],
)
def test_build_rejects_untranslatable_tools(extra: dict[str, Any], param: str) -> None:
    assert refused(extra).param == param


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_structured_output_becomes_output_config_format() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
    }
    payload = build({"response_format": fmt})
    assert payload["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "response_format" not in payload
    assert "output_config" not in build({"response_format": {"type": "text"}})


def test_json_object_is_asked_for_in_the_system_prompt() -> None:
    payload = build({"response_format": {"type": "json_object"}})
    assert payload["system"].endswith(
        "Respond with a single JSON object and nothing else: no prose, no code fences."
    )
    assert "output_config" not in payload


def test_strict_tools_stay_strict() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": SCHEMA, "strict": True}}
    (spec,) = build({"tools": [tool]})["tools"]
    assert spec == {"name": "f", "input_schema": SCHEMA, "strict": True}
    loose = {"type": "function", "function": {"name": "f", "parameters": SCHEMA}}
    assert "strict" not in build({"tools": [loose]})["tools"][0]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 0),
        ("top_logprobs", 3),
        ("presence_penalty", 0.5),
        ("frequency_penalty", -1),
        ("logit_bias", {"50256": -100}),
        ("response_format", {"type": "json_schema", "json_schema": {"name": "x"}}),
        ("response_format", {"type": "grammar"}),
        ("seed", 42),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("reasoning_effort", "low"),
        ("some_future_parameter", {"a": 1}),
    ],
)
def test_build_rejects_parameters_anthropic_cannot_honour(param: str, value: object) -> None:
    error = refused({param: value})
    assert error.code == 400
    assert error.param == param
    assert f"'{param}'" in str(error.description)
    assert "claude" in str(error.description)


@pytest.mark.parametrize(
    ("op", "words"),
    [
        (Operation.EMBEDDINGS, "no embeddings endpoint"),
        (Operation.COMPLETIONS, "/v1/chat/completions"),
    ],
)
def test_build_rejects_other_operations(op: Operation, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        make().build(op, {"model": "sonnet", "input": "x"}, UPSTREAM_MODEL, stream=False)
    assert info.value.param == "model"
    assert words in str(info.value.description)
    assert "Provider 'claude' (Anthropic)" in str(info.value.description)


def test_build_keeps_unicode_as_utf8() -> None:
    text = "h\u00e9llo \u2028 \u2029 \U0001f600"
    call = make().build(
        Operation.CHAT, {"model": "s", "messages": [{"role": "user", "content": text}]}, "m", False
    )
    assert call.body is not None
    assert text.encode("utf-8") in call.body
    assert json.loads(call.body)["messages"][0]["content"][0]["text"] == text


# ---------------------------------------------------------------------- answers


def message(
    content: list[dict[str, Any]], stop_reason: str | None = "end_turn", **usage: int
) -> dict[str, Any]:
    """An Anthropic Messages API answer."""
    return {
        "id": MSG_ID,
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM_MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 6},
    }


def parse(body: object) -> tuple[dict[str, Any], Usage | None]:
    raw, usage = make().parse(Operation.CHAT, reply(body))
    answer = json.loads(raw)
    assert_valid("CreateChatCompletionResponse", answer)
    return answer, usage


def test_parse_text_answer() -> None:
    answer, usage = parse(message([{"type": "text", "text": "Hello \u2028 \U0001f600"}]))
    assert answer == {
        "id": f"chatcmpl-{MSG_ID}",
        "object": "chat.completion",
        "created": int(NOW),
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello \u2028 \U0001f600",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
    assert usage == Usage(12, 6, 18)


def test_parse_body_is_compact_utf8() -> None:
    raw, _ = make().parse(
        Operation.CHAT, reply(message([{"type": "text", "text": "\u2028\u00e9"}]))
    )
    assert "\u2028\u00e9".encode() in raw
    assert b'", "' not in raw and b'": ' not in raw


def test_parse_text_and_tool_use() -> None:
    answer, _ = parse(
        message(
            [
                {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "weather", "input": TOOL_ARGS},
                {"type": "tool_use", "id": "toolu_01B", "name": "now", "input": {}},
            ],
            "tool_use",
        )
    )
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A",
            "type": "function",
            "function": {
                "name": "weather",
                "arguments": json.dumps(TOOL_ARGS, ensure_ascii=False, separators=(",", ":")),
            },
        },
        {"id": "toolu_01B", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == TOOL_ARGS


def test_parse_tool_use_only_has_null_content() -> None:
    answer, _ = parse(
        message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_use")
    )
    assert answer["choices"][0]["message"]["content"] is None
    answer, _ = parse(message([]))
    assert answer["choices"][0]["message"]["content"] is None
    assert "tool_calls" not in answer["choices"][0]["message"]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("some_new_reason", "stop"),
        (None, "stop"),
    ],
)
def test_parse_stop_reasons(stop_reason: str | None, finish_reason: str) -> None:
    answer, _ = parse(message([{"type": "text", "text": "x"}], stop_reason))
    assert answer["choices"][0]["finish_reason"] == finish_reason


def test_parse_usage_with_cache_tokens() -> None:
    answer, usage = parse(
        message(
            [{"type": "text", "text": "x"}],
            input_tokens=10,
            cache_creation_input_tokens=3,
            cache_read_input_tokens=7,
            output_tokens=5,
        )
    )
    assert answer["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 5,
        "total_tokens": 25,
        "prompt_tokens_details": {"cached_tokens": 7},
    }
    assert usage == Usage(20, 5, 25, cache_read_tokens=7, cache_write_tokens=3)


def test_parse_without_usage() -> None:
    body = message([{"type": "text", "text": "x"}])
    del body["usage"]
    answer, usage = parse(body)
    assert "usage" not in answer and usage is None


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>502</html>",
        b"[1, 2]",
        b"\xff\xfe",
        b'{"type": "message", "content": "text"}',
        b'{"id": "msg_1", "type": "message"}',
    ],
)
def test_parse_rejects_what_is_not_a_message(raw: bytes) -> None:
    with pytest.raises(UpstreamMalformed):
        make().parse(Operation.CHAT, reply(raw))


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (413, "request_too_large", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (529, "overloaded_error", "server_error"),
        (418, "brand_new_error", None),
    ],
)
def test_parse_error_types(status: int, anthropic_type: str, openai_type: str | None) -> None:
    body = {"type": "error", "error": {"type": anthropic_type, "message": "It went wrong."}}
    info = make().parse_error(reply(body, status))
    assert (info.message, info.type, info.param, info.code) == (
        "It went wrong.",
        openai_type,
        None,
        anthropic_type,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"Bad Gateway", "Bad Gateway"),
        (b"", "HTTP 502"),
        (b'{"message": "no error key"}', '{"message": "no error key"}'),
        (b"x" * 1000, "x" * 300),
    ],
)
def test_parse_error_without_anthropic_body(raw: bytes, message: str) -> None:
    info = make().parse_error(reply(raw, 502))
    assert (info.message, info.type, info.code) == (message, None, None)


# ---------------------------------------------------------------------- model list


def test_list_models() -> None:
    adapter = make()
    call = adapter.build_list_models()
    assert call.method == "GET"
    assert call.url.startswith("https://api.anthropic.com/v1/models")
    assert call.headers["x-api-key"] == "sk-ant-test"
    assert call.headers["anthropic-version"] == "2023-06-01"
    listing = {
        "data": [
            {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5"},
            {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5"},
            {"type": "model"},
        ],
        "has_more": False,
        "first_id": "claude-sonnet-4-5",
        "last_id": "claude-haiku-4-5",
    }
    assert adapter.parse_list_models(reply(listing)) == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    with pytest.raises(UpstreamMalformed):
        adapter.parse_list_models(reply({"models": []}))


# ---------------------------------------------------------------------- streams


def event(name: str, data: dict[str, Any], newline: str = "\n") -> bytes:
    """One Anthropic SSE event, with real UTF-8 rather than escapes, as the API sends it."""
    text = f"event: {name}{newline}data: {json.dumps(data, ensure_ascii=False)}{newline}{newline}"
    return text.encode("utf-8")


def message_start(**usage: int) -> tuple[str, dict[str, Any]]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": MSG_ID,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": UPSTREAM_MODEL,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage or {"input_tokens": 25, "output_tokens": 1},
            },
        },
    )


PING = ("ping", {"type": "ping"})


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def text_delta(index: int, text: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "text_delta", "text": text}
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def json_delta(index: int, partial: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, **usage: int) -> tuple[str, dict[str, Any]]:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage or {"output_tokens": 15},
        },
    )


MESSAGE_STOP = ("message_stop", {"type": "message_stop"})


def text_block(index: int, *pieces: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        block_start(index, {"type": "text", "text": ""}),
        *(text_delta(index, p) for p in pieces),
        block_stop(index),
    ]


def tool_block(
    index: int, tool_id: str, name: str, *pieces: str
) -> list[tuple[str, dict[str, Any]]]:
    return [
        block_start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
        *(json_delta(index, p) for p in pieces),
        block_stop(index),
    ]


def stream_of(*events: tuple[str, dict[str, Any]], newline: str = "\n") -> bytes:
    return b"".join(event(name, data, newline) for name, data in events)


def fragments(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


TEXT_STREAM = stream_of(
    message_start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text_delta(0, "Hello"),
    text_delta(0, "!"),
    block_stop(0),
    message_delta("end_turn"),
    MESSAGE_STOP,
)


def translate(
    raw: bytes | list[bytes], *, include_usage: bool | None = None, step: int | None = None
) -> list[bytes]:
    """Feed a whole stream (in pieces of ``step`` bytes, or the given pieces); return the output."""
    body: dict[str, Any] = {"model": "sonnet", "messages": HELLO, "stream": True}
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    translator = make().stream_translator(Operation.CHAT, body)
    pieces = raw if isinstance(raw, list) else [raw]
    if step is not None:
        pieces = [p[i : i + step] for p in pieces for i in range(0, len(p), step)]
    out: list[bytes] = []
    for piece in pieces:
        out.extend(translator.feed(piece))
    out.extend(translator.close())
    return out


def decode(out: list[bytes]) -> list[Any]:
    """Check that every output item is one whole OpenAI SSE event; return the data of each."""
    events: list[Any] = []
    for item in out:
        assert item.startswith(b"data: ") and item.endswith(b"\n\n")
        assert item.count(b"\n") == 2, item
        payload = item[len(b"data: ") : -2]
        if payload == b"[DONE]":
            events.append("[DONE]")
            continue
        data = json.loads(payload)
        if data.get("object") == "chat.completion.chunk":
            assert data["id"] == f"chatcmpl-{MSG_ID}"
            assert data["created"] == int(NOW)
            assert data["model"] == UPSTREAM_MODEL
            assert_valid(
                "CreateChatCompletionStreamResponse",
                {k: v for k, v in data.items() if not (k == "usage" and v is None)},
            )
        events.append(data)
    return events


def deltas(events: list[Any]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e.get("choices")]


def accumulate(events: list[Any]) -> tuple[str, dict[int, dict[str, str]]]:
    """Rebuild the message the way the OpenAI SDKs do: content, and tool calls by index."""
    content = ""
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas(events):
        content += delta.get("content") or ""
        for call in delta.get("tool_calls", []):
            slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
            slot["id"] += call.get("id", "")
            slot["name"] += call.get("function", {}).get("name", "")
            slot["arguments"] += call.get("function", {}).get("arguments", "")
    return content, calls


def test_stream_text_only() -> None:
    events = decode(translate(TEXT_STREAM))
    choice = {"index": 0, "logprobs": None, "finish_reason": None}
    head = {
        "id": f"chatcmpl-{MSG_ID}",
        "object": "chat.completion.chunk",
        "created": int(NOW),
        "model": UPSTREAM_MODEL,
    }
    assert events == [
        {**head, "choices": [{**choice, "delta": {"role": "assistant", "content": ""}}]},
        {**head, "choices": [{**choice, "delta": {"content": "Hello"}}]},
        {**head, "choices": [{**choice, "delta": {"content": "!"}}]},
        {**head, "choices": [{**choice, "delta": {}, "finish_reason": "stop"}]},
        "[DONE]",
    ]


def test_stream_any_chunking_gives_the_same_output() -> None:
    whole = translate(TEXT_STREAM)
    assert translate(TEXT_STREAM, step=1) == whole
    assert translate(TEXT_STREAM, step=7) == whole
    assert translate(TEXT_STREAM.replace(b"\n", b"\r\n"), step=1) == whole
    assert translate(TEXT_STREAM.replace(b"\n", b"\r\n"), step=5) == whole


def test_stream_pings_are_ignored() -> None:
    noisy = stream_of(
        PING,
        message_start(),
        PING,
        *text_block(0, "Hello", "!"),
        PING,
        message_delta("end_turn"),
        PING,
        MESSAGE_STOP,
    )
    assert translate(noisy) == translate(TEXT_STREAM)
    # An SSE comment line is no event either.
    assert translate(b": keep-alive\n\n" + TEXT_STREAM) == translate(TEXT_STREAM)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_stream_tool_arguments_fed_byte_by_byte_reassemble_exactly(newline: str) -> None:
    arguments = json.dumps(TOOL_ARGS, ensure_ascii=False)
    pieces = ["", *fragments(arguments, 3)]  # the API opens with an empty fragment
    assert len(pieces) > 10
    raw = stream_of(
        message_start(),
        *tool_block(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "weather", *pieces),
        message_delta("tool_use", output_tokens=40),
        MESSAGE_STOP,
        newline=newline,
    )
    events = decode(translate(raw, step=1))
    content, calls = accumulate(events)
    assert content == ""
    assert calls == {
        0: {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "weather", "arguments": arguments}
    }
    assert json.loads(calls[0]["arguments"]) == TOOL_ARGS
    assert deltas(events)[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ]
    }
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[-1] == "[DONE]"


def test_stream_text_then_tool_use() -> None:
    raw = stream_of(
        message_start(),
        *text_block(0, "Let me ", "check."),
        *tool_block(1, "toolu_A", "weather", "", '{"city"', ': "Paris"}'),
        message_delta("tool_use"),
        MESSAGE_STOP,
    )
    events = decode(translate(raw))
    content, calls = accumulate(events)
    assert content == "Let me check."
    assert calls == {0: {"id": "toolu_A", "name": "weather", "arguments": '{"city": "Paris"}'}}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_two_tool_uses_get_indices_0_and_1() -> None:
    raw = stream_of(
        message_start(),
        *text_block(0, "Both."),
        *tool_block(1, "toolu_A", "weather", '{"city":', '"Paris"}'),
        *tool_block(2, "toolu_B", "weather", '{"city":', '"Rome"}'),
        message_delta("tool_use"),
        MESSAGE_STOP,
    )
    events = decode(translate(raw, step=2))
    _, calls = accumulate(events)
    assert calls == {
        0: {"id": "toolu_A", "name": "weather", "arguments": '{"city":"Paris"}'},
        1: {"id": "toolu_B", "name": "weather", "arguments": '{"city":"Rome"}'},
    }


def test_stream_tool_without_arguments_still_sends_an_object() -> None:
    raw = stream_of(
        message_start(),
        *tool_block(0, "toolu_N", "now", ""),
        message_delta("tool_use"),
        MESSAGE_STOP,
    )
    _, calls = accumulate(decode(translate(raw)))
    assert calls[0]["arguments"] == "{}"


UNICODE_TEXT = "caf\u00e9 \u2028 line \u2029 para \U0001f600 \u4e2d\u6587"


def test_stream_unicode_split_mid_character_passes_through_exactly() -> None:
    raw = stream_of(
        message_start(),
        *text_block(0, UNICODE_TEXT[:6], UNICODE_TEXT[6:]),
        message_delta("end_turn"),
        MESSAGE_STOP,
    )
    whole = translate(raw)
    assert accumulate(decode(whole))[0] == UNICODE_TEXT
    # Not \u escapes: the characters themselves, U+2028 included.
    assert "\u2028".encode() in b"".join(whole)
    at = raw.index("\u2028".encode())
    cuts = {at + 1, at + 2, raw.index("\U0001f600".encode()) + 1, raw.index("\u00e9".encode()) + 1}
    for cut in sorted(cuts):
        assert translate([raw[:cut], raw[cut:]]) == whole
    assert translate(raw, step=1) == whole


def test_stream_without_include_usage_has_no_usage_key() -> None:
    for events in (
        decode(translate(TEXT_STREAM)),
        decode(translate(TEXT_STREAM, include_usage=False)),
    ):
        assert all("usage" not in e for e in events if isinstance(e, dict))
        assert len(events) == 5


def test_stream_include_usage() -> None:
    raw = stream_of(
        message_start(
            input_tokens=10,
            cache_creation_input_tokens=3,
            cache_read_input_tokens=7,
            output_tokens=1,
        ),
        *text_block(0, "Hi"),
        message_delta("max_tokens", output_tokens=2),
        MESSAGE_STOP,
    )
    events = decode(translate(raw, include_usage=True, step=3))
    assert events[-1] == "[DONE]"
    *chunks, last = events[:-1]
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert last == {
        "id": f"chatcmpl-{MSG_ID}",
        "object": "chat.completion.chunk",
        "created": int(NOW),
        "model": UPSTREAM_MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 2,
            "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 7},
        },
    }


def test_stream_message_delta_counts_replace_message_start_counts() -> None:
    raw = stream_of(
        message_start(input_tokens=0, output_tokens=1),
        *text_block(0, "Hi"),
        message_delta("end_turn", input_tokens=30, output_tokens=9),
        MESSAGE_STOP,
    )
    usage = decode(translate(raw, include_usage=True))[-2]["usage"]
    assert usage == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}


def translate_until_failure(raw: bytes, step: int | None = None) -> tuple[list[bytes], Any]:
    """Feed a stream as the relay does; return what came out and the failure raised."""
    translator = make().stream_translator(
        Operation.CHAT, {"model": "sonnet", "messages": HELLO, "stream": True}
    )
    pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
    out: list[bytes] = []
    try:
        for piece in pieces:
            out.extend(translator.feed(piece))
        out.extend(translator.close())
    except UpstreamStreamFailed as exc:
        return out, exc
    return out, None


def test_stream_error_event_is_raised_after_what_came_before() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    raw = stream_of(
        message_start(),
        *text_block(0, "Hel"),
        ("error", error),
        *text_block(1, "ignored"),
        MESSAGE_STOP,
    )
    for step in (None, 1):
        out, failure = translate_until_failure(raw, step)
        events = decode(out)
        assert "[DONE]" not in events
        assert accumulate(events)[0] == "Hel"
        assert len(events) == 2  # role, "Hel": the error is raised, for the relay to report
        assert isinstance(failure, UpstreamStreamFailed)
        assert failure.payload() == {
            "error": {
                "message": "Overloaded",
                "type": "server_error",
                "param": None,
                "code": "overloaded_error",
            }
        }


def test_stream_error_before_any_content_sends_nothing_so_the_request_can_fall_back() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    out, failure = translate_until_failure(stream_of(message_start(), ("error", error)))
    assert out == [] and isinstance(failure, UpstreamStreamFailed)


def test_stream_cut_before_message_stop_ends_without_done() -> None:
    raw = stream_of(message_start(), *text_block(0, "Hel"))
    events = decode(translate(raw + b'event: content_block_delta\ndata: {"type":"content_bl'))
    assert events[-1] != "[DONE]"
    assert accumulate(events)[0] == "Hel"


def test_stream_last_event_without_blank_line_is_still_translated() -> None:
    raw = stream_of(message_start(), *text_block(0, "Hi"), message_delta("end_turn"), MESSAGE_STOP)
    assert translate(raw.rstrip(b"\n")) == translate(raw)


def test_stream_malformed_event_fails_the_stream() -> None:
    raw = stream_of(message_start()) + b"event: content_block_delta\ndata: {oops\n\n" + TEXT_STREAM
    out, failure = translate_until_failure(raw)
    assert out == []
    assert isinstance(failure, UpstreamStreamFailed)
    assert failure.payload()["error"]["code"] == "upstream_malformed_response"


def test_stream_thinking_and_unknown_events_are_skipped() -> None:
    raw = stream_of(
        message_start(),
        block_start(0, {"type": "thinking", "thinking": ""}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQB"},
            },
        ),
        block_stop(0),
        ("brand_new_event", {"type": "brand_new_event", "x": 1}),
        *text_block(1, "Hello", "!"),
        message_delta("end_turn"),
        MESSAGE_STOP,
    )
    assert translate(raw) == translate(TEXT_STREAM)


def test_stream_translators_are_independent() -> None:
    adapter = make()
    body = {"model": "sonnet", "messages": HELLO, "stream": True}
    first = adapter.stream_translator(Operation.CHAT, body)
    second = adapter.stream_translator(Operation.CHAT, body)
    assert first is not second
    half = len(TEXT_STREAM) // 2
    list(first.feed(TEXT_STREAM[:half]))
    assert b"".join(second.feed(TEXT_STREAM)) == b"".join(translate(TEXT_STREAM))
