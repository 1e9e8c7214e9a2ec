"""Replaying a cached answer as a stream: chunk shapes, reassembly, Unicode, and the real SDK."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from proxyapi.cache.replay import replay_events
from tests.schemas import assert_valid

USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 34,
    "total_tokens": 46,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
LONG_TEXT = "".join(f"Sentence {i} of a cached answer. " for i in range(12))
# U+2028/U+2029 and U+0085 are line breaks to str.splitlines(), not to SSE; the rest are
# multi-byte in UTF-8, and the emoji include a ZWJ sequence and a flag (several code points).
UNICODE_TEXT = "A\u2028B\u2029C\u0085D 🙂👩‍💻🇫🇷 漢字かな交じり文 é\u0301 end 😀\u2028😀"
TOOL_ARGS = json.dumps({"city": "Zürich", "days": list(range(40)), "note": "x" * 150})


def chat(
    *choices: dict[str, Any], usage: dict[str, Any] | None = USAGE, **top: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": list(choices),
        **top,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def message_choice(
    content: str | None, index: int = 0, finish: str = "stop", **message: Any
) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": content, "refusal": None, **message},
        "logprobs": None,
        "finish_reason": finish,
    }


TOOL_CHOICE = message_choice(
    None,
    finish="tool_calls",
    tool_calls=[
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": TOOL_ARGS},
        },
        {"id": "call_b", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
    ],
)


def legacy(*choices: dict[str, Any], usage: dict[str, Any] | None = USAGE) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-123",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": list(choices),
    }
    if usage is not None:
        body["usage"] = usage
    return body


def text_choice(text: str, index: int = 0, finish: str = "length") -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def replay(body: dict[str, Any], include_usage: bool = False, chunk_chars: int = 64) -> list[Any]:
    """Replay ``body``, check every event is one whole SSE event, and return the chunks."""
    events = replay_events(encode(body), include_usage=include_usage, chunk_chars=chunk_chars)
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = []
    for event in events[:-1]:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        data = event[len(b"data: ") : -2]
        # One event, one line: no line break SSE would split on inside the payload.
        assert b"\n" not in data and b"\r" not in data
        chunks.append(json.loads(data.decode("utf-8")))
    return chunks


def deltas(chunks: list[Any], index: int = 0) -> list[dict[str, Any]]:
    return [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]


def joined(chunks: list[Any], field: str, index: int = 0) -> str:
    return "".join(d["delta"].get(field) or "" for d in deltas(chunks, index))


def tool_arguments(chunks: list[Any], index: int = 0) -> dict[int, str]:
    args: dict[int, str] = {}
    for choice in deltas(chunks, index):
        for call in choice["delta"].get("tool_calls", []):
            args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    return args


# ---------------------------------------------------------------------------- chat chunks


def test_chat_content_is_cut_into_pieces_that_reassemble() -> None:
    chunks = replay(chat(message_choice(LONG_TEXT)), chunk_chars=64)
    choices = deltas(chunks)
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    assert choices[-1]["delta"] == {} and choices[-1]["finish_reason"] == "stop"
    pieces = [c["delta"]["content"] for c in choices[1:-1]]
    assert "".join(pieces) == LONG_TEXT
    assert len(pieces) == -(-len(LONG_TEXT) // 64)
    assert all(0 < len(p) <= 64 for p in pieces)
    assert [c for c in choices if "role" in c["delta"]] == [choices[0]]
    assert all(c["finish_reason"] is None for c in choices[:-1])
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-123"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1700000000
        assert chunk["model"] == "gpt-4o-mini-2024-07-18"
        assert chunk["system_fingerprint"] == "fp_44709d6fcb"
        assert chunk["choices"][0]["logprobs"] is None
        assert "usage" not in chunk


def test_content_that_fills_whole_pieces_has_no_empty_piece() -> None:
    chunks = replay(chat(message_choice("abcdef")), chunk_chars=3)
    assert [c["delta"] for c in deltas(chunks)] == [
        {"role": "assistant", "content": ""},
        {"content": "abc"},
        {"content": "def"},
        {},
    ]


@pytest.mark.parametrize("content", ["", None])
def test_empty_content_sends_no_content_chunk(content: str | None) -> None:
    chunks = replay(chat(message_choice(content)))
    assert [c["delta"] for c in deltas(chunks)] == [{"role": "assistant", "content": ""}, {}]


def test_absent_or_null_fingerprint_is_omitted_and_service_tier_kept() -> None:
    body = chat(message_choice("hi"), service_tier="default")
    del body["system_fingerprint"]
    for source in (body, {**body, "system_fingerprint": None}):
        for chunk in replay(source):
            assert "system_fingerprint" not in chunk
            assert chunk["service_tier"] == "default"


def test_tool_calls_send_id_and_name_once_then_arguments_in_pieces() -> None:
    chunks = replay(chat(TOOL_CHOICE), chunk_chars=50)
    assert len(TOOL_ARGS) > 150  # several argument pieces
    assert tool_arguments(chunks) == {0: TOOL_ARGS, 1: "{}"}
    calls = [call for d in deltas(chunks) for call in d["delta"].get("tool_calls", [])]
    headers = [call for call in calls if "id" in call]
    assert headers == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "noop", "arguments": ""},
        },
    ]
    assert all("name" not in call["function"] for call in calls if "id" not in call)
    assert all(len(call["function"]["arguments"]) <= 50 for call in calls)
    # Each delta carries one tool call, so the chunks for call 0 all come before call 1's.
    order = [call["index"] for call in calls]
    assert order == sorted(order)
    choices = deltas(chunks)
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    assert not any("content" in c["delta"] for c in choices[1:])
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_content_comes_before_tool_calls() -> None:
    choice = message_choice("Let me check.", finish="tool_calls")
    choice["message"]["tool_calls"] = TOOL_CHOICE["message"]["tool_calls"]
    choices = deltas(replay(chat(choice)))
    kinds = [next(iter(c["delta"]), "end") for c in choices]
    assert kinds[:2] == ["role", "content"] and kinds[-1] == "end"
    assert set(kinds[2:-1]) == {"tool_calls"}


def test_refusal_streams_as_refusal_and_leaves_content_alone() -> None:
    choice = message_choice(None, refusal="I can't help with that request, sorry.")
    chunks = replay(chat(choice), chunk_chars=10)
    choices = deltas(chunks)
    assert choices[0]["delta"] == {"role": "assistant", "refusal": ""}
    assert joined(chunks, "refusal") == "I can't help with that request, sorry."
    assert not any("content" in c["delta"] for c in choices)


def test_deprecated_function_call_streams_like_openai_did() -> None:
    choice = message_choice(
        None, finish="function_call", function_call={"name": "f", "arguments": TOOL_ARGS}
    )
    choices = deltas(replay(chat(choice), chunk_chars=40))
    calls = [c["delta"]["function_call"] for c in choices if "function_call" in c["delta"]]
    assert calls[0] == {"name": "f", "arguments": ""}
    assert all(set(call) == {"arguments"} for call in calls[1:])
    assert "".join(call["arguments"] for call in calls) == TOOL_ARGS


def test_two_choices_stream_in_index_order() -> None:
    # Listed out of order: the replay follows the index, as the SDK keys deltas by it.
    body = chat(message_choice("second " * 20, index=1, finish="length"), message_choice(LONG_TEXT))
    chunks = replay(body, chunk_chars=16)
    indexes = [c["choices"][0]["index"] for c in chunks]
    assert indexes == sorted(indexes) and set(indexes) == {0, 1}
    assert all(len(c["choices"]) == 1 for c in chunks)
    assert joined(chunks, "content", 0) == LONG_TEXT
    assert joined(chunks, "content", 1) == "second " * 20
    for index, finish in ((0, "stop"), (1, "length")):
        choices = deltas(chunks, index)
        assert [c for c in choices if "role" in c["delta"]] == [choices[0]]
        assert [c["finish_reason"] for c in choices] == [None] * (len(choices) - 1) + [finish]


def test_include_usage_adds_a_usage_chunk_and_null_usage_elsewhere() -> None:
    chunks = replay(chat(message_choice(LONG_TEXT)), include_usage=True)
    assert chunks[-1] == {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [],
        "usage": USAGE,
    }
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_without_include_usage_no_chunk_mentions_usage() -> None:
    chunks = replay(chat(message_choice(LONG_TEXT)), include_usage=False)
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_include_usage_without_source_usage_sends_no_usage_chunk() -> None:
    chunks = replay(chat(message_choice("hi"), usage=None), include_usage=True)
    assert all(c["usage"] is None and c["choices"] for c in chunks)


def test_unicode_round_trips_unescaped_across_piece_boundaries() -> None:
    for size in (1, 2, 3, 5, 7):
        events = replay_events(
            encode(chat(message_choice(UNICODE_TEXT))), include_usage=False, chunk_chars=size
        )
        raw = b"".join(events)
        # ensure_ascii=False: the characters travel as UTF-8, not as \\u escapes.
        assert "\u2028".encode() in raw and "🙂".encode() in raw and "漢".encode() in raw
        assert b"\\u" not in raw
        chunks = replay(chat(message_choice(UNICODE_TEXT)), chunk_chars=size)
        assert joined(chunks, "content") == UNICODE_TEXT
        assert all(len(c["delta"].get("content", "")) <= size for c in deltas(chunks))


def test_a_lone_surrogate_survives_as_an_escape() -> None:
    # Legal in JSON, impossible in UTF-8: the replay must not fail on it.
    body = b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"a\\ud83d b"},"finish_reason":"stop"}]}'
    events = replay_events(body, include_usage=False)
    contents = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert "".join(c or "" for c in contents) == "a\ud83d b"


@pytest.mark.parametrize(
    "body",
    [
        chat(message_choice(LONG_TEXT)),
        chat(TOOL_CHOICE, service_tier="default"),
        chat(message_choice(None, refusal="No.")),
        chat(message_choice(UNICODE_TEXT), message_choice("b", index=1, finish="length")),
        chat(
            message_choice(
                "x", finish="function_call", function_call={"name": "f", "arguments": "{}"}
            )
        ),
    ],
)
@pytest.mark.parametrize("include_usage", [False, True])
def test_every_chat_chunk_matches_the_openai_spec(
    body: dict[str, Any], include_usage: bool
) -> None:
    for chunk in replay(body, include_usage=include_usage, chunk_chars=7):
        # The spec marks usage nullable with OpenAPI's "nullable" next to a $ref, which JSON
        # Schema ignores; the null itself is what the spec describes and the API sends.
        if chunk.get("usage", {}) is None:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        assert_valid("CreateChatCompletionStreamResponse", chunk)


# ---------------------------------------------------------------------------- legacy completions


def test_legacy_completion_streams_text_completion_chunks() -> None:
    body = legacy(text_choice(LONG_TEXT), text_choice("", index=1, finish="stop"))
    chunks = replay(body, include_usage=True, chunk_chars=20)
    assert all(c["object"] == "text_completion" and c["id"] == "cmpl-123" for c in chunks)
    assert all(
        c["model"] == "gpt-3.5-turbo-instruct" and c["created"] == 1700000000 for c in chunks
    )
    first = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == 0]
    assert "".join(c["text"] for c in first) == LONG_TEXT
    assert all(0 < len(c["text"]) <= 20 for c in first[:-1])
    assert first[-1] == {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}
    assert all(c["finish_reason"] is None for c in first[:-1])
    second = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == 1]
    assert second == [{"index": 1, "text": "", "logprobs": None, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    assert all(c["usage"] is None for c in chunks[:-1])
    # The spec's completion schema types finish_reason as non-null, so only chunks that end a
    # choice (or carry usage) can be held to it.
    for chunk in chunks:
        if not chunk["choices"] or chunk["choices"][0]["finish_reason"] is not None:
            assert_valid(
                "CreateCompletionResponse", {k: v for k, v in chunk.items() if v is not None}
            )


def test_legacy_without_include_usage_has_no_usage_key() -> None:
    chunks = replay(legacy(text_choice("hello")), include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["text"] for c in chunks] == ["hello", ""]


# ---------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"object": "list", "data": []}', "'list' object"),
        (b'{"choices": []}', "None object"),
        (json.dumps({**chat(), "object": "chat.completion.chunk"}).encode(), "chunk"),
        (json.dumps(chat()).encode(), "no choices"),
        (json.dumps({**chat(), "choices": None}).encode(), "no choices"),
        (json.dumps(legacy()).encode(), "no choices"),
        (json.dumps(chat({"message": {"content": "x"}})).encode(), "integer index"),
        (json.dumps(chat({"index": 0, "finish_reason": "stop"})).encode(), "no message"),
        (json.dumps(chat(message_choice(["parts"]))).encode(), "content is not a string"),
        (json.dumps({**chat(message_choice("x")), "id": None}).encode(), "id or model"),
        (json.dumps({**chat(message_choice("x")), "created": "now"}).encode(), "created"),
        (
            json.dumps(
                chat(message_choice(None, tool_calls=[{"id": "c", "type": "custom", "custom": {}}]))
            ).encode(),
            "type 'custom'",
        ),
        (
            json.dumps(chat(message_choice(None, tool_calls=[{"type": "function"}]))).encode(),
            "no id",
        ),
        (
            json.dumps(
                chat(
                    message_choice(None, tool_calls=[{"id": "c", "function": {"arguments": "{}"}}])
                )
            ).encode(),
            "no function name",
        ),
        (json.dumps(legacy({"index": 0, "text": 5})).encode(), "text is not a string"),
    ],
)
def test_invalid_input_raises_value_error(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replay_events(body, include_usage=True)


def test_chunk_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_chars"):
        replay_events(encode(chat(message_choice("x"))), include_usage=False, chunk_chars=0)


# ---------------------------------------------------------------------------- the openai SDK


@contextmanager
def serving(body: bytes) -> Iterator[tuple[str, list[str]]]:
    """Serve ``body`` as an SSE response to any POST; yield the base URL and the paths asked."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def sdk_chat_chunks(body: dict[str, Any], **kwargs: Any) -> list[Any]:
    events = b"".join(replay_events(encode(body), **kwargs))
    with (
        serving(events) as (url, paths),
        openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=10) as client,
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as stream,
    ):
        chunks = list(stream)
    assert paths == ["/v1/chat/completions"]
    return chunks


def test_sdk_parses_replayed_chat_content_and_usage() -> None:
    text = LONG_TEXT + UNICODE_TEXT
    chunks = sdk_chat_chunks(chat(message_choice(text)), include_usage=True, chunk_chars=9)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert all(c.id == "chatcmpl-123" and c.system_fingerprint == "fp_44709d6fcb" for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == text
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in with_choices][-2:] == [None, "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == USAGE
    assert all(c.usage is None for c in chunks[:-1])


def test_sdk_parses_replayed_tool_calls_and_two_choices() -> None:
    body = chat(TOOL_CHOICE, message_choice("\u2028" * 3 + "🙂", index=1))
    chunks = sdk_chat_chunks(body, include_usage=False, chunk_chars=11)
    assert all(c.usage is None for c in chunks)
    args: dict[int, str] = {}
    ids: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    content = ""
    for chunk in chunks:
        (choice,) = chunk.choices
        if choice.index == 1:
            content += choice.delta.content or ""
        for call in choice.delta.tool_calls or []:
            assert call.function is not None
            args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
            if call.id is not None:
                ids.setdefault(call.index, []).append(f"{call.id}:{call.function.name}")
        if choice.finish_reason is not None:
            finish[choice.index] = choice.finish_reason
    assert args == {0: TOOL_ARGS, 1: "{}"}
    assert ids == {0: ["call_a:get_weather"], 1: ["call_b:noop"]}
    assert content == "\u2028" * 3 + "🙂"
    assert finish == {0: "tool_calls", 1: "stop"}


def test_sdk_stream_helper_rebuilds_the_cached_message() -> None:
    choice = message_choice("Checking: " + UNICODE_TEXT, finish="tool_calls")
    choice["message"]["tool_calls"] = TOOL_CHOICE["message"]["tool_calls"]
    source = chat(choice, message_choice(None, index=1, refusal="No.\u2029"))
    events = b"".join(replay_events(encode(source), include_usage=True, chunk_chars=5))
    with (
        serving(events) as (url, _),
        openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=10) as client,
        client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = stream.get_final_completion()
    assert final.id == "chatcmpl-123" and final.usage is not None
    assert final.usage.total_tokens == 46
    first, second = final.choices
    assert first.message.content == choice["message"]["content"]
    assert first.finish_reason == "tool_calls"
    assert [
        (c.id, c.function.name, c.function.arguments) for c in first.message.tool_calls or []
    ] == [
        ("call_a", "get_weather", TOOL_ARGS),
        ("call_b", "noop", "{}"),
    ]
    assert second.message.content is None and second.message.refusal == "No.\u2029"


def test_sdk_parses_replayed_legacy_completion() -> None:
    body = legacy(text_choice(UNICODE_TEXT + LONG_TEXT), text_choice("two", index=1, finish="stop"))
    events = b"".join(replay_events(encode(body), include_usage=True, chunk_chars=4))
    with (
        serving(events) as (url, paths),
        openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=10) as client,
        client.completions.create(model="m", prompt="hi", stream=True) as stream,
    ):
        chunks = list(stream)
    assert paths == ["/v1/completions"]
    assert all(isinstance(c, openai.types.Completion) for c in chunks)
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        texts[choice.index] = texts.get(choice.index, "") + choice.text
        if choice.finish_reason is not None:
            finish[choice.index] = choice.finish_reason
    assert texts == {0: UNICODE_TEXT + LONG_TEXT, 1: "two"}
    assert finish == {0: "length", 1: "stop"}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 34
