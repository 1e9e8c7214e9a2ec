"""Anthropic answers as OpenAI ``chat.completion`` objects, and Anthropic usage as OpenAI's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyapi.jsonio import compact_json, is_count

# Anthropic's stop_reason -> OpenAI's finish_reason; any other (or none) reads as a natural stop.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    # A server-side tool paused a long turn: what was said so far is a whole answer.
    "pause_turn": "stop",
    "refusal": "content_filter",
}
# Anthropic's error type -> OpenAI's; the Anthropic type itself is kept as the error code.
ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
}
# The type of a mid-stream error whose Anthropic type is unknown: the provider failed.
_STREAM_ERROR_TYPE = "upstream_error"
# How much of a non-JSON error body is quoted back to the client.
_ERROR_SNIPPET = 300
# Models per listing; Anthropic's default page (20) would hide the rest, 1000 is its maximum.
_MODELS_PAGE = 1000


def chat_completion(data: Mapping[str, Any], created: int) -> dict[str, Any]:
    """Translate an Anthropic message into an OpenAI ``chat.completion``.

    Thinking blocks are left out: OpenAI's message has no place for them.
    """
    content = data.get("content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            tool_input = block.get("input")
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": compact_json(tool_input if tool_input is not None else {}),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    answer: dict[str, Any] = {
        "id": _chat_id(data.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": data.get("model") if isinstance(data.get("model"), str) else "",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(data.get("stop_reason")),
            }
        ],
    }
    if isinstance(data.get("usage"), dict):
        answer["usage"] = openai_usage(data["usage"])
    return answer


def merge_usage(seen: dict[str, Any], usage: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a stream event's usage into what the stream reported before, and return it:
    message_delta's counts are cumulative, so they replace message_start's (the cache-write
    split, an object, included)."""
    seen.update(
        {
            k: v
            for k, v in usage.items()
            if is_count(v) or (k == "cache_creation" and isinstance(v, dict))
        }
    )
    return seen


def openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Translate Anthropic token counts into an OpenAI ``usage`` object.

    Cache writes and reads are part of the prompt, as OpenAI counts them; ``cached_tokens`` is
    reported only when Anthropic reported cache counts at all.
    """

    def count(name: str) -> int:
        value = usage.get(name)
        return value if is_count(value) else 0

    cache_write = count("cache_creation_input_tokens")
    cache_read = count("cache_read_input_tokens")
    prompt = count("input_tokens") + cache_write + cache_read
    completion = count("output_tokens")
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if any(
        is_count(usage.get(k)) for k in ("cache_creation_input_tokens", "cache_read_input_tokens")
    ):
        out["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return out


def _chat_id(message_id: Any) -> str:
    # The Anthropic id stays in it, so a client's id can be found in the provider's logs.
    return "chatcmpl-" + (message_id if isinstance(message_id, str) else "anthropic")


def _finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
