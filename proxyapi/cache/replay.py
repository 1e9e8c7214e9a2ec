"""Replay a cached, complete answer as the server-sent events of the equivalent stream.

A client that asked for ``"stream": true`` may be answered from a cached non-streaming answer:
:func:`replay_events` cuts it into the chunks OpenAI would have streamed (``chat.completion.chunk``
for chat, ``text_completion`` for the legacy endpoint), so the official SDKs parse it exactly like
a live stream. The module is pure: bytes in, bytes out.

Choices are replayed one after the other rather than interleaved; the SDKs key every delta by its
choice ``index``, so the order between choices does not matter to them. Per-token ``logprobs``
cannot be cut along the replayed pieces and are sent as null.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from proxyapi.jsonio import compact_json
from proxyapi.providers.sse import sse_event

DONE_EVENT = b"data: [DONE]\n\n"
_CHAT = "chat.completion"
_TEXT = "text_completion"


def replay_events(body: bytes, *, include_usage: bool, chunk_chars: int = 64) -> list[bytes]:
    """Turn a cached non-streaming answer into the SSE events of the equivalent stream."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be at least 1, not {chunk_chars}")
    try:
        source = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise ValueError(f"the cached answer is not JSON: {exc}") from exc
    if not isinstance(source, dict):
        raise ValueError("the cached answer is not a JSON object")
    kind = source.get("object")
    if kind not in (_CHAT, _TEXT):
        raise ValueError(
            f"the cached answer is a {kind!r} object, not {_CHAT!r} or {_TEXT!r}; "
            "only complete non-streaming answers can be replayed"
        )
    choices = _choices(source)
    replay = _Replay(source, include_usage=include_usage)
    for choice in choices:
        if kind == _CHAT:
            replay.chat_choice(choice, chunk_chars)
        else:
            replay.text_choice(choice, chunk_chars)
    usage = source.get("usage")
    if include_usage and isinstance(usage, dict):
        replay.add([], usage=usage)
    replay.events.append(DONE_EVENT)
    return replay.events


def _event(chunk: dict[str, Any]) -> bytes:
    """Encode one chunk as a whole SSE event."""
    return sse_event(chunk)


def _pieces(text: str, size: int) -> Iterator[str]:
    """Yield ``text`` in consecutive pieces of at most ``size`` code points."""
    # Python strings index code points, so a slice never cuts a UTF-8 sequence or an emoji.
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _choices(source: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the answer's choices ordered by index, after checking their shape."""
    choices = source.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("the cached answer has no choices")
    for choice in choices:
        if not isinstance(choice, dict) or not _is_int(choice.get("index")):
            raise ValueError("the cached answer has a choice without an integer index")
    return sorted(choices, key=lambda choice: int(choice["index"]))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_str(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"the cached answer's {what} is not a string")
    return value


class _Replay:
    """Accumulates the events of one replayed stream."""

    def __init__(self, source: dict[str, Any], *, include_usage: bool) -> None:
        if not isinstance(source.get("id"), str) or not isinstance(source.get("model"), str):
            raise ValueError("the cached answer lacks a string id or model")
        if not _is_int(source.get("created")):
            raise ValueError("the cached answer lacks an integer created time")
        is_chat = source["object"] == _CHAT
        # Key order as OpenAI sends it, so a replay reads like the real thing in a capture.
        self.head: dict[str, Any] = {
            "id": source["id"],
            "object": "chat.completion.chunk" if is_chat else _TEXT,
            "created": source["created"],
            "model": source["model"],
        }
        # Null is dropped rather than copied: the spec types both as strings, and the SDKs read
        # an absent key and a null one alike.
        for key in ("service_tier", "system_fingerprint"):
            if source.get(key) is not None:
                self.head[key] = source[key]
        self.include_usage = include_usage
        self.events: list[bytes] = []

    def add(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
        """Append one chunk; with usage requested, every chunk but the last says null."""
        chunk = {**self.head, "choices": choices}
        if self.include_usage:
            chunk["usage"] = usage
        self.events.append(_event(chunk))

    def delta(self, index: int, delta: dict[str, Any], finish_reason: Any = None) -> None:
        """Append one chat chunk for one choice."""
        self.add(
            [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )

    def chat_choice(self, choice: dict[str, Any], size: int) -> None:
        """Append the chunks of one chat choice: role, content, tool calls, finish."""
        index = choice["index"]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ValueError(f"choice {index} of the cached answer has no message")
        content = _optional_str(message.get("content"), "message content")
        refusal = _optional_str(message.get("refusal"), "message refusal")
        # A refusal arrives in its own field, and the accumulated message keeps content null.
        first: dict[str, Any] = {"role": "assistant"}
        if refusal is None:
            first["content"] = ""
        else:
            first["refusal"] = ""
        self.delta(index, first)
        for piece in _pieces(content or "", size):
            self.delta(index, {"content": piece})
        for piece in _pieces(refusal or "", size):
            self.delta(index, {"refusal": piece})
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise ValueError(f"choice {index} of the cached answer has malformed tool_calls")
            for position, call in enumerate(tool_calls):
                self._tool_call(index, position, call, size)
        function_call = message.get("function_call")
        if function_call is not None:
            name, arguments = _function(function_call, f"choice {index}'s function_call")
            self.delta(index, {"function_call": {"name": name, "arguments": ""}})
            for piece in _pieces(arguments, size):
                self.delta(index, {"function_call": {"arguments": piece}})
        self.delta(index, {}, choice.get("finish_reason"))

    def _tool_call(self, index: int, position: int, call: Any, size: int) -> None:
        """Append one tool call: its id and name once, then its arguments in pieces."""
        what = f"choice {index}'s tool call {position}"
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise ValueError(f"{what} in the cached answer has no id")
        if call.get("type", "function") != "function":
            # Other tool types stream in shapes this replay does not reproduce.
            raise ValueError(f"{what} in the cached answer is of type {call.get('type')!r}")
        name, arguments = _function(call.get("function"), what)
        header = {"index": position, "id": call["id"], "type": "function"}
        self.delta(index, {"tool_calls": [{**header, "function": {"name": name, "arguments": ""}}]})
        for piece in _pieces(arguments, size):
            self.delta(
                index, {"tool_calls": [{"index": position, "function": {"arguments": piece}}]}
            )

    def text_choice(self, choice: dict[str, Any], size: int) -> None:
        """Append the chunks of one legacy completion choice: text pieces, then finish."""
        index = choice["index"]
        text = _optional_str(choice.get("text"), f"choice {index}'s text") or ""
        for piece in _pieces(text, size):
            self.add([{"index": index, "text": piece, "logprobs": None, "finish_reason": None}])
        finish = choice.get("finish_reason")
        self.add([{"index": index, "text": "", "logprobs": None, "finish_reason": finish}])


def _function(value: Any, what: str) -> tuple[str, str]:
    """Return the name and arguments of a function call, checked."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError(f"{what} in the cached answer has no function name")
    arguments = _optional_str(value.get("arguments"), f"{what}'s arguments") or ""
    return value["name"], arguments


def replay_message_events(body: bytes, *, chunk_chars: int = 64) -> list[bytes]:
    """Turn a cached Anthropic ``message`` into the events of the equivalent Messages stream.

    ``message_start`` (with the usage the answer had), each content block as
    ``content_block_start``, its deltas (``text_delta``, ``input_json_delta``,
    ``thinking_delta`` and ``signature_delta``) and ``content_block_stop``, then
    ``message_delta`` (stop reason, usage) and ``message_stop``: what the anthropic SDK builds
    the same message from. A block of another kind (a server tool's) is sent whole in its
    ``content_block_start``.
    """
    try:
        source = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the cached answer is not JSON: {exc}") from exc
    if not isinstance(source, dict) or source.get("type") != "message":
        raise ValueError("the cached answer is not an Anthropic message")
    content = source.get("content")
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise ValueError("the cached message has no content blocks")
    usage = source.get("usage") if isinstance(source.get("usage"), dict) else {}
    start = {**source, "content": [], "stop_reason": None, "stop_sequence": None}
    events = [sse_event({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(content):
        events.extend(_block_events(index, block, chunk_chars))
    delta = {"stop_reason": source.get("stop_reason"), "stop_sequence": source.get("stop_sequence")}
    events.append(
        sse_event({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
    )
    events.append(sse_event({"type": "message_stop"}, "message_stop"))
    return events


def _block_events(index: int, block: dict[str, Any], size: int) -> list[bytes]:
    kind = block.get("type")
    deltas: list[dict[str, Any]] = []
    opening = dict(block)
    if kind == "text" and isinstance(block.get("text"), str):
        opening["text"] = ""
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], size)]
    elif kind == "tool_use":
        opening["input"] = {}
        arguments = compact_json(block.get("input", {}))
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, size)]
    elif kind == "thinking" and isinstance(block.get("thinking"), str):
        opening["thinking"], opening["signature"] = "", ""
        deltas = [
            {"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], size)
        ]
        if isinstance(block.get("signature"), str):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    out = [
        sse_event(
            {"type": "content_block_start", "index": index, "content_block": opening},
            "content_block_start",
        )
    ]
    out += [
        sse_event(
            {"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta"
        )
        for d in deltas
    ]
    out.append(sse_event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return out
