"""Anthropic Messages <-> OpenAI Chat Completions: pure request, answer and stream translation.

Shapes are checked on both sides by the official references: every translated request against
OpenAI's ``CreateChatCompletionRequest`` schema, every upstream fixture against OpenAI's answer
and chunk schemas, and every translated answer and stream by the anthropic SDK itself (its
``Message`` model, and its own SSE decoding and message accumulation behind a mock transport).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from proxyapi.errors import InvalidRequest, UpstreamMalformed, UpstreamStreamFailed
from proxyapi.providers.base import StreamTranslator, Usage
from proxyapi.providers.sse import SSEParser
from proxyapi.translate.messages_chat import (
    ChatTarget,
    ChatToMessagesStream,
    chat_request,
    messages_answer,
    messages_usage,
)
from tests.chat_chunks import ChatChunks, off_spec, piece, stream_of
from tests.schemas import assert_valid
from tests.sdk_mock import RecordingTransport

MODEL = "claude-sonnet-4-5"
UPSTREAM_MODEL = "gpt-4o-2024-08-06"
CHAT_ID = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
REASONING = ChatTarget(reasoning_effort=True)


# ---------------------------------------------------------------------------------- helpers


def translate(
    target: ChatTarget | None = None, *, stream: bool = False, **fields: Any
) -> dict[str, Any]:
    """Translate a Messages request (a minimal one, with ``fields`` added or replaced)."""
    body = {"model": MODEL, "max_tokens": 1024, "messages": HELLO, **fields}
    out = chat_request(body, target or ChatTarget(), stream)
    assert_valid("CreateChatCompletionRequest", out)
    json.dumps(out, allow_nan=False)  # plain JSON, nothing else
    return out


def chat_messages(*messages: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = translate(messages=list(messages), **fields)["messages"]
    return result


def refused(body: dict[str, Any], param: str, *words: str) -> InvalidRequest:
    """Assert the request is refused with a 400 naming ``param`` (and ``words``)."""
    full = {"model": MODEL, "max_tokens": 1024, "messages": HELLO, **body}
    with pytest.raises(InvalidRequest) as info:
        chat_request(full, ChatTarget(), False)
    error = info.value
    assert error.code == 400
    assert error.param == param
    for word in words:
        assert word in str(error.description), error.description
    return error


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def tool_use(call_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def tool_result(call_id: str, content: Any = None, **extra: Any) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": call_id, **extra}
    if content is not None:
        block["content"] = content
    return block


PNG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
PDF = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
}


class MockAnthropic(RecordingTransport):
    """An anthropic SDK client whose transport records requests and answers what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.client = anthropic.Anthropic(
            api_key="sk-ant-test",
            base_url="http://upstream.test",
            http_client=self.http,
            max_retries=0,
        )


@pytest.fixture
def sdk() -> Iterator[MockAnthropic]:
    mock = MockAnthropic()
    yield mock
    mock.client.close()


def sdk_final(sdk: MockAnthropic, events: list[bytes], step: int | None = None) -> Any:
    """Replay translated events through the SDK's streaming helper; return its final message."""
    sdk.stream(events, step)
    with sdk.client.messages.stream(model=MODEL, max_tokens=1024, messages=HELLO) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "".join(b.text for b in final.content if b.type == "text")
    return final


# ---------------------------------------------------------------------------------- request


def test_minimal_request() -> None:
    assert translate() == {"model": MODEL, "messages": HELLO, "max_tokens": 1024}


def test_max_tokens_goes_to_the_targets_field() -> None:
    out = translate(ChatTarget(max_tokens_field="max_completion_tokens"))
    assert out["max_completion_tokens"] == 1024
    assert "max_tokens" not in out


@pytest.mark.parametrize("value", [None, 0, -1, True, "10", 1.5])
def test_max_tokens_must_be_a_positive_integer(value: Any) -> None:
    refused({"max_tokens": value}, "max_tokens", "max_tokens")


def test_max_tokens_missing_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_request({"model": MODEL, "messages": HELLO}, ChatTarget(), False)
    assert info.value.param == "max_tokens"


@pytest.mark.parametrize("value", [None, "", 7])
def test_model_is_required(value: Any) -> None:
    refused({"model": value}, "model")


def test_system_string_leads() -> None:
    assert chat_messages(*HELLO, system="Be brief.")[0] == {
        "role": "system",
        "content": "Be brief.",
    }


def test_system_blocks_are_joined_and_cache_control_dropped() -> None:
    system = [
        text("One.", cache_control={"type": "ephemeral"}),
        text("Two.", cache_control={"type": "ephemeral", "ttl": "1h"}),
    ]
    assert chat_messages(*HELLO, system=system) == [
        {"role": "system", "content": "One.\n\nTwo."},
        *HELLO,
    ]


@pytest.mark.parametrize("system", ["", []])
def test_empty_system_is_left_out(system: Any) -> None:
    assert chat_messages(*HELLO, system=system) == HELLO


def test_system_with_a_non_text_block_is_refused() -> None:
    refused({"system": [text("a"), PNG]}, "system.1", "'image'")


@pytest.mark.parametrize("system", [7, {"text": "x"}, [{"text": "no type"}]])
def test_system_of_another_shape_is_refused(system: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate(system=system)
    assert info.value.param is not None and info.value.param.startswith("system")


def test_system_message_inside_messages_stays_where_it_is() -> None:
    out = chat_messages(
        *HELLO,
        {"role": "assistant", "content": "Hi"},
        {"role": "system", "content": [text("Now in French.")]},
        {"role": "user", "content": "Bonjour"},
    )
    assert out[2] == {"role": "system", "content": "Now in French."}


def test_user_text_blocks_become_text_parts() -> None:
    out = chat_messages(user(text("a", cache_control={"type": "ephemeral"}), text("b")))
    assert out == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_base64_image_becomes_a_data_url() -> None:
    out = chat_messages(user(text("What is this?"), PNG))
    assert out[0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBO"},
    }


def test_url_image_keeps_its_url() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    out = chat_messages(user(image))
    assert out[0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}
    ]


@pytest.mark.parametrize(
    ("source", "param", "word"),
    [
        ({"type": "file", "file_id": "file_011"}, "messages.0.content.0.source.type", "'file'"),
        ({"type": "base64", "media_type": "image/png"}, "messages.0.content.0.source.data", "data"),
        ({"type": "url"}, "messages.0.content.0.source.url", "url"),
        (None, "messages.0.content.0.source", "source"),
    ],
)
def test_untranslatable_images_are_refused(source: Any, param: str, word: str) -> None:
    refused({"messages": [user({"type": "image", "source": source})]}, param, word)


def test_image_in_an_assistant_turn_is_refused() -> None:
    body = {"messages": [*HELLO, assistant(PNG)]}
    refused(body, "messages.1.content.0.type", "'image'", "assistant")


def test_pdf_document_becomes_a_file_part() -> None:
    out = chat_messages(user(PDF, text("Summarise.")))
    assert out[0]["content"][0] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }


@pytest.mark.parametrize(
    ("title", "filename"),
    [("Annual report", "Annual report.pdf"), ("q3.PDF", "q3.PDF"), ("  ", "document.pdf")],
)
def test_pdf_document_is_named_by_its_title(title: str, filename: str) -> None:
    out = chat_messages(user({**PDF, "title": title, "context": "from finance"}))
    assert out[0]["content"][0]["file"]["filename"] == filename


def test_plain_text_document_becomes_a_text_part() -> None:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
        "title": "Facts",
        "citations": {"enabled": False},
    }
    assert chat_messages(user(document))[0]["content"] == [
        {"type": "text", "text": "The grass is green."}
    ]


@pytest.mark.parametrize(
    ("source", "word"),
    [
        ({"type": "url", "url": "https://example.com/a.pdf"}, "base64"),
        ({"type": "content", "content": [text("x")]}, "blocks"),
        ({"type": "file", "file_id": "file_011"}, "Files API"),
        ({"type": "base64", "media_type": "text/html", "data": "PGI+"}, "PDF"),
        ({"type": "mystery"}, "'mystery'"),
    ],
)
def test_untranslatable_documents_are_refused(source: dict[str, Any], word: str) -> None:
    body = {"messages": [user({"type": "document", "source": source})]}
    with pytest.raises(InvalidRequest) as info:
        chat_request({"model": MODEL, "max_tokens": 9, **body}, ChatTarget(), False)
    assert info.value.param is not None
    assert info.value.param.startswith("messages.0.content.0.source")
    assert word in str(info.value.description)


def test_document_asking_for_citations_is_refused() -> None:
    body = {"messages": [user({**PDF, "citations": {"enabled": True}})]}
    refused(body, "messages.0.content.0.citations", "citations")


def test_assistant_text_blocks_are_concatenated() -> None:
    out = chat_messages(*HELLO, assistant(text("The answer "), text("is 4.", citations=None)))
    assert out[1] == {"role": "assistant", "content": "The answer is 4."}


def test_assistant_string_content() -> None:
    assert chat_messages(*HELLO, {"role": "assistant", "content": "Hi"})[1] == {
        "role": "assistant",
        "content": "Hi",
    }


def test_assistant_tool_use_becomes_tool_calls() -> None:
    out = chat_messages(
        *HELLO,
        assistant(
            text("Let me check."),
            tool_use("toolu_01", "get_weather", {"city": "Zürich", "units": ["c"]}),
            tool_use("toolu_02", "get_time", {}),
        ),
    )
    assert out[1] == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": "toolu_01",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Zürich","units":["c"]}'},
            },
            {
                "id": "toolu_02",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }


def test_assistant_with_only_tool_calls_has_null_content() -> None:
    out = chat_messages(*HELLO, assistant(tool_use("toolu_01", "get_time", {})))
    assert out[1]["content"] is None
    assert len(out[1]["tool_calls"]) == 1


def test_thinking_blocks_are_dropped() -> None:
    out = chat_messages(
        *HELLO,
        assistant(
            {"type": "thinking", "thinking": "Hmm.", "signature": "EqQBCgIYAhIM"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            text("Hi!"),
        ),
    )
    assert out[1] == {"role": "assistant", "content": "Hi!"}


def test_assistant_turn_with_only_thinking_is_left_out() -> None:
    thinking = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    out = chat_messages(*HELLO, assistant(thinking), {"role": "user", "content": "Go on"})
    assert [m["role"] for m in out] == ["user", "user"]


@pytest.mark.parametrize(
    ("block", "param"),
    [
        ({"type": "tool_use", "name": "x", "input": {}}, "messages.1.content.0"),
        ({"type": "tool_use", "id": "t", "input": {}}, "messages.1.content.0"),
        ({"type": "tool_use", "id": "t", "name": "x", "input": "{}"}, "messages.1.content.0.input"),
        ({"type": "text"}, "messages.1.content.0.text"),
        ("just a string", "messages.1.content.0"),
    ],
)
def test_malformed_assistant_blocks_are_refused(block: Any, param: str) -> None:
    refused({"messages": [*HELLO, assistant(block)]}, param)


def test_tool_results_become_tool_messages_before_the_rest_of_the_turn() -> None:
    out = chat_messages(
        *HELLO,
        assistant(
            tool_use("toolu_01", "get_weather", {"city": "Paris"}),
            tool_use("toolu_02", "get_weather", {"city": "Oslo"}),
        ),
        user(
            text("Here you go:"),
            tool_result("toolu_01", "18°C", cache_control={"type": "ephemeral"}),
            tool_result("toolu_02", [text("-3°C"), text("snow")]),
            text("Which is warmer?"),
        ),
    )
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "toolu_01", "content": "18°C"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "-3°C\n\nsnow"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here you go:"},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


def test_a_turn_of_tool_results_only_adds_no_user_message() -> None:
    out = chat_messages(
        *HELLO,
        assistant(tool_use("toolu_01", "get_time", {})),
        user(tool_result("toolu_01", "noon")),
    )
    assert out[-1] == {"role": "tool", "tool_call_id": "toolu_01", "content": "noon"}


def test_tool_result_error_is_prefixed() -> None:
    out = chat_messages(
        *HELLO,
        assistant(tool_use("toolu_01", "get_time", {})),
        user(tool_result("toolu_01", "clock not found", is_error=True)),
    )
    assert out[-1]["content"] == "Error: clock not found"


def test_tool_result_without_content_is_empty() -> None:
    out = chat_messages(
        *HELLO,
        assistant(tool_use("toolu_01", "beep", {})),
        user(tool_result("toolu_01", is_error=False)),
    )
    assert out[-1] == {"role": "tool", "tool_call_id": "toolu_01", "content": ""}


def test_tool_result_images_follow_the_tool_messages_in_a_user_message() -> None:
    out = chat_messages(
        *HELLO,
        assistant(tool_use("toolu_01", "screenshot", {}), tool_use("toolu_02", "read", {})),
        user(
            tool_result("toolu_01", [text("Took it."), PNG]),
            tool_result("toolu_02", [PDF]),
            text("Describe both."),
        ),
    )
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "toolu_01", "content": "Took it."},
        {"role": "tool", "tool_call_id": "toolu_02", "content": ""},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "(images returned by tool toolu_01)"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "text", "text": "(documents returned by tool toolu_02)"},
                {
                    "type": "file",
                    "file": {
                        "filename": "document.pdf",
                        "file_data": "data:application/pdf;base64,JVBERi0x",
                    },
                },
                {"type": "text", "text": "Describe both."},
            ],
        },
    ]


def test_tool_result_with_images_and_documents_names_both() -> None:
    out = chat_messages(
        *HELLO,
        assistant(tool_use("toolu_01", "fetch", {})),
        user(tool_result("toolu_01", [PNG, PDF])),
    )
    assert out[-1]["content"][0] == {
        "type": "text",
        "text": "(images and documents returned by tool toolu_01)",
    }


@pytest.mark.parametrize(
    ("block", "param"),
    [
        (tool_result("", "x"), "messages.0.content.0.tool_use_id"),
        ({"type": "tool_result", "content": "x"}, "messages.0.content.0.tool_use_id"),
        (tool_result("t", 7), "messages.0.content.0.content"),
        (
            tool_result("t", [{"type": "search_result", "source": "s", "title": "t"}]),
            "messages.0.content.0.content.0.type",
        ),
        (
            tool_result("t", [{"type": "tool_reference", "tool_name": "x"}]),
            "messages.0.content.0.content.0.type",
        ),
    ],
)
def test_malformed_tool_results_are_refused(block: dict[str, Any], param: str) -> None:
    refused({"messages": [user(block)]}, param)


@pytest.mark.parametrize(
    ("role", "block", "why"),
    [
        (
            "assistant",
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"},
            "server tools",
        ),
        (
            "user",
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            "server tools",
        ),
        (
            "assistant",
            {"type": "web_fetch_tool_result", "tool_use_id": "s", "content": {}},
            "server tools",
        ),
        (
            "assistant",
            {"type": "code_execution_tool_result", "tool_use_id": "s", "content": {}},
            "server tools",
        ),
        (
            "user",
            {"type": "search_result", "source": "s", "title": "t", "content": []},
            "no such content",
        ),
        ("user", {"type": "container_upload", "file_id": "file_1"}, "no such content"),
        ("user", {"type": "mystery"}, "no such content"),
        ("user", tool_use("t", "x", {}), "assistant turn"),
        ("user", {"type": "thinking", "thinking": "x", "signature": "s"}, "assistant turn"),
        ("assistant", tool_result("t", "x"), "user turn"),
        ("assistant", PDF, "assistant messages"),
    ],
)
def test_blocks_without_a_chat_counterpart_are_refused_by_type(
    role: str, block: dict[str, Any], why: str
) -> None:
    messages = [*HELLO, {"role": role, "content": [block]}]
    refused({"messages": messages}, "messages.1.content.0.type", repr(block["type"]), why)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        (None, "messages"),
        ({"role": "user"}, "messages"),
        (["hi"], "messages.0"),
        ([{"role": "tool", "content": "x"}], "messages.0.role"),
        ([{"role": "user", "content": 5}], "messages.0.content"),
        ([{"role": "user", "content": []}], "messages.0.content"),
        ([{"role": "assistant", "content": {"text": "x"}}], "messages.0.content"),
        ([{"role": "user", "content": [{"text": "no type"}]}], "messages.0.content.0"),
    ],
)
def test_malformed_messages_are_refused(messages: Any, param: str) -> None:
    refused({"messages": messages}, param)


def test_a_whole_tool_conversation_is_valid_chat() -> None:
    out = chat_messages(
        {"role": "user", "content": [text("Weather in Paris and Oslo?"), PNG]},
        assistant(
            {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
            text("Checking."),
            tool_use("toolu_01", "get_weather", {"city": "Paris"}),
            tool_use("toolu_02", "get_weather", {"city": "Oslo"}),
        ),
        user(tool_result("toolu_01", "18°C"), tool_result("toolu_02", "-3°C", is_error=True)),
        assistant(text("Paris is 18°C; Oslo failed.")),
        {"role": "user", "content": "Thanks"},
        system="You are a weather bot.",
        tools=[WEATHER],
    )
    assert [m["role"] for m in out] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]


def test_stop_sequences_become_stop() -> None:
    assert translate(stop_sequences=["\n\nHuman:", "END"])["stop"] == ["\n\nHuman:", "END"]


def test_empty_stop_sequences_are_left_out() -> None:
    assert "stop" not in translate(stop_sequences=[])


def test_more_than_four_stop_sequences_are_refused() -> None:
    refused({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences", "at most 4")


@pytest.mark.parametrize("stop", ["END", [1], {"a": 1}])
def test_stop_sequences_of_another_shape_are_refused(stop: Any) -> None:
    refused({"stop_sequences": stop}, "stop_sequences")


def test_sampling_is_copied_and_top_k_dropped() -> None:
    out = translate(temperature=0.7, top_p=0.9, top_k=40)
    assert (out["temperature"], out["top_p"]) == (0.7, 0.9)
    assert "top_k" not in out


@pytest.mark.parametrize("name", ["temperature", "top_p"])
@pytest.mark.parametrize("value", ["hot", True, [1]])
def test_sampling_must_be_numbers(name: str, value: Any) -> None:
    refused({name: value}, name)


def test_metadata_user_id_becomes_user() -> None:
    assert translate(metadata={"user_id": "user_abc"})["user"] == "user_abc"
    assert "user" not in translate(metadata={})
    assert "user" not in translate(metadata={"user_id": None})


@pytest.mark.parametrize(
    ("metadata", "param"), [("abc", "metadata"), ({"user_id": 5}, "metadata.user_id")]
)
def test_metadata_of_another_shape_is_refused(metadata: Any, param: str) -> None:
    refused({"metadata": metadata}, param)


def test_streaming_asks_for_usage() -> None:
    out = translate(stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_the_stream_argument_decides_not_the_body() -> None:
    body = {"model": MODEL, "max_tokens": 9, "messages": HELLO, "stream": True}
    out = chat_request(body, ChatTarget(), stream=False)
    assert "stream" not in out and "stream_options" not in out


def test_custom_tools_become_function_tools() -> None:
    tools = [
        {**WEATHER, "cache_control": {"type": "ephemeral"}, "input_examples": [{"city": "Rome"}]},
        {
            "type": "custom",
            "name": "get_time",
            "input_schema": {"type": "object"},
            "strict": True,
        },
        {"name": "noop", "input_schema": {"type": "object"}, "strict": False},
    ]
    assert translate(tools=tools)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object"}, "strict": True},
        },
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "memory_20250818", "name": "memory"},
    ],
)
def test_builtin_tools_are_refused_by_name(tool: dict[str, Any]) -> None:
    refused({"tools": [WEATHER, tool]}, "tools.1.type", repr(tool["type"]), "only Anthropic")


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ({"name": "x"}, "tools"),
        (["x"], "tools.0"),
        ([{"input_schema": {}}], "tools.0.name"),
        ([{"name": "x"}], "tools.0.input_schema"),
        ([{"name": "x", "input_schema": "{}"}], "tools.0.input_schema"),
        ([{"name": "x", "input_schema": {}, "description": 5}], "tools.0.description"),
    ],
)
def test_malformed_tools_are_refused(tools: Any, param: str) -> None:
    refused({"tools": tools}, param)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    out = translate(tools=[WEATHER], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize("kind", ["auto", "any"])
def test_disable_parallel_tool_use(kind: str) -> None:
    out = translate(tools=[WEATHER], tool_choice={"type": kind, "disable_parallel_tool_use": True})
    assert out["parallel_tool_calls"] is False
    out = translate(tools=[WEATHER], tool_choice={"type": kind, "disable_parallel_tool_use": False})
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize("kind", ["auto", "none"])
def test_tool_choice_without_tools_is_left_out(kind: str) -> None:
    out = translate(tool_choice={"type": kind, "disable_parallel_tool_use": True})
    assert "tool_choice" not in out and "parallel_tool_calls" not in out


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_tool_choice_asking_for_a_tool_without_tools_is_refused(choice: dict[str, Any]) -> None:
    refused({"tool_choice": choice}, "tool_choice", "needs 'tools'")


@pytest.mark.parametrize(
    "choice", ["auto", {"type": "function"}, {"type": "tool"}, {"type": "tool", "name": ""}]
)
def test_tool_choice_of_another_shape_is_refused(choice: Any) -> None:
    refused({"tools": [WEATHER], "tool_choice": choice}, "tool_choice")


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (1024, "low"),
        (4095, "low"),
        (4096, "medium"),
        (16383, "medium"),
        (16384, "high"),
        (64000, "high"),
    ],
)
def test_thinking_budget_becomes_reasoning_effort(budget: int, effort: str) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget}
    assert translate(REASONING, thinking=thinking)["reasoning_effort"] == effort


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "adaptive"}, "medium"),
        ({"type": "adaptive", "display": "omitted"}, "medium"),
        ({"type": "between_tools"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
def test_other_thinking_types(thinking: dict[str, Any], effort: str | None) -> None:
    assert translate(REASONING, thinking=thinking).get("reasoning_effort") == effort


def test_thinking_is_dropped_for_a_target_without_reasoning_effort() -> None:
    out = translate(thinking={"type": "enabled", "budget_tokens": 20000})
    assert "reasoning_effort" not in out


@pytest.mark.parametrize(
    ("thinking", "param"),
    [
        ({"type": "enabled"}, "thinking.budget_tokens"),
        ({"type": "enabled", "budget_tokens": "2000"}, "thinking.budget_tokens"),
        ({"type": "enabled", "budget_tokens": 0}, "thinking.budget_tokens"),
        ({"type": "sometimes"}, "thinking.type"),
        ("enabled", "thinking.type"),
    ],
)
def test_malformed_thinking_is_refused_whatever_the_target(thinking: Any, param: str) -> None:
    refused({"thinking": thinking}, param)


@pytest.mark.parametrize(
    ("effort", "expected"),
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"), ("max", "high")],
)
def test_output_config_effort(effort: str, expected: str) -> None:
    out = translate(REASONING, output_config={"effort": effort})
    assert out["reasoning_effort"] == expected
    assert "reasoning_effort" not in translate(output_config={"effort": effort})


def test_output_config_effort_wins_over_thinking() -> None:
    out = translate(
        REASONING,
        thinking={"type": "enabled", "budget_tokens": 2000},
        output_config={"effort": "max"},
    )
    assert out["reasoning_effort"] == "high"


def test_thinking_decides_when_output_config_has_no_effort() -> None:
    out = translate(
        REASONING, thinking={"type": "adaptive"}, output_config={"effort": None, "format": None}
    )
    assert out["reasoning_effort"] == "medium"


def test_output_config_format_becomes_a_strict_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    out = translate(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ("high", "output_config"),
        ({"effort": "extreme"}, "output_config.effort"),
        ({"format": {"type": "json_schema"}}, "output_config.format"),
        ({"format": {"type": "text"}}, "output_config.format"),
        ({"format": "json"}, "output_config.format"),
        ({"task_budget": {"total": 100}}, "output_config.task_budget"),
    ],
)
def test_malformed_output_config_is_refused(config: Any, param: str) -> None:
    refused({"output_config": config}, param)


def test_fields_without_effect_are_ignored() -> None:
    out = translate(
        service_tier="auto",
        container="container_011",
        inference_geo="us",
        speed="fast",
        diagnostics={"previous_message_id": None},
        cache_control={"type": "ephemeral"},
    )
    assert out == translate()


@pytest.mark.parametrize(
    "name", ["frequency_penalty", "mcp_servers", "context_management", "n", "betas", "seed"]
)
def test_unknown_fields_are_refused_by_name(name: str) -> None:
    refused({name: 1}, name, f"'{name}'")


def test_fields_sent_as_null_count_as_absent() -> None:
    out = translate(
        system=None,
        stop_sequences=None,
        temperature=None,
        top_p=None,
        top_k=None,
        metadata=None,
        tools=None,
        tool_choice=None,
        thinking=None,
        output_config=None,
        container=None,
        some_future_field=None,
    )
    assert out == translate()


def test_the_anthropic_sdks_own_request_translates_to_valid_chat(sdk: MockAnthropic) -> None:
    sdk.answer(messages_answer(chat_completion(), MODEL))
    sdk.client.messages.create(
        model=MODEL,
        max_tokens=2048,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, PNG]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Call it.", "signature": "sig"},
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C"}],
            },
        ],
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        metadata={"user_id": "user_abc"},
        stop_sequences=["END"],
        thinking={"type": "adaptive"},
        output_config={"effort": "high"},
        service_tier="auto",
        cache_control={"type": "ephemeral"},
    )
    (sent,) = sdk.requests
    out = chat_request(sent, REASONING, stream=False)
    assert_valid("CreateChatCompletionRequest", out)
    assert out["reasoning_effort"] == "high"
    assert out["parallel_tool_calls"] is False
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool"]


def test_the_anthropic_sdks_streaming_request_translates(sdk: MockAnthropic) -> None:
    sdk.stream(translate_stream(stream_of(chunk({"content": "Hi"}), finish_chunk("stop"))))
    with sdk.client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        stream.until_done()
    (sent,) = sdk.requests
    assert sent["stream"] is True
    out = chat_request(sent, ChatTarget(), stream=True)
    assert_valid("CreateChatCompletionRequest", out)
    assert out["stream_options"] == {"include_usage": True}


# ---------------------------------------------------------------------------------- answer


def chat_completion(
    content: str | None = "Hello! How can I help?",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = "stop",
    usage: dict[str, Any] | None = None,
    **message: Any,
) -> dict[str, Any]:
    """An OpenAI chat.completion, checked against OpenAI's schema."""
    body: dict[str, Any] = {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage
        or {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "service_tier": "default",
    }
    if tool_calls is not None:
        body["choices"][0]["message"]["tool_calls"] = tool_calls
    if finish_reason is not None:
        assert_valid("CreateChatCompletionResponse", body)
    return body


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def answer(chat: dict[str, Any], model: str = MODEL) -> dict[str, Any]:
    """Translate an answer and check it is an Anthropic Message."""
    out = messages_answer(chat, model)
    message = Message.model_validate(out)
    assert message.model_dump(exclude_unset=True) == out
    return out


def test_text_answer() -> None:
    assert answer(chat_completion()) == {
        "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM_MODEL,
        "content": [{"type": "text", "text": "Hello! How can I help?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 19,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 10,
        },
    }


@pytest.mark.parametrize("model", [None, ""])
def test_answer_model_falls_back_to_the_requested_one(model: Any) -> None:
    chat = chat_completion()
    chat["model"] = model
    assert messages_answer(chat, MODEL)["model"] == MODEL


@pytest.mark.parametrize(
    ("chat_id", "message_id"),
    [
        ("chatcmpl-abc", "msg_abc"),
        ("gen-123", "msg_gen-123"),
        ("chatcmpl-msg_01XF", "msg_01XF"),
        ("", "msg_chat"),
        (None, "msg_chat"),
        (12, "msg_chat"),
    ],
)
def test_answer_id(chat_id: Any, message_id: str) -> None:
    chat = chat_completion()
    chat["id"] = chat_id
    assert messages_answer(chat, MODEL)["id"] == message_id


def test_tool_call_answer() -> None:
    out = answer(
        chat_completion(
            "Let me check.",
            tool_calls=[
                call("call_abc", "get_weather", '{"city": "Paris"}'),
                call("call_def", "get_time", "{}"),
            ],
            finish_reason="tool_calls",
        )
    )
    assert out["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_def", "name": "get_time", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("arguments", "tool_input"),
    [
        ("", {}),
        ('{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
        ('{"city": "Par', {"_raw": '{"city": "Par'}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
        ("null", {"_raw": "null"}),
        ('{"x": NaN}', {"_raw": '{"x": NaN}'}),
    ],
)
def test_tool_call_arguments(arguments: str, tool_input: dict[str, Any]) -> None:
    chat = chat_completion(None, tool_calls=[call("call_1", "f", arguments)])
    assert answer(chat)["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": tool_input}
    ]


def test_tool_call_arguments_sent_as_an_object_are_kept() -> None:
    chat = chat_completion(None)
    chat["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    ]
    assert answer(chat)["content"][0]["input"] == {"a": 1}


def test_tool_call_without_an_id_gets_one() -> None:
    chat = chat_completion(None)
    chat["choices"][0]["message"]["tool_calls"] = [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert answer(chat)["content"][0]["id"] == "call_0"


def test_non_function_tool_calls_are_skipped() -> None:
    chat = chat_completion("ok")
    chat["choices"][0]["message"]["tool_calls"] = [
        {"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}},
        "junk",
    ]
    assert [b["type"] for b in answer(chat)["content"]] == ["text"]


def test_legacy_function_call_becomes_tool_use() -> None:
    chat = chat_completion(
        None, function_call={"name": "f", "arguments": '{"a":1}'}, finish_reason="function_call"
    )
    out = answer(chat)
    assert out["content"] == [{"type": "tool_use", "id": "call_0", "name": "f", "input": {"a": 1}}]
    assert out["stop_reason"] == "tool_use"


def test_refusal_becomes_text() -> None:
    chat = chat_completion(None, finish_reason="content_filter")
    chat["choices"][0]["message"]["refusal"] = "I can't help with that."
    out = answer(chat)
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
        ("eos", "end_turn"),
    ],
)
def test_stop_reason(finish_reason: str | None, stop_reason: str) -> None:
    chat = chat_completion()
    chat["choices"][0]["finish_reason"] = finish_reason
    assert answer(chat)["stop_reason"] == stop_reason


def test_stop_with_tool_calls_is_tool_use() -> None:
    chat = chat_completion(None, tool_calls=[call("c", "f", "{}")], finish_reason="stop")
    assert answer(chat)["stop_reason"] == "tool_use"


def test_length_with_tool_calls_stays_max_tokens() -> None:
    chat = chat_completion(None, tool_calls=[call("c", "f", '{"a"')], finish_reason="length")
    assert answer(chat)["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("content", [None, ""])
def test_empty_answer_has_no_blocks(content: str | None) -> None:
    assert answer(chat_completion(content))["content"] == []


def test_content_given_as_parts_is_joined() -> None:
    chat = chat_completion()
    chat["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "Hel"},
        {"type": "text", "text": "lo"},
        {"type": "image_url"},
    ]
    assert answer(chat)["content"] == [{"type": "text", "text": "Hello"}]


def test_reasoning_content_is_dropped() -> None:
    chat = chat_completion("42")
    chat["choices"][0]["message"]["reasoning_content"] = "Let me think..."
    assert answer(chat)["content"] == [{"type": "text", "text": "42"}]


def test_only_the_first_choice_is_used() -> None:
    chat = chat_completion("first")
    second = json.loads(json.dumps(chat["choices"][0]))
    second["index"], second["message"]["content"] = 1, "second"
    chat["choices"].append(second)
    assert answer(chat)["content"] == [{"type": "text", "text": "first"}]


def test_answer_without_usage() -> None:
    chat = chat_completion()
    del chat["usage"]
    assert answer(chat)["usage"] == {"input_tokens": 0, "output_tokens": 0}


@pytest.mark.parametrize(
    "chat",
    [
        {},
        {"id": "x", "object": "chat.completion"},
        {"choices": []},
        {"choices": "none"},
        {"choices": ["x"]},
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
        {"choices": [{"index": 0, "message": "hi"}]},
        {"error": {"message": "overloaded"}},
    ],
)
def test_what_is_not_a_chat_completion_is_malformed(chat: dict[str, Any]) -> None:
    with pytest.raises(UpstreamMalformed):
        messages_answer(chat, MODEL)


def test_answer_through_the_anthropic_sdk(sdk: MockAnthropic) -> None:
    chat = chat_completion(
        "Checking.",
        tool_calls=[call("call_abc", "get_weather", '{"city":"Paris"}')],
        finish_reason="tool_calls",
        usage={
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
        },
    )
    sdk.answer(messages_answer(chat, MODEL))
    message = sdk.client.messages.create(model=MODEL, max_tokens=1024, messages=HELLO)
    assert message.id == "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "text" and message.content[0].text == "Checking."
    assert message.content[1].type == "tool_use" and message.content[1].input == {"city": "Paris"}
    assert message.usage.input_tokens == 86
    assert message.usage.cache_read_input_tokens == 1920
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.output_tokens == 300


# ---------------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, {"input_tokens": 0, "output_tokens": 0}),
        ("junk", {"input_tokens": 0, "output_tokens": 0}),
        ({"prompt_tokens": 10, "completion_tokens": 5}, {"input_tokens": 10, "output_tokens": 5}),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 60},
            },
            {
                "input_tokens": 40,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 60,
                "output_tokens": 5,
            },
        ),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30},
            },
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 30,
                "cache_read_input_tokens": 60,
                "output_tokens": 5,
            },
        ),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cache_write_tokens": 30},
            },
            {
                "input_tokens": 70,
                "cache_creation_input_tokens": 30,
                "cache_read_input_tokens": 0,
                "output_tokens": 5,
            },
        ),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": None},
            },
            {"input_tokens": 10, "output_tokens": 5},
        ),
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None},
            {"input_tokens": 10, "output_tokens": 5},
        ),
        (
            {
                "prompt_tokens": True,
                "completion_tokens": False,
                "prompt_tokens_details": {"cached_tokens": True},
            },
            {"input_tokens": 0, "output_tokens": 0},
        ),
        (
            {"prompt_tokens": "10", "completion_tokens": 2.5},
            {"input_tokens": 0, "output_tokens": 0},
        ),
        ({"prompt_tokens": -3, "completion_tokens": -1}, {"input_tokens": 0, "output_tokens": 0}),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 50},
            },
            {
                "input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 50,
                "output_tokens": 1,
            },
        ),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 40,
                "completion_tokens_details": {"reasoning_tokens": 30},
            },
            {"input_tokens": 10, "output_tokens": 40},
        ),
    ],
)
def test_messages_usage(usage: Any, expected: dict[str, int]) -> None:
    assert messages_usage(usage) == expected


# ---------------------------------------------------------------------------------- stream


_CHUNKS = ChatChunks(UPSTREAM_MODEL, CHAT_ID, 1_741_569_952)
chunk, role_chunk, finish_chunk = _CHUNKS.chunk, _CHUNKS.role_chunk, _CHUNKS.finish_chunk
usage_chunk, tools_chunk = _CHUNKS.usage_chunk, _CHUNKS.tools_chunk


def run(
    raw: bytes, step: int | None = None, **kwargs: Any
) -> tuple[list[bytes], ChatToMessagesStream]:
    """Feed a whole upstream stream (in pieces of ``step`` bytes), then close it."""
    translator = ChatToMessagesStream("openai-compat", MODEL, **kwargs)
    out: list[bytes] = []
    pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
    for part in pieces:
        out.extend(translator.feed(part))
    out.extend(translator.close())
    return out, translator


def translate_stream(raw: bytes, step: int | None = None, **kwargs: Any) -> list[bytes]:
    return run(raw, step, **kwargs)[0]


def decode(out: list[bytes]) -> list[dict[str, Any]]:
    """Parse translated events; each is one whole event whose name is its type."""
    events = []
    for raw in out:
        parser = SSEParser()
        (event,) = parser.feed(raw)
        assert parser.close() == []
        data = json.loads(event.data)
        assert event.event == data["type"]
        events.append(data)
    return events


def kinds(out: list[bytes]) -> list[str]:
    return [e["type"] for e in decode(out)]


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
    tools_chunk(piece(0, arguments='ty": "Zürich"}')),
    tools_chunk(piece(1, call_id="call_def", name="get_time", arguments="")),
    tools_chunk(piece(1, arguments="{}")),
    finish_chunk("tool_calls"),
    usage_chunk(100, 40),
)


def test_text_stream_events_in_anthropic_order() -> None:
    out, translator = run(TEXT_STREAM)
    events = decode(out)
    assert kinds(out) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"] == {
        "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": UPSTREAM_MODEL,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    assert events[2] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[4] == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": " wörld"},
    }
    assert events[6] == {"type": "content_block_stop", "index": 0}
    assert events[7] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 15,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10,
            "output_tokens": 9,
        },
    }
    assert translator.complete
    assert translator.usage == Usage(25, 9, 34, cache_read_tokens=10)


def test_text_stream_through_the_anthropic_sdk(sdk: MockAnthropic) -> None:
    final = sdk_final(sdk, translate_stream(TEXT_STREAM))
    assert final.id == "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert final.model == UPSTREAM_MODEL
    assert [(b.type, b.text) for b in final.content] == [("text", "Hello wörld!")]
    assert final.stop_reason == "end_turn"
    assert final.stop_sequence is None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (15, 9)
    assert final.usage.cache_read_input_tokens == 10


def test_tool_stream_through_the_anthropic_sdk(sdk: MockAnthropic) -> None:
    out = translate_stream(TOOL_STREAM)
    events = decode(out)
    assert [(e["type"], e.get("index")) for e in events if "index" in e] == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
    ]
    assert events[5]["content_block"] == {
        "type": "tool_use",
        "id": "call_abc",
        "name": "get_weather",
        "input": {},
    }
    assert events[6]["delta"] == {"type": "input_json_delta", "partial_json": '{"ci'}
    final = sdk_final(sdk, out)
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me check."
    assert (final.content[1].id, final.content[1].name) == ("call_abc", "get_weather")
    assert final.content[1].input == {"city": "Zürich"}
    assert (final.content[2].name, final.content[2].input) == ("get_time", {})
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (100, 40)


@pytest.mark.parametrize("raw", [TEXT_STREAM, TOOL_STREAM])
def test_any_chunking_gives_the_same_output(raw: bytes) -> None:
    whole = translate_stream(raw)
    assert translate_stream(raw, 1) == whole
    assert translate_stream(raw, 7) == whole
    assert translate_stream(raw.replace(b"\n", b"\r\n"), 1) == whole
    assert translate_stream(raw.replace(b"\n", b"\r"), 3) == whole


def test_byte_by_byte_through_the_anthropic_sdk_in_odd_pieces(sdk: MockAnthropic) -> None:
    final = sdk_final(sdk, translate_stream(TOOL_STREAM, 1), step=5)
    assert final.content[1].input == {"city": "Zürich"}


def test_unicode_split_mid_character_passes_through_exactly(sdk: MockAnthropic) -> None:
    raw = stream_of(
        chunk({"content": "naïve 🙂 ✓"}),
        tools_chunk(piece(0, call_id="c1", name="echo", arguments='{"t": "日本')),
        tools_chunk(piece(0, arguments='語 🙂"}')),
        finish_chunk("tool_calls"),
    )
    out = translate_stream(raw, 1)
    assert out == translate_stream(raw)
    final = sdk_final(sdk, out)
    assert final.content[0].text == "naïve 🙂 ✓"
    assert final.content[1].input == {"t": "日本語 🙂"}


def test_nothing_is_sent_until_there_is_content() -> None:
    translator = ChatToMessagesStream("p", MODEL)
    assert translator.feed(stream_of(role_chunk(), done=False)) == []
    assert translator.feed(b": keep-alive\n\n") == []
    out = translator.feed(stream_of(chunk({"content": "Hi"}), done=False))
    assert kinds(out) == ["message_start", "ping", "content_block_start", "content_block_delta"]


def test_the_translated_events_are_whole() -> None:
    translator = ChatToMessagesStream("p", MODEL)
    raw = stream_of(chunk({"content": "Hi"}), finish_chunk("stop"))
    out = [event for byte in range(len(raw)) for event in translator.feed(raw[byte : byte + 1])]
    assert all(event.endswith(b"\n\n") and event.count(b"\n\n") == 1 for event in out)
    assert translator.complete


def test_tool_call_whose_name_comes_after_its_first_piece() -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="call_1", arguments='{"a"')),
        tools_chunk(piece(0, name="late_name", arguments=": 1")),
        tools_chunk(piece(0, arguments="}")),
        finish_chunk("tool_calls"),
    )
    events = decode(translate_stream(raw))
    assert events[2]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "late_name",
        "input": {},
    }
    partial = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert partial == ['{"a": 1', "}"]  # what waited for the name goes in one delta


def test_tool_call_that_never_gets_a_name_still_gets_its_block() -> None:
    raw = stream_of(tools_chunk(piece(0, arguments="{}")), finish_chunk("tool_calls"))
    events = decode(translate_stream(raw))
    assert events[2]["content_block"] == {
        "type": "tool_use",
        "id": "call_0",
        "name": "",
        "input": {},
    }


def test_tool_call_without_arguments_has_empty_input(sdk: MockAnthropic) -> None:
    raw = stream_of(tools_chunk(piece(0, call_id="c", name="now")), finish_chunk("tool_calls"))
    out = translate_stream(raw)
    assert "content_block_delta" not in kinds(out)
    assert sdk_final(sdk, out).content[0].input == {}


def test_whole_parallel_tool_calls_in_one_chunk(sdk: MockAnthropic) -> None:
    raw = stream_of(
        tools_chunk(
            piece(0, call_id="c0", name="a", arguments='{"x":1}'),
            piece(1, call_id="c1", name="b", arguments='{"y":2}'),
        ),
        finish_chunk("tool_calls"),
    )
    final = sdk_final(sdk, translate_stream(raw))
    assert [(b.id, b.name, b.input) for b in final.content] == [
        ("c0", "a", {"x": 1}),
        ("c1", "b", {"y": 2}),
    ]


def test_tool_pieces_without_index_follow_the_open_call(sdk: MockAnthropic) -> None:
    raw = stream_of(
        off_spec({"tool_calls": [{"id": "c0", "function": {"name": "a", "arguments": '{"x"'}}]}),
        off_spec({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
        off_spec({"tool_calls": [{"id": "c1", "function": {"name": "b", "arguments": "{}"}}]}),
        finish_chunk("tool_calls"),
    )
    final = sdk_final(sdk, translate_stream(raw))
    assert [(b.id, b.input) for b in final.content] == [("c0", {"x": 1}), ("c1", {})]


def test_text_after_a_tool_call_opens_a_new_text_block(sdk: MockAnthropic) -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="c0", name="a", arguments="{}")),
        chunk({"content": "Done."}),
        finish_chunk("stop"),
    )
    final = sdk_final(sdk, translate_stream(raw))
    assert [b.type for b in final.content] == ["tool_use", "text"]
    assert final.stop_reason == "tool_use"  # "stop" with a tool call, as in answers


def test_a_repeat_of_a_closed_tool_call_with_nothing_new_is_ignored() -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="c0", name="a", arguments="{}")),
        tools_chunk(piece(1, call_id="c1", name="b", arguments="{}")),
        tools_chunk(piece(0, call_id="c0")),
        finish_chunk("tool_calls"),
    )
    out, translator = run(raw)
    assert translator.complete
    assert kinds(out).count("content_block_start") == 2


def test_interleaved_tool_call_pieces_fail_after_what_came_before() -> None:
    raw = stream_of(
        tools_chunk(piece(0, call_id="c0", name="a", arguments='{"x":')),
        tools_chunk(piece(1, call_id="c1", name="b", arguments="{}")),
        tools_chunk(piece(0, arguments="1}")),
        finish_chunk("tool_calls"),
    )
    translator = ChatToMessagesStream("compat", MODEL)
    out = translator.feed(raw)
    assert "content_block_start" in kinds(out)
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(b"")
    assert info.value.error_code == "upstream_malformed_response"
    assert "tool call 0" in str(info.value.description)
    with pytest.raises(UpstreamStreamFailed):
        translator.close()
    assert not translator.complete


def test_refusal_delta_is_text(sdk: MockAnthropic) -> None:
    raw = stream_of(
        chunk({"refusal": "I can't "}),
        chunk({"refusal": "help."}),
        finish_chunk("content_filter"),
    )
    final = sdk_final(sdk, translate_stream(raw))
    assert final.content[0].text == "I can't help."
    assert final.stop_reason == "refusal"


def test_reasoning_deltas_are_dropped() -> None:
    raw = stream_of(
        chunk({"reasoning_content": "thinking..."}),
        chunk({"content": "42"}),
        finish_chunk("stop"),
    )
    events = decode(translate_stream(raw))
    assert [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"] == [
        "text"
    ]


def test_legacy_function_call_delta_is_a_tool_use(sdk: MockAnthropic) -> None:
    raw = stream_of(
        chunk({"function_call": {"name": "f", "arguments": '{"a"'}}),
        chunk({"function_call": {"arguments": ":1}"}}),
        finish_chunk("function_call"),
    )
    final = sdk_final(sdk, translate_stream(raw))
    assert (final.content[0].name, final.content[0].input) == ("f", {"a": 1})
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("eos", "end_turn"),
    ],
)
def test_stream_stop_reason(finish_reason: str, stop_reason: str) -> None:
    raw = stream_of(chunk({"content": "x"}), off_spec({}, finish_reason))
    assert decode(translate_stream(raw))[-2]["delta"]["stop_reason"] == stop_reason


def test_empty_answer_is_a_message_without_blocks(sdk: MockAnthropic) -> None:
    raw = stream_of(role_chunk(), finish_chunk("stop"), usage_chunk(5, 0))
    out, translator = run(raw)
    assert kinds(out) == ["message_start", "ping", "message_delta", "message_stop"]
    assert translator.complete
    final = sdk_final(sdk, out)
    assert final.content == []


def test_the_stream_ends_at_the_usage_chunk_after_the_finish() -> None:
    translator = ChatToMessagesStream("p", MODEL)
    out = translator.feed(stream_of(chunk({"content": "x"}), finish_chunk("stop"), done=False))
    assert kinds(out)[-1] == "content_block_stop"  # the block closes at the finish
    assert not translator.complete
    out = translator.feed(stream_of(usage_chunk(), done=False))
    assert kinds(out) == ["message_delta", "message_stop"]
    assert translator.complete
    assert translator.feed(b"data: [DONE]\n\n") == []
    assert translator.feed(b"data: not json\n\n") == []  # after the end, nothing is read
    assert translator.close() == []


def test_the_stream_ends_at_done_without_usage() -> None:
    out, translator = run(stream_of(chunk({"content": "x"}), finish_chunk("stop")))
    assert kinds(out)[-2:] == ["message_delta", "message_stop"]
    assert decode(out)[-2]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert translator.complete
    assert translator.usage is None


def test_usage_carried_by_the_finish_chunk_waits_for_done() -> None:
    finish = chunk(
        {}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    )
    translator = ChatToMessagesStream("p", MODEL)
    out = translator.feed(stream_of(chunk({"content": "x"}), finish, done=False))
    assert "message_delta" not in kinds(out)
    out = translator.feed(b"data: [DONE]\n\n")
    assert kinds(out) == ["message_delta", "message_stop"]
    assert decode(out)[0]["usage"] == {"input_tokens": 3, "output_tokens": 2}


def test_usage_with_the_finish_then_the_end_of_the_stream_is_complete() -> None:
    finish = chunk(
        {}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    )
    out, translator = run(stream_of(chunk({"content": "x"}), finish, done=False))
    assert kinds(out)[-2:] == ["message_delta", "message_stop"]
    assert translator.complete


def test_usage_before_the_finish_does_not_end_a_stream_without_done() -> None:
    early = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    raw = stream_of(chunk({"content": "x"}, usage=early), finish_chunk("stop"), done=False)
    out, translator = run(raw)
    assert "message_stop" not in kinds(out)
    assert not translator.complete


def test_the_latest_usage_counts() -> None:
    raw = stream_of(
        chunk(
            {"content": "x"}, usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        ),
        finish_chunk("stop"),
        usage_chunk(3, 7),
    )
    out, translator = run(raw)
    assert decode(out)[-2]["usage"] == {"input_tokens": 3, "output_tokens": 7}
    assert translator.usage == Usage(3, 7, 10)


def test_stream_cut_before_the_finish_closes_the_block_only() -> None:
    out, translator = run(stream_of(role_chunk(), chunk({"content": "Hel"}), done=False))
    assert kinds(out) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    assert not translator.complete


def test_stream_cut_inside_a_tool_call_closes_its_block() -> None:
    raw = stream_of(tools_chunk(piece(0, call_id="c", name="f", arguments='{"a"')), done=False)
    out, translator = run(raw)
    assert kinds(out)[-1] == "content_block_stop"
    assert not translator.complete


def test_stream_cut_after_the_finish_without_usage_or_done_is_incomplete() -> None:
    out, translator = run(stream_of(chunk({"content": "x"}), finish_chunk("stop"), done=False))
    assert kinds(out)[-1] == "content_block_stop"
    assert "message_stop" not in kinds(out)
    assert not translator.complete


def test_done_without_a_finish_is_incomplete() -> None:
    out, translator = run(stream_of(chunk({"content": "x"})))
    assert kinds(out)[-1] == "content_block_stop"
    assert not translator.complete


def test_an_empty_upstream_stream_sends_nothing() -> None:
    out, translator = run(b"")
    assert out == []
    assert not translator.complete


def test_last_event_without_its_blank_line_is_still_read() -> None:
    raw = stream_of(chunk({"content": "x"}), finish_chunk("stop")) + b"data: [DONE]"
    out, translator = run(raw.replace(b"data: [DONE]\n\n", b"", 1))
    assert kinds(out)[-1] == "message_stop"
    assert translator.complete


def test_last_event_cut_inside_its_json_is_a_truncation_not_an_error() -> None:
    raw = stream_of(chunk({"content": "x"}), done=False) + b'data: {"id": "chatcmpl-1", "cho'
    out, translator = run(raw)
    assert kinds(out)[-1] == "content_block_stop"
    assert not translator.complete


def test_message_id_given_wins() -> None:
    out = translate_stream(TEXT_STREAM, message_id="msg_gateway_1")
    assert decode(out)[0]["message"]["id"] == "msg_gateway_1"


def test_message_model_falls_back_to_the_requested_one() -> None:
    out = translate_stream(stream_of(off_spec({"content": "x"}), finish_chunk("stop")))
    message = decode(out)[0]["message"]
    assert (message["model"], message["id"]) == (MODEL, "msg_chat")


def test_chunks_without_choices_and_other_choices_are_ignored() -> None:
    other = chunk({"content": "choice one"})
    other["choices"][0]["index"] = 1
    raw = stream_of(
        {"object": "chat.completion.chunk", "choices": None},
        {"id": "x", "object": "keepalive"},
        other,
        chunk({"content": "ok"}),
        finish_chunk("stop"),
    )
    events = decode(translate_stream(raw))
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert texts == ["ok"]


def test_error_before_any_content_sends_nothing_so_the_caller_can_fall_back() -> None:
    translator = ChatToMessagesStream("compat", MODEL)
    error = {"error": {"message": "Overloaded", "type": "server_error", "code": "overloaded"}}
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(stream_of(role_chunk(), error, done=False))
    failure = info.value
    assert failure.description == "Overloaded"
    assert (failure.type, failure.error_code) == ("server_error", "overloaded")
    assert failure.code == 502


def test_error_after_content_is_raised_after_what_came_before() -> None:
    translator = ChatToMessagesStream("compat", MODEL)
    raw = stream_of(
        chunk({"content": "Hel"}), {"error": {"message": "boom"}}, chunk({"content": "lo"})
    )
    out = translator.feed(raw)
    assert kinds(out) == ["message_start", "ping", "content_block_start", "content_block_delta"]
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(b"")
    assert info.value.type == "upstream_error"
    assert info.value.error_code == "upstream_error"
    with pytest.raises(UpstreamStreamFailed):
        translator.close()


def test_error_split_byte_by_byte_is_raised_once_whole() -> None:
    translator = ChatToMessagesStream("compat", MODEL)
    raw = stream_of(
        chunk({"content": "x"}), {"error": {"message": "late", "code": 500}}, done=False
    )
    out: list[bytes] = []
    with pytest.raises(UpstreamStreamFailed) as info:
        for i in range(len(raw)):
            out.extend(translator.feed(raw[i : i + 1]))
    assert info.value.error_code == "500"
    assert kinds(out)[-1] == "content_block_delta"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b'event: error\ndata: {"message": "rate limited", "type": "rate_limit_error"}\n\n',
            "rate limited",
        ),
        (b"event: error\ndata: upstream exploded\n\n", "upstream exploded"),
        (b'data: {"error": "quota exceeded"}\n\n', "quota exceeded"),
        (b'data: {"error": {"code": "x"}}\n\n', "The provider's stream failed."),
    ],
)
def test_error_event_shapes(raw: bytes, message: str) -> None:
    translator = ChatToMessagesStream("compat", MODEL)
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.feed(raw)
    assert info.value.description == message


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_event_that_is_not_a_json_object_fails_the_stream(data: bytes) -> None:
    translator = ChatToMessagesStream("compat", MODEL)
    out = translator.feed(
        stream_of(chunk({"content": "x"}), done=False) + b"data: " + data + b"\n\n"
    )
    assert kinds(out)[-1] == "content_block_delta"
    with pytest.raises(UpstreamStreamFailed) as info:
        translator.close()
    assert info.value.error_code == "upstream_malformed_response"
    assert "compat" in str(info.value.description)
    assert not translator.complete


def test_error_in_the_last_event_without_its_blank_line_is_raised_by_close() -> None:
    translator = ChatToMessagesStream("compat", MODEL)
    assert translator.feed(b'data: {"error": {"message": "cut"}}') == []
    with pytest.raises(UpstreamStreamFailed):
        translator.close()


def test_translators_are_independent() -> None:
    first = ChatToMessagesStream("p", MODEL)
    second = ChatToMessagesStream("p", MODEL)
    first.feed(stream_of(chunk({"content": "x"}), done=False))
    assert second.feed(stream_of(finish_chunk("stop"))) != []
    assert second.complete and not first.complete


def test_it_is_a_stream_translator() -> None:
    assert isinstance(ChatToMessagesStream("p", MODEL), StreamTranslator)


def test_accumulation_by_the_sdk_helper_directly() -> None:
    from anthropic.lib.streaming._messages import accumulate_event

    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in decode(translate_stream(TOOL_STREAM)):
        if event["type"] == "ping":
            continue
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    final = Message.model_validate(snapshot.model_dump())
    assert final.content[1].type == "tool_use" and final.content[1].input == {"city": "Zürich"}
    assert final.stop_reason == "tool_use"
