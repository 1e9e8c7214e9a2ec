"""Responses API <-> OpenAI Chat Completions: pure request, answer, stream and replay translation.

Shapes are checked by the official references: every translated request against OpenAI's
``CreateChatCompletionRequest`` schema, every Response and stream event against the
``Response`` and ``ResponseStreamEvent`` schemas, and by openai-python itself: its ``Response``
model, its request bodies, and its own SSE decoding and stream accumulation
(``client.responses.stream``) behind a mock transport.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from proxyapi.errors import (
    InvalidRequest,
    ProxyAPIError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRejected,
    UpstreamStreamFailed,
)
from proxyapi.providers.base import ClientBody, StreamTranslator, Usage
from proxyapi.providers.sse import SSEParser
from proxyapi.translate.messages_chat import ChatTarget
from proxyapi.translate.responses_chat import (
    ChatToResponsesStream,
    ResponseEvents,
    chat_request,
    custom_tool_names,
    echo_fields,
    failed_response,
    failure_code,
    new_id,
    replay_response_events,
    response_object,
    response_usage,
)
from tests.chat_chunks import ChatChunks, off_spec, piece, stream_of
from tests.schemas import assert_valid
from tests.sdk_mock import RecordingTransport

MODEL = "gpt-5-codex"
UPSTREAM_MODEL = "deepseek-chat"
CHAT_ID = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
RESPONSE_ID = "resp_" + "ab" * 24
CREATED = 1_741_569_952
REASONING = ChatTarget(reasoning_effort=True)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
# Codex's freeform apply_patch tool (its Lark grammar, shortened).
PATCH_GRAMMAR = r"""start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?
hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change?
filename: /(.+)/
add_line: "+" /(.*)/ LF -> line
change: (change_context | change_line)+
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
%import common.LF
"""
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_GRAMMAR},
}
PATCH = '*** Begin Patch\n*** Add File: hello.txt\n+Hello, "world" \\ 🙂\n*** End Patch\n'
IDS = re.compile(rb"\b(resp|msg|fc|ctc|rs|call)_[0-9a-f]{48}\b")


# ---------------------------------------------------------------------------------- helpers


def translate(
    target: ChatTarget | None = None, *, stream: bool = False, **fields: Any
) -> dict[str, Any]:
    """Translate a Responses request (a minimal one, with ``fields`` added or replaced)."""
    body = {"model": MODEL, "input": "Hello", **fields}
    out = chat_request(body, target or ChatTarget(), stream)
    assert_valid("CreateChatCompletionRequest", out)
    json.dumps(out, allow_nan=False)  # plain JSON, nothing else
    return out


def chat_messages(*items: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = translate(input=list(items), **fields)["messages"]
    return result


def refused(body: dict[str, Any], param: str, *words: str) -> InvalidRequest:
    """Assert the request is refused with a 400 naming ``param`` (and ``words``)."""
    full = {"model": MODEL, "input": "Hello", **body}
    with pytest.raises(InvalidRequest) as info:
        chat_request(full, ChatTarget(), False)
    error = info.value
    assert error.code == 400
    assert error.param == param
    for word in words:
        assert word in str(error.description), error.description
    return error


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": list(parts)}


def said(text: str, role: str = "assistant") -> dict[str, Any]:
    """An assistant message item as OpenAI returns it (and Codex sends it back)."""
    return {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": role,
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def text_in(value: str) -> dict[str, Any]:
    return {"type": "input_text", "text": value}


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_" + call_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output(call_id: str, value: Any, kind: str = "function_call_output") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "output": value}


PNG = "data:image/png;base64,iVBORw0KGgo="
IMAGE = {"type": "input_image", "image_url": PNG, "detail": "auto"}


class MockOpenAI(RecordingTransport):
    """An openai-python client whose transport records requests and answers what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.client = openai.OpenAI(
            api_key="sk-test",
            base_url="http://gateway.test/v1",
            http_client=self.http,
            max_retries=0,
        )


@pytest.fixture
def sdk() -> Iterator[MockOpenAI]:
    mock = MockOpenAI()
    yield mock
    mock.client.close()


def sdk_final(sdk: MockOpenAI, events: list[bytes], step: int | None = None, **kw: Any) -> Any:
    """Replay events through openai-python's stream helper; return its final response."""
    sdk.stream(events, step)
    with sdk.client.responses.stream(model=MODEL, input="Hello", **kw) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    return final


def plain(value: Any) -> Any:
    """An SDK dump without the keys its parsing helpers add."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def check_response(obj: dict[str, Any]) -> Response:
    """Assert a Response is valid by the spec and loads in openai-python; return the model."""
    assert_valid("Response", obj)
    json.dumps(obj, allow_nan=False)
    assert "output_text" not in obj  # the SDK computes it
    model = Response.model_validate(obj)
    assert model.model_dump(exclude_unset=True, by_alias=True) == obj
    return model


# ---------------------------------------------------------------------------------- request


def test_minimal_request() -> None:
    assert translate() == {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}


def test_instructions_lead_as_a_system_message() -> None:
    assert translate(instructions="Be brief.")["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]


def test_empty_instructions_are_left_out() -> None:
    assert translate(instructions="")["messages"] == [{"role": "user", "content": "Hello"}]


def test_instructions_must_be_a_string() -> None:
    refused({"instructions": [text_in("x")]}, "instructions")


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_output_tokens_goes_to_the_targets_field(field: str) -> None:
    out = translate(ChatTarget(max_tokens_field=field), max_output_tokens=2048)
    assert out[field] == 2048
    assert "max_output_tokens" not in out


@pytest.mark.parametrize("value", [0, -1, True, "10", 1.5])
def test_max_output_tokens_must_be_a_positive_integer(value: Any) -> None:
    refused({"max_output_tokens": value}, "max_output_tokens")


@pytest.mark.parametrize("value", [None, "", 7])
def test_model_is_required(value: Any) -> None:
    refused({"model": value}, "model")


def test_sampling_and_user_are_copied() -> None:
    out = translate(temperature=0.2, top_p=0.9, user="user-1")
    assert (out["temperature"], out["top_p"], out["user"]) == (0.2, 0.9, "user-1")


@pytest.mark.parametrize("name", ["temperature", "top_p"])
@pytest.mark.parametrize("value", ["hot", True, [1]])
def test_sampling_must_be_numbers(name: str, value: Any) -> None:
    refused({name: value}, name)


def test_streaming_asks_for_usage() -> None:
    out = translate(stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_the_stream_argument_decides_not_the_body() -> None:
    body = {"model": MODEL, "input": "Hello", "stream": True}
    out = chat_request(body, ChatTarget(), False)
    assert "stream" not in out and "stream_options" not in out
    assert chat_request({**body, "stream": False}, ChatTarget(), True)["stream"] is True


def test_fields_without_effect_are_ignored() -> None:
    out = translate(
        store=False,
        metadata={"k": "v"},
        include=["reasoning.encrypted_content", "web_search_call.action.sources"],
        prompt_cache_key="codex-session-1",
        prompt_cache_retention="24h",
        prompt_cache_options={"ttl": "30m"},
        safety_identifier="u-1",
        service_tier="priority",
        truncation="auto",
        stream_options={"include_obfuscation": False},
        background=False,
        top_logprobs=0,
    )
    assert out == translate()


@pytest.mark.parametrize(
    ("body", "param", "word"),
    [
        ({"background": True}, "background", "background"),
        ({"conversation": "conv_1"}, "conversation", "stored by OpenAI"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "template"),
        ({"previous_response_id": "resp_1"}, "previous_response_id", "input"),
        ({"top_logprobs": 5}, "top_logprobs", "log probabilities"),
        ({"max_tool_calls": 3}, "max_tool_calls", "built-in tools"),
        ({"context_management": [{"type": "compaction"}]}, "context_management", "compact"),
        ({"moderation": {"mode": "on"}}, "moderation", "moderation"),
        ({"include": ["message.output_text.logprobs"]}, "include", "logprobs"),
        ({"include": ["something.new"]}, "include", "something.new"),
        ({"include": "reasoning.encrypted_content"}, "include", "array"),
        ({"truncation": "sometimes"}, "truncation", "auto"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "frequency_penalty"),
        ({"messages": []}, "messages", "messages"),
    ],
)
def test_fields_that_cannot_be_honoured_are_refused_by_name(
    body: dict[str, Any], param: str, word: str
) -> None:
    refused(body, param, word)


def test_fields_sent_as_null_count_as_absent() -> None:
    nulls = dict.fromkeys(
        [
            "instructions",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "text",
            "max_output_tokens",
            "temperature",
            "top_p",
            "reasoning",
            "user",
            "previous_response_id",
            "conversation",
            "prompt",
            "background",
            "top_logprobs",
            "max_tool_calls",
            "include",
            "made_up_field",
        ]
    )
    assert translate(**nulls) == translate()


# ---------------------------------------------------------------------------------- input


def test_message_roles() -> None:
    messages = chat_messages(
        {"role": "developer", "content": "Use tools."},
        {"role": "system", "content": [text_in("One."), text_in("Two.")]},
        {"role": "user", "content": "Hi"},
        {"type": "message", "role": "assistant", "content": "Hello!"},
        user(text_in("Again")),
    )
    assert messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "system", "content": "One.\n\nTwo."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
    ]


def test_a_string_input_is_one_user_message() -> None:
    assert translate(input="What is 2+2?")["messages"] == [
        {"role": "user", "content": "What is 2+2?"}
    ]


def test_user_parts_stay_parts() -> None:
    messages = chat_messages(
        user(
            text_in("Look:"),
            IMAGE,
            {"type": "input_image", "image_url": "https://example.com/a.jpg", "detail": "low"},
            {"type": "input_image", "image_url": PNG, "detail": "original"},
            {
                "type": "input_file",
                "filename": "paper.pdf",
                "file_data": "data:application/pdf;base64,JVBERi0x",
            },
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0y"},
        )
    )
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": PNG}},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.jpg", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
                {
                    "type": "file",
                    "file": {
                        "file_data": "data:application/pdf;base64,JVBERi0x",
                        "filename": "paper.pdf",
                    },
                },
                {
                    "type": "file",
                    "file": {
                        "file_data": "data:application/pdf;base64,JVBERi0y",
                        "filename": "document.pdf",
                    },
                },
            ],
        }
    ]


@pytest.mark.parametrize(
    ("part", "param", "word"),
    [
        ({"type": "input_image", "file_id": "file-1", "detail": "auto"}, "file_id", "file_id"),
        ({"type": "input_image", "detail": "auto"}, "image_url", "URL"),
        ({"type": "input_image", "image_url": PNG, "detail": "huge"}, "detail", "original"),
        ({"type": "input_file", "file_id": "file-1"}, "file_id", "file_data"),
        ({"type": "input_file", "file_url": "https://x/y.pdf"}, "file_url", "file_url"),
        ({"type": "input_audio", "input_audio": {"data": "x"}}, "type", "audio"),
        ({"type": "output_text", "text": "x"}, "type", "output_text"),
        ({"text": "no type"}, "", "type"),
        ({"type": "input_text"}, "text", "string"),
    ],
)
def test_user_parts_that_cannot_be_translated_are_refused(
    part: dict[str, Any], param: str, word: str
) -> None:
    at = "input.0.content.1"
    refused({"input": [user(text_in("x"), part)]}, f"{at}.{param}" if param else at, word)


def test_an_empty_user_message_is_refused() -> None:
    refused({"input": [user()]}, "input.0.content")


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_messages_take_text_only(role: str) -> None:
    refused(
        {"input": [{"role": role, "content": [text_in("x"), IMAGE]}]},
        "input.0.content.1.type",
        "text only",
    )


def test_empty_system_messages_are_left_out() -> None:
    assert chat_messages({"role": "system", "content": ""}, {"role": "user", "content": "Hi"}) == [
        {"role": "user", "content": "Hi"}
    ]


def test_assistant_parts_are_joined_with_nothing_and_refusals_are_text() -> None:
    item = said("Hello")
    item["content"] += [
        {"type": "output_text", "text": ", world", "annotations": []},
        {"type": "refusal", "refusal": " (I won't say more.)"},
    ]
    assert chat_messages(item)[0] == {
        "role": "assistant",
        "content": "Hello, world (I won't say more.)",
    }


def test_an_empty_assistant_message_is_left_out() -> None:
    item = {"type": "message", "role": "assistant", "content": []}
    assert chat_messages(item, {"role": "user", "content": "Hi"}) == [
        {"role": "user", "content": "Hi"}
    ]


def test_assistant_images_are_refused() -> None:
    item = {"type": "message", "role": "assistant", "content": [IMAGE]}
    refused({"input": [item]}, "input.0.content.0.type", "assistant")


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"role": "tool", "content": "x"}, "input.0.role"),
        ({"role": "user", "content": 7}, "input.0.content"),
        ("Hello", "input.0"),
        ({"content": "no role, no type"}, "input.0.type"),
    ],
)
def test_malformed_messages_are_refused(item: Any, param: str) -> None:
    refused({"input": [item]}, param)


@pytest.mark.parametrize("value", [None, 7, {"role": "user"}])
def test_input_must_be_a_string_or_items(value: Any) -> None:
    refused({"input": value}, "input")


def test_an_input_with_nothing_to_send_is_refused() -> None:
    refused({"input": []}, "input", "nothing")
    refused({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input", "nothing")


def test_a_tool_round_trip_keeps_chats_order() -> None:
    messages = chat_messages(
        {"role": "user", "content": "Weather in Paris and Rome?"},
        said("Let me check."),
        function_call("call_1", "get_weather", '{"city":"Paris"}'),
        function_call("call_2", "get_weather", '{"city":"Rome"}'),
        output("call_1", "18C"),
        output("call_2", '{"temp": 21}'),
        said("Paris 18C, Rome 21C."),
        {"role": "user", "content": "Thanks"},
        tools=[WEATHER],
    )
    assert messages == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "Paris 18C, Rome 21C."},
        {"role": "user", "content": "Thanks"},
    ]


def test_calls_in_separate_turns_stay_separate() -> None:
    messages = chat_messages(
        {"role": "user", "content": "Go"},
        function_call("c1", "get_weather", "{}"),
        output("c1", "a"),
        function_call("c2", "get_weather", ""),
        output("c2", "b"),
        tools=[WEATHER],
    )
    assert [(m["role"], len(m.get("tool_calls", []))) for m in messages] == [
        ("user", 0),
        ("assistant", 1),
        ("tool", 0),
        ("assistant", 1),
        ("tool", 0),
    ]
    assert messages[1]["content"] is None
    assert messages[3]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_reasoning_items_are_dropped_without_breaking_the_call_message() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Thinking"}],
        "encrypted_content": "gAAAAABo...",
    }
    messages = chat_messages(
        {"role": "user", "content": "Go"},
        reasoning,
        said("Checking."),
        reasoning,
        function_call("c1", "get_weather", "{}"),
        output("c1", "ok"),
        tools=[WEATHER],
    )
    assert messages[1]["content"] == "Checking."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1"]
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}


def test_text_after_calls_joins_their_message_so_the_outputs_follow_it() -> None:
    messages = chat_messages(
        {"role": "user", "content": "Go"},
        said("First."),
        function_call("c1", "get_weather", "{}"),
        said("Second."),
        output("c1", "ok"),
        tools=[WEATHER],
    )
    assert messages[1]["content"] == "First.\n\nSecond."
    assert messages[2]["role"] == "tool"


def test_an_output_of_an_unknown_call_is_refused() -> None:
    refused({"input": [output("call_9", "x")]}, "input.0.call_id", "call_9")


def test_tool_output_parts_text_joined_images_after_the_tool_messages() -> None:
    messages = chat_messages(
        {"role": "user", "content": "Screenshots?"},
        function_call("c1", "shot", "{}"),
        function_call("c2", "shot", "{}"),
        output("c1", [text_in("Here"), text_in("it is"), IMAGE]),
        output("c2", [IMAGE]),
        said("Both shown."),
    )
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "Here\nit is"},
        {"role": "tool", "tool_call_id": "c2", "content": ""},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "(images returned by tool c1)"},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "text", "text": "(images returned by tool c2)"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
        {"role": "assistant", "content": "Both shown."},
    ]


def test_tool_output_files_are_named_in_their_label() -> None:
    pdf = {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,x"}
    messages = chat_messages(
        {"role": "user", "content": "Go"},
        function_call("c1", "fetch", "{}"),
        output("c1", [IMAGE, pdf]),
    )
    assert messages[-1]["content"][0] == {
        "type": "text",
        "text": "(images and files returned by tool c1)",
    }


@pytest.mark.parametrize(
    ("value", "param"),
    [(7, "input.1.output"), ([{"type": "refusal", "refusal": "x"}], "input.1.output.0.type")],
)
def test_malformed_tool_outputs_are_refused(value: Any, param: str) -> None:
    refused({"input": [function_call("c1", "f", "{}"), output("c1", value)]}, param)


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input.0.call_id"),
        ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input.0.name"),
        ({"type": "function_call", "call_id": "c", "name": "f"}, "input.0.arguments"),
        ({"type": "custom_tool_call", "call_id": "c", "name": "f"}, "input.0.input"),
    ],
)
def test_malformed_calls_are_refused(item: dict[str, Any], param: str) -> None:
    refused({"input": [item]}, param)


def test_a_custom_tool_round_trip() -> None:
    messages = chat_messages(
        {"role": "user", "content": "Add hello.txt"},
        {
            "type": "custom_tool_call",
            "id": "ctc_1",
            "call_id": "call_p",
            "name": "apply_patch",
            "input": PATCH,
        },
        output("call_p", "Done!", kind="custom_tool_call_output"),
        tools=[APPLY_PATCH],
    )
    arguments = messages[1]["tool_calls"][0]["function"]["arguments"]
    assert messages[1]["tool_calls"] == [
        {
            "id": "call_p",
            "type": "function",
            "function": {"name": "apply_patch", "arguments": arguments},
        }
    ]
    assert json.loads(arguments) == {"input": PATCH}
    assert arguments == json.dumps({"input": PATCH}, ensure_ascii=False, separators=(",", ":"))
    assert messages[2] == {"role": "tool", "tool_call_id": "call_p", "content": "Done!"}


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        ("item_reference", "stored by OpenAI"),
        ("compaction", "only OpenAI reads"),
        ("web_search_call", "only OpenAI runs"),
        ("file_search_call", "only OpenAI runs"),
        ("computer_call", "only OpenAI runs"),
        ("local_shell_call", "only OpenAI runs"),
        ("shell_call", "only OpenAI runs"),
        ("apply_patch_call", "only OpenAI runs"),
        ("image_generation_call", "only OpenAI runs"),
        ("code_interpreter_call", "only OpenAI runs"),
        ("mcp_call", "only OpenAI runs"),
        ("mcp_list_tools", "only OpenAI runs"),
        ("made_up", "not an item type"),
    ],
)
def test_items_only_openai_can_take_are_refused_by_type(kind: str, word: str) -> None:
    refused({"input": [{"type": kind, "id": "x_1"}]}, "input.0.type", repr(kind), word)


# ---------------------------------------------------------------------------------- tools


def test_function_tools() -> None:
    bare = {"type": "function", "name": "ping", "parameters": None, "strict": None}
    loose = {**WEATHER, "strict": False, "defer_loading": False}
    out = translate(tools=[WEATHER, bare, loose])
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}},
        },
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["parameters"],
                "strict": False,
            },
        },
    ]


def test_a_custom_tool_becomes_a_function_of_one_string_with_its_grammar() -> None:
    (tool,) = translate(tools=[APPLY_PATCH])["tools"]
    function = tool["function"]
    assert tool["type"] == "function"
    assert function["name"] == "apply_patch"
    assert function["parameters"] == {
        "type": "object",
        "properties": {
            "input": {"type": "string", "description": "The whole input of the tool, as free text."}
        },
        "required": ["input"],
        "additionalProperties": False,
    }
    description = function["description"]
    assert description.startswith("Use the `apply_patch` tool to edit files.\n\n")
    assert "free text" in description
    assert "lark grammar" in description
    assert PATCH_GRAMMAR in description
    assert "strict" not in function


@pytest.mark.parametrize(
    "fmt",
    [None, {"type": "text"}, {"type": "grammar", "syntax": "regex", "definition": r"\d+"}],
)
def test_custom_tool_formats(fmt: Any) -> None:
    tool: dict[str, Any] = {"type": "custom", "name": "calc"}
    if fmt is not None:
        tool["format"] = fmt
    description = translate(tools=[tool])["tools"][0]["function"]["description"]
    assert "free text" in description
    assert ("regex grammar:\n\\d+" in description) == (fmt is not None and fmt["type"] == "grammar")


@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "grammar", "syntax": "ebnf", "definition": "x"},
        {"type": "grammar", "syntax": "lark"},
        {"type": "json"},
    ],
)
def test_malformed_custom_tool_formats_are_refused(fmt: dict[str, Any]) -> None:
    refused({"tools": [{"type": "custom", "name": "calc", "format": fmt}]}, "tools", "format")


@pytest.mark.parametrize(
    ("tool", "word"),
    [
        ({"type": "web_search"}, "runs on OpenAI's servers"),
        ({"type": "web_search_preview"}, "runs on OpenAI's servers"),
        ({"type": "file_search", "vector_store_ids": ["vs_1"]}, "runs on OpenAI's servers"),
        ({"type": "computer_use_preview", "environment": "browser"}, "OpenAI's servers"),
        ({"type": "code_interpreter", "container": {"type": "auto"}}, "OpenAI's servers"),
        ({"type": "image_generation"}, "runs on OpenAI's servers"),
        ({"type": "mcp", "server_label": "deepwiki"}, "runs on OpenAI's servers"),
        ({"type": "tool_search"}, "runs on OpenAI's servers"),
        ({"type": "local_shell"}, "built into OpenAI's models"),
        ({"type": "shell"}, "built into OpenAI's models"),
        ({"type": "apply_patch"}, "built into OpenAI's models"),
        ({"type": "namespace", "name": "ns", "description": "d", "tools": []}, "namespace"),
    ],
)
def test_builtin_tools_are_refused_by_name(tool: dict[str, Any], word: str) -> None:
    refused({"tools": [WEATHER, tool]}, "tools", "tools.1", word)


@pytest.mark.parametrize(
    "tools",
    [
        "get_weather",
        ["get_weather"],
        [{"type": "function"}],
        [{"type": "function", "name": ""}],
        [{"type": "function", "name": "f", "parameters": "x"}],
        [{"type": "function", "name": "f", "strict": "yes"}],
        [{"type": "function", "name": "f", "description": 1}],
        [{"type": "custom"}],
        [{"name": "no_type"}],
    ],
)
def test_malformed_tools_are_refused(tools: Any) -> None:
    refused({"tools": tools}, "tools")


def test_custom_tool_names() -> None:
    body = {"tools": [WEATHER, APPLY_PATCH, {"type": "custom", "name": "calc"}, "junk"]}
    assert custom_tool_names(body) == frozenset({"apply_patch", "calc"})
    assert custom_tool_names({}) == frozenset()
    assert custom_tool_names({"tools": None}) == frozenset()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (
            {"type": "custom", "name": "apply_patch"},
            {"type": "function", "function": {"name": "apply_patch"}},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    assert translate(tools=[WEATHER, APPLY_PATCH], tool_choice=choice)["tool_choice"] == expected


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "x"}]},
        {"type": "web_search_preview"},
        {"type": "mcp", "server_label": "x"},
        {"type": "function", "name": "not_declared"},
        {"type": "function"},
        "any",
        7,
    ],
)
def test_other_tool_choices_are_refused(choice: Any) -> None:
    refused({"tools": [WEATHER], "tool_choice": choice}, "tool_choice")


@pytest.mark.parametrize("choice", ["auto", "none"])
def test_tool_choice_without_tools_is_left_out(choice: str) -> None:
    assert "tool_choice" not in translate(tool_choice=choice)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_tool_choice_asking_for_a_tool_without_tools_is_refused(choice: Any) -> None:
    refused({"tool_choice": choice}, "tool_choice")


def test_parallel_tool_calls_go_with_tools_only() -> None:
    assert translate(tools=[WEATHER], parallel_tool_calls=False)["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in translate(parallel_tool_calls=False)
    refused({"parallel_tool_calls": "no"}, "parallel_tool_calls")


# ---------------------------------------------------------------------------------- options


def test_text_format_json_schema_becomes_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    fmt = {
        "type": "json_schema",
        "name": "answer",
        "description": "The answer",
        "schema": schema,
        "strict": True,
    }
    out = translate(text={"format": fmt, "verbosity": "low"})
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": schema,
            "description": "The answer",
            "strict": True,
        },
    }
    assert "verbosity" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        ({"format": {"type": "text"}}, None),
        ({"verbosity": "high"}, None),
        ({}, None),
    ],
)
def test_other_text_formats(text: dict[str, Any], expected: Any) -> None:
    assert translate(text=text).get("response_format") == expected


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("json", "text"),
        ({"format": {"type": "json_schema", "name": "x"}}, "text.format"),
        ({"format": {"type": "json_schema", "schema": {}}}, "text.format"),
        (
            {"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": "y"}},
            "text.format",
        ),
        ({"format": {"type": "grammar"}}, "text.format"),
        ({"verbosity": "loud"}, "text.verbosity"),
        ({"stop": ["x"]}, "text.stop"),
    ],
)
def test_malformed_text_is_refused(text: Any, param: str) -> None:
    refused({"text": text}, param)


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("none", "none"),
        ("minimal", "minimal"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_reasoning_effort(effort: str, expected: str) -> None:
    out = translate(REASONING, reasoning={"effort": effort, "summary": "auto"})
    assert out["reasoning_effort"] == expected


def test_reasoning_is_dropped_for_a_target_without_reasoning_effort() -> None:
    assert translate(reasoning={"effort": "high", "summary": "detailed"}) == translate()


def test_reasoning_without_effort_sends_nothing() -> None:
    assert (
        translate(REASONING, reasoning={"summary": "auto", "context": "all_turns"}) == translate()
    )


@pytest.mark.parametrize(
    ("reasoning", "param"),
    [
        ("high", "reasoning"),
        ({"effort": "extreme"}, "reasoning.effort"),
        ({"summary": "long"}, "reasoning.summary"),
        ({"budget_tokens": 1000}, "reasoning.budget_tokens"),
    ],
)
def test_malformed_reasoning_is_refused_whatever_the_target(reasoning: Any, param: str) -> None:
    refused({"reasoning": reasoning}, param)


def test_a_codex_request_translates_to_valid_chat() -> None:
    body = {
        "model": MODEL,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [text_in("<permissions>")]},
            {"type": "message", "role": "user", "content": [text_in("Add hello.txt")]},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "I will patch."}],
                "encrypted_content": None,
            },
            {
                "type": "custom_tool_call",
                "id": "ctc_1",
                "status": "completed",
                "call_id": "call_p",
                "name": "apply_patch",
                "input": PATCH,
            },
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."},
            function_call("call_s", "shell", '{"command":["ls"]}'),
            {"type": "function_call_output", "call_id": "call_s", "output": "hello.txt\n"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "description": "Runs a shell command",
                "strict": False,
                "parameters": {
                    "type": "object",
                    "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                    "required": ["command"],
                    "additionalProperties": False,
                },
            },
            APPLY_PATCH,
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199-session",
        "text": {"verbosity": "low"},
    }
    out = chat_request(body, REASONING, True)
    assert_valid("CreateChatCompletionRequest", out)
    assert [m["role"] for m in out["messages"]] == [
        "system",
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert out["reasoning_effort"] == "medium"
    assert out["parallel_tool_calls"] is False
    assert out["stream_options"] == {"include_usage": True}


def test_openai_pythons_own_requests_translate(sdk: MockOpenAI) -> None:
    sdk.answer(response_object(chat_completion("Hi"), {"model": MODEL}, RESPONSE_ID, CREATED))
    sdk.client.responses.create(
        model=MODEL,
        instructions="Be brief.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}, IMAGE]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        tools=[WEATHER, APPLY_PATCH],
        tool_choice={"type": "custom", "name": "apply_patch"},
        text={"format": {"type": "json_object"}, "verbosity": "medium"},
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=512,
        temperature=0.5,
        store=False,
        metadata={"a": "b"},
        truncation="disabled",
    )
    (body,) = sdk.requests
    out = chat_request(body, REASONING, False)
    assert_valid("CreateChatCompletionRequest", out)
    assert out["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert out["max_tokens"] == 512
    assert out["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool"]


# ---------------------------------------------------------------------------------- answer


def chat_completion(
    content: str | None = "Hello!",
    finish_reason: str = "stop",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    model: str | None = UPSTREAM_MODEL,
    **message: Any,
) -> dict[str, Any]:
    """An OpenAI chat.completion, checked by schema (before off-spec extras are added)."""
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
    }
    if model is not None:
        assert_valid("CreateChatCompletionResponse", body)
    msg.update(message)  # reasoning_content and the like, which the spec does not have
    return body


def call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def answer(chat: dict[str, Any], **request: Any) -> dict[str, Any]:
    body = {"model": MODEL, "input": "Hello", **request}
    out = response_object(chat, body, RESPONSE_ID, CREATED)
    check_response(out)
    return out


def test_text_answer() -> None:
    out = answer(chat_completion("Hello!"))
    (item,) = out["output"]
    assert re.fullmatch(r"msg_[0-9a-f]{48}", item["id"])
    assert out == {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "completed_at": CREATED,
        "error": None,
        "incomplete_details": None,
        "background": False,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": {},
        "model": UPSTREAM_MODEL,
        "output": [
            {
                "type": "message",
                "id": item["id"],
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}
                ],
            }
        ],
        "usage": {
            "input_tokens": 19,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 29,
        },
    }
    assert Response.model_validate(out).output_text == "Hello!"


@pytest.mark.parametrize("model", [None, ""])
def test_answer_model_falls_back_to_the_requested_one(model: Any) -> None:
    assert answer(chat_completion(model=model))["model"] == MODEL


def test_tool_call_answer() -> None:
    chat = chat_completion(
        "Checking.",
        "tool_calls",
        tool_calls=[
            call("call_1", "get_weather", '{"city":"Paris"}'),
            call("call_2", "get_weather", ""),
            {"id": "x", "type": "custom", "custom": {"name": "y", "input": "z"}},
        ],
    )
    out = answer(chat, tools=[WEATHER])
    message, first, second = out["output"]
    assert message["type"] == "message"
    assert re.fullmatch(r"fc_[0-9a-f]{48}", first["id"])
    assert first == {
        "type": "function_call",
        "id": first["id"],
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
        "status": "completed",
    }
    assert (second["call_id"], second["arguments"]) == ("call_2", "{}")
    assert out["status"] == "completed"
    assert out["tools"] == [WEATHER]


def test_tool_call_arguments_sent_as_an_object_or_without_an_id() -> None:
    chat = chat_completion(None, "tool_calls", tool_calls=[call("c", "f", "{}")])
    chat["choices"][0]["message"]["tool_calls"] = [
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    ]
    (item,) = answer(chat)["output"]
    assert item["arguments"] == '{"a":1}'
    assert re.fullmatch(r"call_[0-9a-f]{48}", item["call_id"])


def test_legacy_function_call_becomes_a_function_call() -> None:
    chat = chat_completion(None, "function_call", function_call={"name": "f", "arguments": "{}"})
    (item,) = answer(chat)["output"]
    assert (item["type"], item["name"], item["arguments"]) == ("function_call", "f", "{}")


@pytest.mark.parametrize(
    ("arguments", "tool_input"),
    [
        (json.dumps({"input": PATCH}), PATCH),
        ('{"input": ""}', ""),
        ('{"input": "line\nbreak"}', "line\nbreak"),  # a raw control character, leniently read
        ("*** Begin Patch raw", "*** Begin Patch raw"),
        ('{"patch": "x"}', '{"patch": "x"}'),
        ('{"input": 7}', '{"input": 7}'),
        ("", "{}"),
    ],
)
def test_custom_tool_call_answer(arguments: str, tool_input: str) -> None:
    chat = chat_completion(
        None, "tool_calls", tool_calls=[call("call_p", "apply_patch", arguments)]
    )
    out = answer(chat, tools=[APPLY_PATCH])
    (item,) = out["output"]
    assert re.fullmatch(r"ctc_[0-9a-f]{48}", item["id"])
    assert item == {
        "type": "custom_tool_call",
        "id": item["id"],
        "call_id": "call_p",
        "name": "apply_patch",
        "input": tool_input,
    }


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_incomplete_answers(finish_reason: str, reason: str) -> None:
    out = answer(chat_completion("Once upon a", finish_reason))
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": reason}
    assert out["completed_at"] is None
    assert out["output"][0]["status"] == "incomplete"


def test_only_the_item_the_answer_was_cut_in_is_incomplete() -> None:
    chat = chat_completion("Text", "length", tool_calls=[call("c", "get_weather", '{"ci')])
    message, item = answer(chat, tools=[WEATHER])["output"]
    assert (message["status"], item["status"]) == ("completed", "incomplete")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_text_leads_as_a_reasoning_item(field: str) -> None:
    out = answer(chat_completion("42", **{field: "Six times seven."}))
    reasoning, message = out["output"]
    assert re.fullmatch(r"rs_[0-9a-f]{48}", reasoning["id"])
    assert reasoning == {
        "type": "reasoning",
        "id": reasoning["id"],
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Six times seven."}],
    }
    assert message["content"][0]["text"] == "42"


def test_both_reasoning_fields_give_one_item() -> None:
    out = answer(chat_completion("42", reasoning_content="A", reasoning="A"))
    assert [item["type"] for item in out["output"]] == ["reasoning", "message"]


def test_refusal_is_a_refusal_part() -> None:
    chat = chat_completion(None)
    chat["choices"][0]["message"]["refusal"] = "I can't help with that."
    (item,) = answer(chat)["output"]
    assert item["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert Response.model_validate(answer(chat)).output_text == ""


@pytest.mark.parametrize("content", [None, ""])
def test_empty_answer_has_no_output(content: str | None) -> None:
    assert answer(chat_completion(content))["output"] == []


def test_content_given_as_parts_is_joined() -> None:
    chat = chat_completion(None)
    chat["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "Hel"},
        {"type": "text", "text": "lo"},
    ]
    assert answer(chat)["output"][0]["content"][0]["text"] == "Hello"


def test_answer_without_usage_leaves_usage_out() -> None:
    chat = chat_completion()
    del chat["usage"]
    assert "usage" not in answer(chat)


@pytest.mark.parametrize(
    "chat",
    [
        {"object": "chat.completion"},
        {"choices": []},
        {"choices": ["x"]},
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
    ],
)
def test_what_is_not_a_chat_completion_is_malformed(chat: dict[str, Any]) -> None:
    with pytest.raises(UpstreamMalformed):
        response_object(chat, {"model": MODEL}, RESPONSE_ID, CREATED)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, None),
        ("junk", None),
        (
            {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 120,
            },
        ),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 15},
                "completion_tokens_details": {"reasoning_tokens": 12},
            },
            {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 15},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 12},
                "total_tokens": 120,
            },
        ),
        (
            {
                "prompt_tokens": -1,
                "completion_tokens": True,
                "prompt_tokens_details": None,
                "completion_tokens_details": "x",
            },
            {
                "input_tokens": 0,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 0,
            },
        ),
    ],
)
def test_response_usage(usage: Any, expected: dict[str, Any] | None) -> None:
    assert response_usage(usage) == expected
    if expected is not None:
        assert_valid("ResponseUsage", expected)


def test_echo_fields_report_the_request() -> None:
    fmt = {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": True}
    request = {
        "model": MODEL,
        "instructions": "Be brief.",
        "max_output_tokens": 100,
        "parallel_tool_calls": False,
        "reasoning": {"effort": "xhigh", "summary": "auto"},
        "store": False,
        "temperature": 0.3,
        "top_p": 0.8,
        "text": {"format": fmt, "verbosity": "low"},
        "tool_choice": {"type": "function", "name": "f"},
        "tools": [{"type": "function", "name": "f"}, APPLY_PATCH],
        "truncation": "auto",
        "metadata": {"k": "v"},
        "user": "u-1",
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "service_tier": "flex",
    }
    fields = echo_fields(request)
    assert fields == {
        "background": False,
        "instructions": "Be brief.",
        "max_output_tokens": 100,
        "max_tool_calls": None,
        "parallel_tool_calls": False,
        "previous_response_id": None,
        "prompt_cache_key": "k",
        "reasoning": {"effort": "xhigh", "summary": "auto"},
        "safety_identifier": "s",
        "service_tier": "default",
        "store": False,
        "temperature": 0.3,
        "text": {"format": fmt, "verbosity": "low"},
        "tool_choice": {"type": "function", "name": "f"},
        "tools": [
            {
                "type": "function",
                "name": "f",
                "parameters": {"type": "object", "properties": {}},
                "strict": None,
            },
            APPLY_PATCH,
        ],
        "top_logprobs": 0,
        "top_p": 0.8,
        "truncation": "disabled",
        "metadata": {"k": "v"},
        "user": "u-1",
    }
    check_response(response_object(chat_completion(), request, RESPONSE_ID, CREATED))


def test_a_client_bodys_echo_fields_win() -> None:
    body = ClientBody(
        {"model": MODEL, "input": []}, b"", {}, echo={"previous_response_id": "resp_prev"}
    )
    assert echo_fields(body)["previous_response_id"] == "resp_prev"
    out = response_object(chat_completion(), body, RESPONSE_ID, CREATED)
    assert check_response(out).previous_response_id == "resp_prev"


def test_answer_through_openai_python(sdk: MockOpenAI) -> None:
    chat = chat_completion(
        "Patching.",
        "tool_calls",
        tool_calls=[call("call_p", "apply_patch", json.dumps({"input": PATCH}))],
        reasoning_content="Plan.",
    )
    sdk.answer(
        response_object(chat, {"model": MODEL, "tools": [APPLY_PATCH]}, RESPONSE_ID, CREATED)
    )
    result = sdk.client.responses.create(model=MODEL, input="Add hello.txt", tools=[APPLY_PATCH])
    assert result.id == RESPONSE_ID
    assert result.output_text == "Patching."
    assert [item.type for item in result.output] == ["reasoning", "message", "custom_tool_call"]
    patch = result.output[2]
    assert patch.type == "custom_tool_call" and patch.input == PATCH
    assert result.usage is not None and result.usage.total_tokens == 29


def test_new_ids() -> None:
    for prefix in ("resp", "msg", "fc", "ctc", "rs"):
        value = new_id(prefix)
        assert re.fullmatch(prefix + r"_[0-9a-f]{48}", value)
    assert new_id("resp") != new_id("resp")


# ---------------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UpstreamRejected(429, "Slow down.", type="rate_limit_error"), "rate_limit_exceeded"),
        (
            UpstreamStreamFailed("Busy", type="x", error_code="rate_limit_exceeded"),
            "rate_limit_exceeded",
        ),
        (UpstreamStreamFailed("Busy", type="rate_limit_error"), "rate_limit_exceeded"),
        (
            UpstreamRejected(429, "Out of credit.", error_code="insufficient_quota"),
            "insufficient_quota",
        ),
        (
            UpstreamRejected(400, "Too long.", error_code="context_length_exceeded"),
            "context_length_exceeded",
        ),
        (
            UpstreamRejected(400, "This model's maximum context length is 8192 tokens."),
            "context_length_exceeded",
        ),
        (
            UpstreamRejected(400, "prompt is too long: 210000 tokens > 200000 maximum"),
            "context_length_exceeded",
        ),
        (UpstreamStreamFailed("Input exceeds the context window."), "context_length_exceeded"),
        (UpstreamRejected(400, "Invalid value for 'tools'."), "invalid_prompt"),
        (InvalidRequest("Bad."), "invalid_prompt"),
        (UpstreamError("The provider failed."), "server_error"),
        (UpstreamStreamFailed("overloaded", type="overloaded_error"), "server_error"),
        (ProxyAPIError(), "server_error"),
    ],
)
def test_failure_code(exc: ProxyAPIError, code: str) -> None:
    assert failure_code(exc) == code


def spec_valid_failure(obj: dict[str, Any]) -> None:
    """The spec's error code enum lacks codes the live API sends (and Codex reads)."""
    obj = copy.deepcopy(obj)
    if obj["response"]["error"]["code"] in ("context_length_exceeded", "insufficient_quota"):
        obj["response"]["error"]["code"] = "server_error"
    assert_valid("ResponseStreamEvent", obj)


def test_failed_response() -> None:
    exc = UpstreamError("The provider failed with key sk-secret-1.")
    out = failed_response(RESPONSE_ID, CREATED, {"model": MODEL}, exc, ["sk-secret-1"])
    check_response(out)
    assert out["status"] == "failed"
    assert out["output"] == []
    assert out["completed_at"] is None
    assert out["error"] == {
        "code": "server_error",
        "message": "The provider failed with key [redacted].",
    }


@pytest.mark.parametrize(
    ("headers", "ending"),
    [
        ({"Retry-After": "20"}, "Slow down. Please try again in 20s."),
        ({"retry-after": "1.5"}, "Slow down. Please try again in 1.5s."),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, "Slow down."),
        ({"Retry-After": "-3"}, "Slow down."),
        ({}, "Slow down."),
    ],
)
def test_a_rate_limit_says_when_to_try_again(headers: dict[str, str], ending: str) -> None:
    exc = UpstreamRejected(429, "Slow down.", headers=headers)
    out = failed_response(RESPONSE_ID, CREATED, {"model": MODEL}, exc)
    assert out["error"] == {"code": "rate_limit_exceeded", "message": ending}
    if "20s" in ending:
        # Codex's own pattern for the delay.
        wait = re.search(r"(?i)try again in\s*(\d+(?:\.\d+)?)\s*(s|ms|seconds?)", ending)
        assert wait is not None and wait.group(1) == "20"


# ---------------------------------------------------------------------------------- stream


_CHUNKS = ChatChunks(UPSTREAM_MODEL, CHAT_ID, CREATED)
chunk, role_chunk, finish_chunk = _CHUNKS.chunk, _CHUNKS.role_chunk, _CHUNKS.finish_chunk
usage_chunk, tools_chunk = _CHUNKS.usage_chunk, _CHUNKS.tools_chunk


REQUEST: dict[str, Any] = {"model": MODEL, "input": "Hello", "tools": [WEATHER, APPLY_PATCH]}


def run(
    raw: bytes, step: int | None = None, request: dict[str, Any] | None = None
) -> tuple[list[bytes], ChatToResponsesStream]:
    """Feed a whole upstream stream (in pieces of ``step`` bytes), then close it."""
    translator = ChatToResponsesStream("openai-compat", request or REQUEST, RESPONSE_ID, CREATED)
    out: list[bytes] = []
    pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
    for part in pieces:
        out.extend(translator.feed(part))
    out.extend(translator.close())
    return out, translator


def translate_stream(raw: bytes, step: int | None = None) -> list[bytes]:
    return run(raw, step)[0]


def decode(out: list[bytes]) -> list[dict[str, Any]]:
    """Parse translated events; check each is whole, named by its type, valid, and numbered."""
    events = []
    for raw in out:
        parser = SSEParser()
        for event in parser.feed(raw):
            data = json.loads(event.data)
            assert event.event == data["type"]
            if data["type"] == "response.failed":
                spec_valid_failure(data)
            else:
                assert_valid("ResponseStreamEvent", data)
            events.append(data)
        assert parser.close() == []
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def kinds(out: list[bytes]) -> list[str]:
    return [e["type"] for e in decode(out)]


def same_ids(out: list[bytes]) -> bytes:
    """The events with each random id replaced by its order of appearance."""
    seen: dict[bytes, bytes] = {}

    def name(match: re.Match[bytes]) -> bytes:
        return seen.setdefault(match.group(0), match.group(1) + b"_%d" % len(seen))

    return IDS.sub(name, b"".join(out))


def accumulate(out: list[bytes]) -> Any:
    """openai-python's stream accumulator over the events; return its final response."""
    from openai._models import construct_type
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=openai.omit)
    for event in decode(out):
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))
    return state._completed_response


TEXT_STREAM = stream_of(
    role_chunk(),
    chunk({"content": "Hello"}),
    chunk({"content": " wörld"}),
    chunk({"content": "!"}),
    finish_chunk("stop"),
    usage_chunk(25, 9, cached=10),
)
TOOL_STREAM = stream_of(
    role_chunk(),
    chunk({"content": "Let me check."}),
    tools_chunk(piece(0, call_id="call_abc", name="get_weather", arguments="")),
    tools_chunk(piece(0, arguments='{"ci')),
    tools_chunk(piece(1, call_id="call_p", name="apply_patch", arguments='{"input": "*** Begin')),
    tools_chunk(piece(0, arguments='ty": "Zürich"}')),
    tools_chunk(piece(1, arguments=' Patch\\n+\\"hi\\" \\ud83d\\ude42\\n"}')),
    finish_chunk("tool_calls"),
    usage_chunk(100, 40),
)


def test_text_stream_events_in_openai_order() -> None:
    out, translator = run(TEXT_STREAM)
    events = decode(out)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]["response"]
    assert created == {**created, "id": RESPONSE_ID, "status": "in_progress", "output": []}
    assert "usage" not in created
    assert created["model"] == UPSTREAM_MODEL
    item_id = events[2]["item"]["id"]
    assert events[2] == {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {
            "type": "message",
            "id": item_id,
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        },
        "sequence_number": 2,
    }
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    assert events[3] == {
        "type": "response.content_part.added",
        **where,
        "part": empty,
        "sequence_number": 3,
    }
    assert events[5] == {
        "type": "response.output_text.delta",
        **where,
        "delta": " wörld",
        "logprobs": [],
        "sequence_number": 5,
    }
    assert events[7] == {
        "type": "response.output_text.done",
        **where,
        "text": "Hello wörld!",
        "logprobs": [],
        "sequence_number": 7,
    }
    part = {**empty, "text": "Hello wörld!"}
    assert events[8]["part"] == part
    assert events[9]["item"] == {**events[2]["item"], "status": "completed", "content": [part]}
    final = events[10]["response"]
    assert final["status"] == "completed"
    assert final["output"] == [events[9]["item"]]
    assert final["usage"] == response_usage(usage_chunk(25, 9, cached=10)["usage"])
    assert translator.final == final
    assert translator.complete
    assert translator.usage == Usage(25, 9, 34, cache_read_tokens=10)
    check_response(final)


def test_text_stream_through_openai_python(sdk: MockOpenAI) -> None:
    out, translator = run(TEXT_STREAM)
    final = sdk_final(sdk, out)
    assert final.id == RESPONSE_ID
    assert final.output_text == "Hello wörld!"
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 10
    assert plain(final.model_dump(exclude_unset=True, by_alias=True)) == translator.final


def test_tool_stream_with_two_parallel_calls() -> None:
    out, translator = run(TOOL_STREAM)
    events = decode(out)
    assert [(e["type"], e.get("output_index")) for e in events] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.output_item.added", 2),
        ("response.custom_tool_call_input.delta", 2),
        ("response.function_call_arguments.delta", 1),
        ("response.custom_tool_call_input.delta", 2),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.custom_tool_call_input.done", 2),
        ("response.output_item.done", 2),
        ("response.completed", None),
    ]
    added = events[8]["item"]
    assert added == {
        "type": "function_call",
        "id": added["id"],
        "call_id": "call_abc",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    assert [e["delta"] for e in events if e["type"].endswith("arguments.delta")] == [
        '{"ci',
        'ty": "Zürich"}',
    ]
    assert events[14] == {
        "type": "response.function_call_arguments.done",
        "item_id": added["id"],
        "output_index": 1,
        "arguments": '{"city": "Zürich"}',
        "name": "get_weather",
        "sequence_number": 14,
    }
    patch_added = events[10]["item"]
    assert patch_added == {
        "type": "custom_tool_call",
        "id": patch_added["id"],
        "call_id": "call_p",
        "name": "apply_patch",
        "input": "",
    }
    # The input is decoded from the JSON string as it streams.
    assert [e["delta"] for e in events if e["type"].endswith("input.delta")] == [
        "*** Begin",
        ' Patch\n+"hi" 🙂\n',
    ]
    assert events[16]["input"] == '*** Begin Patch\n+"hi" 🙂\n'
    assert events[17]["item"] == {**patch_added, "input": '*** Begin Patch\n+"hi" 🙂\n'}
    assert translator.final is not None
    assert [item["type"] for item in translator.final["output"]] == [
        "message",
        "function_call",
        "custom_tool_call",
    ]
    check_response(translator.final)


def test_tool_stream_through_openai_python(sdk: MockOpenAI) -> None:
    out, translator = run(TOOL_STREAM)
    final = sdk_final(sdk, out, step=5, tools=[WEATHER, APPLY_PATCH])
    assert plain(final.model_dump(exclude_unset=True, by_alias=True)) == translator.final
    call_item = final.output[1]
    assert call_item.type == "function_call"
    assert json.loads(call_item.arguments) == {"city": "Zürich"}
    patch = final.output[2]
    assert patch.type == "custom_tool_call" and patch.input == '*** Begin Patch\n+"hi" 🙂\n'


def test_the_sdks_accumulator_directly() -> None:
    out, translator = run(TOOL_STREAM)
    final = accumulate(out)
    assert plain(final.model_dump(exclude_unset=True, by_alias=True)) == translator.final


@pytest.mark.parametrize("raw", [TEXT_STREAM, TOOL_STREAM])
def test_any_chunking_gives_the_same_output(raw: bytes) -> None:
    whole = same_ids(translate_stream(raw))
    assert same_ids(translate_stream(raw, 1)) == whole
    assert same_ids(translate_stream(raw, 7)) == whole
    assert same_ids(translate_stream(raw.replace(b"\n", b"\r\n"), 1)) == whole
    assert same_ids(translate_stream(raw.replace(b"\n", b"\r"), 3)) == whole


def test_every_event_comes_whole_byte_by_byte() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    for i in range(len(TOOL_STREAM)):
        for event in translator.feed(TOOL_STREAM[i : i + 1]):
            assert event.endswith(b"\n\n") and event.count(b"\n\n") == 1
    assert translator.complete


@pytest.mark.parametrize("split", range(1, 40))
def test_custom_input_decoding_survives_any_split(split: int) -> None:
    arguments = json.dumps({"input": PATCH})
    assert len(arguments) > split
    raw = stream_of(
        tools_chunk(piece(0, call_id="call_p", name="apply_patch", arguments=arguments[:split])),
        tools_chunk(piece(0, arguments=arguments[split : split * 2])),
        tools_chunk(piece(0, arguments=arguments[split * 2 :])),
        finish_chunk("tool_calls"),
    )
    events = decode(translate_stream(raw))
    deltas = "".join(
        e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"
    )
    assert deltas == PATCH
    (done,) = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == PATCH


@pytest.mark.parametrize(
    ("pieces", "tool_input"),
    [
        (["*** Begin Patch", " raw text"], "*** Begin Patch raw text"),
        (['{"patch": ', '"x"}'], '{"patch": "x"}'),
        (['{"input": "a\\q', 'b"}'], '{"input": "a\\qb"}'),
        (['{"input": "cut sh'], '{"input": "cut sh'),
        (['{"input": "x\\ud83d"}'], "x\ud83d"),
        ([' { "input" : "spaced"', " }"], "spaced"),
    ],
)
def test_custom_input_of_another_shape_comes_whole_at_the_end(
    pieces: list[str], tool_input: str
) -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="call_p", name="apply_patch", arguments=pieces[0])),
        *(tools_chunk(piece(0, arguments=p)) for p in pieces[1:]),
        finish_chunk("tool_calls"),
    )
    out, translator = run(raw)
    events = decode(out)
    (done,) = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == tool_input
    assert translator.final is not None
    assert translator.final["output"][0]["input"] == tool_input


def test_a_tool_call_whose_name_comes_later_waits_for_it() -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="call_1", arguments='{"city":')),
        tools_chunk(piece(0, name="get_weather", arguments=' "Oslo"}')),
        finish_chunk("tool_calls"),
    )
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    first, rest = raw.split(b"\n\n", 1)
    assert translator.feed(first + b"\n\n") == []  # no name yet: nothing to say
    out = translator.feed(rest) + translator.close()
    events = decode(out)
    assert events[2]["item"]["name"] == "get_weather"
    assert events[3]["delta"] == '{"city": "Oslo"}'


def test_a_tool_call_that_never_gets_a_name_still_gets_its_item() -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="call_1", arguments="{}")), finish_chunk("tool_calls")
    )
    out, translator = run(raw)
    assert translator.final is not None
    (item,) = translator.final["output"]
    assert (item["type"], item["name"], item["call_id"], item["arguments"]) == (
        "function_call",
        "",
        "call_1",
        "{}",
    )
    decode(out)


def test_tool_pieces_without_index_follow_the_last_call() -> None:
    raw = stream_of(
        off_spec(
            {"tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": ""}}]}
        ),
        off_spec({"tool_calls": [{"function": {"arguments": '{"city":"Rome"}'}}]}),
        off_spec(
            {"tool_calls": [{"id": "c2", "function": {"name": "get_weather", "arguments": "{}"}}]}
        ),
        off_spec({}, "tool_calls"),
    )
    _, translator = run(raw)
    assert translator.final is not None
    assert [(i["call_id"], i["arguments"]) for i in translator.final["output"]] == [
        ("c1", '{"city":"Rome"}'),
        ("c2", "{}"),
    ]


def test_text_after_a_tool_call_opens_a_new_message() -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="c1", name="get_weather", arguments="{}")),
        chunk({"content": "Done."}),
        finish_chunk("tool_calls"),
    )
    out, translator = run(raw)
    assert translator.final is not None
    assert [i["type"] for i in translator.final["output"]] == ["function_call", "message"]
    assert accumulate(out).output_text == "Done."


def test_legacy_function_call_delta_is_a_function_call() -> None:
    raw = stream_of(
        off_spec({"function_call": {"name": "get_weather", "arguments": '{"a":'}}),
        off_spec({"function_call": {"arguments": "1}"}}),
        off_spec({}, "function_call"),
    )
    _, translator = run(raw)
    assert translator.final is not None
    (item,) = translator.final["output"]
    assert (item["name"], item["arguments"]) == ("get_weather", '{"a":1}')


def test_refusal_stream() -> None:
    raw = stream_of(
        chunk({"content": "Well,"}),
        chunk({"refusal": "I can't"}),
        chunk({"refusal": " help."}),
        finish_chunk("stop"),
    )
    out, translator = run(raw)
    events = decode(out)
    assert [e["type"] for e in events][2:-1] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert events[7]["part"] == {"type": "refusal", "refusal": ""}
    assert events[7]["content_index"] == 1
    assert events[10]["refusal"] == "I can't help."
    assert translator.final is not None
    assert translator.final["output"][0]["content"] == [
        {"type": "output_text", "text": "Well,", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "I can't help."},
    ]
    check_response(translator.final)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_stream(field: str, sdk: MockOpenAI) -> None:
    raw = stream_of(
        off_spec({field: "Six"}),
        off_spec({field: " times seven."}),
        chunk({"content": "42"}),
        finish_chunk("stop"),
    )
    out, translator = run(raw)
    events = decode(out)
    assert [e["type"] for e in events][2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    added = events[2]["item"]
    assert added == {"type": "reasoning", "id": added["id"], "summary": [], "content": []}
    assert events[4] == {
        "type": "response.reasoning_text.delta",
        "item_id": added["id"],
        "output_index": 0,
        "content_index": 0,
        "delta": "Six",
        "sequence_number": 4,
    }
    assert events[6]["text"] == "Six times seven."
    assert events[8]["item"]["content"] == [{"type": "reasoning_text", "text": "Six times seven."}]
    final = sdk_final(sdk, out)
    assert final.output_text == "42"
    assert plain(final.model_dump(exclude_unset=True, by_alias=True)) == translator.final


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_an_incomplete_stream_ends_with_response_incomplete(
    finish_reason: str, reason: str
) -> None:
    raw = stream_of(
        chunk({"content": "Once"}),
        tools_chunk(piece(0, call_id="c1", name="get_weather", arguments='{"ci')),
        finish_chunk(finish_reason),
        usage_chunk(),
    )
    out, translator = run(raw)
    events = decode(out)
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert (final["status"], final["incomplete_details"]) == ("incomplete", {"reason": reason})
    assert [item["status"] for item in final["output"]] == ["completed", "incomplete"]
    assert translator.complete and translator.final == final
    check_response(final)


def test_an_empty_answer_still_gets_its_response() -> None:
    out, translator = run(stream_of(role_chunk(), finish_chunk("stop"), usage_chunk()))
    assert kinds(out) == ["response.created", "response.in_progress", "response.completed"]
    assert translator.final is not None and translator.final["output"] == []


def test_nothing_is_sent_until_there_is_content() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    assert translator.feed(stream_of(role_chunk(), done=False)) == []
    assert translator.feed(b": keep-alive\n\n") == []
    assert translator.feed(stream_of(tools_chunk(piece(0, call_id="c1")), done=False)) == []
    out = translator.feed(stream_of(chunk({"content": "Hi"}), done=False))
    assert kinds(out) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]


def test_usage_after_the_finish_without_done_completes_at_close() -> None:
    out, translator = run(
        stream_of(chunk({"content": "Hi"}), finish_chunk("stop"), usage_chunk(), done=False)
    )
    assert translator.complete
    assert kinds(out)[-1] == "response.completed"


def test_usage_carried_by_the_finish_chunk_completes_at_close() -> None:
    finish = chunk({}, "stop", usage=usage_chunk(3, 4)["usage"])
    out, translator = run(stream_of(chunk({"content": "Hi"}), finish, done=False))
    assert translator.complete
    assert translator.usage == Usage(3, 4, 7)
    assert decode(out)[-1]["response"]["usage"]["output_tokens"] == 4


def test_usage_before_the_finish_does_not_end_a_stream_without_done() -> None:
    raw = stream_of(chunk({"content": "Hi"}), usage_chunk(), finish_chunk("stop"), done=False)
    out, translator = run(raw)
    assert not translator.complete
    assert kinds(out)[-1] == "response.output_item.done"


def test_the_stream_completes_at_done_without_usage() -> None:
    _, translator = run(stream_of(chunk({"content": "Hi"}), finish_chunk("stop")))
    assert translator.complete
    assert translator.usage is None
    assert translator.final is not None and "usage" not in translator.final
    check_response(translator.final)


@pytest.mark.parametrize(
    "raw",
    [
        stream_of(chunk({"content": "Hi"}), done=False),
        stream_of(chunk({"content": "Hi"}), finish_chunk("stop"), done=False),
        stream_of(chunk({"content": "Hi"})),  # [DONE] without a finish
        stream_of(chunk({"content": "Hi"}), usage_chunk(), done=False),
    ],
)
def test_a_stream_cut_short_sends_nothing_more_and_is_not_complete(raw: bytes) -> None:
    out, translator = run(raw)
    assert not translator.complete
    assert translator.final is None
    assert all(not k.startswith("response.completed") for k in kinds(out))


def test_error_event_after_a_stream_cut_short() -> None:
    raw = stream_of(
        chunk({"content": "Hi"}),
        tools_chunk(piece(0, call_id="c1", name="get_weather", arguments='{"ci')),
        done=False,
    )
    out, translator = run(raw)
    assert not translator.complete
    exc = UpstreamError("The provider closed the stream early.")
    failed = translator.error_event(exc, ())
    assert failed is not None
    events = decode([*out, failed])
    last = events[-1]
    assert last["type"] == "response.failed"
    assert last["sequence_number"] == len(out)
    assert last["response"]["id"] == RESPONSE_ID
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"] == {
        "code": "server_error",
        "message": "The provider closed the stream early.",
    }
    # The message was finished when the call opened; the call was still open.
    assert [item["type"] for item in last["response"]["output"]] == ["message"]
    state_final = accumulate([*out, failed])
    assert state_final is None  # no response.completed: the SDK's helper says so


def test_error_event_before_anything_was_sent_starts_the_response() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    assert translator.feed(stream_of(role_chunk(), done=False)) == []
    exc = UpstreamRejected(429, "Rate limited by sk-abc.", headers={"Retry-After": "7"})
    failed = translator.error_event(exc, ["sk-abc"])
    assert failed is not None
    events = decode([failed])
    assert [e["type"] for e in events] == ["response.created", "response.failed"]
    assert events[1]["response"]["error"] == {
        "code": "rate_limit_exceeded",
        "message": "Rate limited by [redacted]. Please try again in 7s.",
    }


def test_error_event_with_a_code_the_spec_lacks_loads_in_the_sdk(sdk: MockOpenAI) -> None:
    out, translator = run(stream_of(chunk({"content": "Hi"}), done=False))
    failed = translator.error_event(UpstreamRejected(400, "prompt is too long"), ())
    assert failed is not None
    sdk.stream([*out, failed])
    with sdk.client.responses.stream(model=MODEL, input="Hello") as stream:
        events = list(stream)
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None
    assert events[-1].response.error.code == "context_length_exceeded"


def test_error_before_any_content_sends_nothing_so_the_caller_can_fall_back() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    raw = (
        stream_of(role_chunk(), done=False)
        + b'data: {"error": {"message": "overloaded", "type": "server_error", "code": 529}}\n\n'
    )
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(raw)
    assert str(info.value.description) == "overloaded"
    assert (info.value.type, info.value.error_code) == ("server_error", "529")
    with pytest.raises(UpstreamStreamFailed):  # the stream is over
        translator.feed(TEXT_STREAM)
    with pytest.raises(UpstreamStreamFailed):
        translator.close()


def test_error_after_content_is_raised_after_what_came_before() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    raw = (
        stream_of(chunk({"content": "Hi"}), done=False)
        + b'event: error\ndata: {"message": "boom"}\n\n'
    )
    out = translator.feed(raw)
    assert kinds(out)[-1] == "response.output_text.delta"
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(b"")
    assert str(info.value.description) == "boom"
    failed = translator.error_event(info.value, ())
    assert failed is not None
    events = decode([*out, failed])
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["sequence_number"] == len(out)
    assert events[-1]["response"]["output"] == []  # the message never finished


def test_error_split_byte_by_byte_is_raised_once_whole() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    raw = b'data: {"error": {"message": "quota"}}\n\n'
    for i in range(len(raw) - 1):
        assert translator.feed(raw[i : i + 1]) == []
    with pytest.raises(UpstreamStreamFailed):
        translator.feed(raw[-1:])


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_event_that_is_not_a_json_object_fails_the_stream(data: bytes) -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(b"data: " + data + b"\n\n")
    assert info.value.error_code == "upstream_malformed_response"


def test_last_event_cut_inside_its_json_is_a_truncation_not_an_error() -> None:
    translator = ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED)
    out = translator.feed(stream_of(chunk({"content": "Hi"}), done=False) + b'data: {"choi')
    out += translator.close()
    assert not translator.complete
    assert kinds(out)[-1] == "response.output_text.delta"


def test_chunks_without_choices_and_other_choices_are_ignored() -> None:
    other = chunk({"content": "other"})
    other["choices"][0]["index"] = 1
    raw = stream_of(chunk(choices=False), other, chunk({"content": "mine"}), finish_chunk("stop"))
    _, translator = run(raw)
    assert translator.final is not None
    assert translator.final["output"][0]["content"][0]["text"] == "mine"


def test_deltas_after_the_finish_are_dropped() -> None:
    raw = stream_of(
        chunk({"content": "Hi"}), finish_chunk("stop"), chunk({"content": "late"}), usage_chunk()
    )
    _, translator = run(raw)
    assert translator.final is not None
    assert translator.final["output"][0]["content"][0]["text"] == "Hi"
    assert translator.usage == Usage(25, 9, 34)


def test_the_model_without_one_from_the_upstream_is_the_requested_one() -> None:
    raw = stream_of(off_spec({"content": "Hi"}), off_spec({}, "stop"))
    _, translator = run(raw)
    assert translator.final is not None and translator.final["model"] == MODEL


def test_the_response_echoes_the_request() -> None:
    request = {**REQUEST, "instructions": "Be brief.", "store": False, "temperature": 0.1}
    out, translator = run(TEXT_STREAM, request=request)
    created = decode(out)[0]["response"]
    assert (created["instructions"], created["store"], created["temperature"]) == (
        "Be brief.",
        False,
        0.1,
    )
    assert (
        translator.final is not None and translator.final["tools"] == echo_fields(request)["tools"]
    )


def test_it_is_a_stream_translator() -> None:
    assert isinstance(ChatToResponsesStream("p", REQUEST, RESPONSE_ID, CREATED), StreamTranslator)


def test_response_events_number_every_event_of_one_stream() -> None:
    events = ResponseEvents(RESPONSE_ID, CREATED, {"model": MODEL}, UPSTREAM_MODEL)
    out = events.start()
    assert events.start() == []
    index, added = events.add_item(
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "c",
            "name": "f",
            "arguments": "",
            "status": "in_progress",
        }
    )
    out += added + events.arguments_delta(index, "{}") + events.finish_arguments(index)
    out += events.finish_item(index) + events.complete("completed", None)
    decoded = decode(out)
    assert decoded[-1]["response"]["output"] == [
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "c",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        }
    ]
    assert events.final == decoded[-1]["response"]


# ---------------------------------------------------------------------------------- replay


def test_replay_of_a_translated_answer_gives_it_back(sdk: MockOpenAI) -> None:
    chat = chat_completion(
        "Checking.",
        "tool_calls",
        tool_calls=[
            call("call_1", "get_weather", '{"city":"Paris"}'),
            call("call_p", "apply_patch", json.dumps({"input": PATCH})),
        ],
        reasoning_content="Plan.",
    )
    response = response_object(chat, {**REQUEST}, RESPONSE_ID, CREATED)
    out = replay_response_events(response)
    events = decode(out)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1]["response"] == response
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == response[
        "output"
    ]
    final = sdk_final(sdk, out)
    assert plain(final.model_dump(exclude_unset=True, by_alias=True)) == response
    assert final.output_text == "Checking."


OPENAI_RESPONSE: dict[str, Any] = {
    "id": "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b",
    "object": "response",
    "created_at": 1756315696,
    "status": "completed",
    "background": False,
    "billing": {"payer": "developer"},
    "completed_at": 1756315703,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "model": "gpt-5-2025-08-07",
    "output": [
        {
            "id": "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b",
            "type": "reasoning",
            "encrypted_content": "gAAAAABor0A3ZkH4Wt0-cq-l2eHmqsr8...",
            "summary": [
                {"type": "summary_text", "text": "**Checking the weather**\n\nI need the city."},
                {"type": "summary_text", "text": "**Calling the tool**"},
            ],
        },
        {
            "id": "msg_68af40337e2c8193a7b3f2f0d1a9e1e605438e46b5f69a3b",
            "type": "message",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "start_index": 0,
                            "end_index": 5,
                            "title": "Weather",
                            "url": "https://example.com/weather",
                        }
                    ],
                    "logprobs": [],
                    "text": "Paris: let me look.",
                }
            ],
            "role": "assistant",
        },
        {
            "id": "fc_68af4035d9a08193a8b0e5b7f0c3c0d105438e46b5f69a3b",
            "type": "function_call",
            "status": "completed",
            "arguments": '{"city":"Paris"}',
            "call_id": "call_lwLVHDRsr9AHIlyeWcVbQ0nl",
            "name": "get_weather",
        },
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": "medium", "summary": "detailed"},
    "safety_identifier": None,
    "service_tier": "default",
    "store": False,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [WEATHER],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 64,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 150,
        "output_tokens_details": {"reasoning_tokens": 128},
        "total_tokens": 214,
    },
    "user": None,
    "metadata": {},
}


def test_replay_of_an_openai_response_with_summaries_and_encrypted_reasoning(
    sdk: MockOpenAI,
) -> None:
    response = {k: v for k, v in OPENAI_RESPONSE.items() if k != "user"}  # the spec: no null user
    assert_valid("Response", response)
    out = replay_response_events(response)
    events = decode(out)
    assert [e["type"] for e in events][2:14] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert events[2]["item"]["summary"] == []
    assert events[4]["delta"] == "**Checking the weather**\n\nI need the city."
    assert events[7]["summary_index"] == 1
    assert events[11]["item"] == response["output"][0]  # encrypted_content included
    assert events[0]["response"]["billing"] == {"payer": "developer"}
    assert events[0]["response"]["model"] == "gpt-5-2025-08-07"
    done_part = next(e for e in events if e["type"] == "response.content_part.done")
    assert done_part["part"]["annotations"][0]["type"] == "url_citation"
    assert events[-1] == {
        "type": "response.completed",
        "response": response,
        "sequence_number": len(events) - 1,
    }
    final = sdk_final(sdk, out, tools=[WEATHER])
    assert final.output_text == "Paris: let me look."
    assert plain(final.model_dump(exclude_unset=True, by_alias=True)) == response


def test_replay_of_an_incomplete_response_ends_incomplete() -> None:
    response = answer(chat_completion("Once upon a", "length"))
    events = decode(replay_response_events(response))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"] == response


def test_replay_of_a_refusal_and_an_empty_text() -> None:
    response = answer(chat_completion(None))
    response["output"] = [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                {"type": "refusal", "refusal": "No."},
            ],
        }
    ]
    types = kinds(replay_response_events(response))
    assert "response.output_text.delta" not in types
    assert types.count("response.refusal.delta") == 1


@pytest.mark.parametrize(
    "response",
    [
        "resp",
        {"id": RESPONSE_ID, "created_at": CREATED, "status": "failed", "output": []},
        {"id": RESPONSE_ID, "created_at": CREATED, "status": "in_progress", "output": []},
        {"id": RESPONSE_ID, "status": "completed", "output": []},
        {"id": RESPONSE_ID, "created_at": CREATED, "status": "completed"},
        {
            "id": RESPONSE_ID,
            "created_at": CREATED,
            "status": "completed",
            "output": [
                {
                    "type": "web_search_call",
                    "id": "ws_1",
                    "status": "completed",
                    "action": {"type": "search"},
                }
            ],
        },
        {
            "id": RESPONSE_ID,
            "created_at": CREATED,
            "status": "completed",
            "output": [{"type": "message", "content": []}],
        },
        {
            "id": RESPONSE_ID,
            "created_at": CREATED,
            "status": "completed",
            "output": [{"type": "message", "id": "m", "content": [{"type": "audio"}]}],
        },
        {
            "id": RESPONSE_ID,
            "created_at": CREATED,
            "status": "completed",
            "output": [{"type": "function_call", "id": "fc", "call_id": "c", "name": "f"}],
        },
    ],
)
def test_what_cannot_be_replayed_is_a_value_error(response: Any) -> None:
    with pytest.raises(ValueError):
        replay_response_events(response)
