"""OpenAI chat answers as Anthropic messages, and their usage (see the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxyapi.errors import UpstreamMalformed
from proxyapi.jsonio import compact_json, is_count
from proxyapi.translate.chat import message_text

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def messages_answer(chat: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic Message (type "message").

    ``model`` names the answer when the upstream's does not. Raise
    :class:`~proxyapi.errors.UpstreamMalformed` if ``chat`` is not a chat completion.
    """
    choices = chat.get("choices") if isinstance(chat, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamMalformed("The upstream answered without a choice: not a chat completion.")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamMalformed("The upstream answered a choice without a message.")
    content: list[dict[str, Any]] = []
    for text in (message_text(message.get("content")), message.get("refusal")):
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and call.get("type", "function") == "function":
            content.append(_tool_use(call.get("id"), function, len(content)))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        content.append(_tool_use(None, legacy, len(content)))
    upstream_model = chat.get("model")
    return {
        "id": _message_id(chat.get("id")),
        "type": "message",
        "role": "assistant",
        "model": upstream_model if isinstance(upstream_model, str) and upstream_model else model,
        "content": content,
        "stop_reason": _stop_reason(
            choice.get("finish_reason"), any(b["type"] == "tool_use" for b in content)
        ),
        "stop_sequence": None,
        "usage": messages_usage(chat.get("usage")),
    }


def messages_usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """OpenAI usage -> Anthropic usage.

    OpenAI counts cached tokens inside ``prompt_tokens``; Anthropic counts them apart, so
    ``input_tokens`` is the prompt less cache reads (``cached_tokens``) and writes
    (``cache_write_tokens``, which some upstreams report). The two cache counts appear only
    when the upstream reported one of them. Reasoning tokens stay inside ``output_tokens``.
    """
    if not isinstance(usage, Mapping):
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    read, write = details.get("cached_tokens"), details.get("cache_write_tokens")
    cache_read = read if is_count(read) else 0
    cache_write = write if is_count(write) else 0
    out = {"input_tokens": max(_count(usage, "prompt_tokens") - cache_read - cache_write, 0)}
    if is_count(read) or is_count(write):
        out["cache_creation_input_tokens"] = cache_write
        out["cache_read_input_tokens"] = cache_read
    out["output_tokens"] = _count(usage, "completion_tokens")
    return out


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return value if is_count(value) and value > 0 else 0


def _tool_use(call_id: Any, function: Mapping[str, Any], position: int) -> dict[str, Any]:
    name = function.get("name")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else f"call_{position}",
        "name": name if isinstance(name, str) else "",
        "input": _tool_input(function.get("arguments")),
    }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _tool_input(arguments: Any) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):  # some upstreams send the object itself
        return arguments
    text = arguments if isinstance(arguments, str) else compact_json(arguments)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        value = None
    return value if isinstance(value, dict) else {"_raw": text}


def _message_id(chat_id: Any) -> str:
    rest = chat_id.removeprefix("chatcmpl-") if isinstance(chat_id, str) else ""
    rest = rest or "chat"
    return rest if rest.startswith("msg_") else "msg_" + rest


def _stop_reason(finish_reason: Any, tool_used: bool) -> str:
    reason = _STOP_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    if reason is None or (reason == "end_turn" and tool_used):
        return "tool_use" if tool_used else "end_turn"
    return reason
