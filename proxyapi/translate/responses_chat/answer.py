"""OpenAI chat answers as Responses API Response objects (see the package docstring)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from proxyapi.errors import ProxyAPIError, UpstreamMalformed, redact
from proxyapi.jsonio import compact_json, is_count
from proxyapi.translate.chat import message_text
from proxyapi.translate.responses_chat.ids import new_id
from proxyapi.translate.responses_chat.tools import NO_PARAMETERS, custom_tool_names

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# Phrases of the errors OpenAI-compatible and Anthropic upstreams give for a prompt too long.
_CONTEXT_PHRASES = ("maximum context length", "prompt is too long", "context window")
_RETRY_AFTER = "retry-after"


def response_object(
    chat: Mapping[str, Any], request: Mapping[str, Any], response_id: str, created_at: int
) -> dict[str, Any]:
    """An OpenAI chat.completion -> a Responses API Response, for ``request``.

    Raise :class:`~proxyapi.errors.UpstreamMalformed` if ``chat`` is not a chat completion.
    """
    choices = chat.get("choices") if isinstance(chat, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamMalformed("The upstream answered without a choice: not a chat completion.")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamMalformed("The upstream answered a choice without a message.")
    status, details = finish_status(choice.get("finish_reason"))
    customs = custom_tool_names(request)
    output: list[dict[str, Any]] = []
    reasoning = reasoning_delta(message)
    if reasoning:
        output.append(reasoning_item(new_id("rs"), [reasoning_part(reasoning)]))
    parts = []
    text = message_text(message.get("content"))
    if text:
        parts.append(text_part(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(refusal_part(refusal))
    if parts:
        output.append(message_item(new_id("msg"), parts, "completed"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and call.get("type", "function") == "function":
            output.append(_call_item(call.get("id"), function, customs))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        output.append(_call_item(None, legacy, customs))
    if status != "completed" and output and "status" in output[-1]:
        output[-1]["status"] = "incomplete"  # the item the answer was cut in
    upstream_model = chat.get("model")
    model = upstream_model if isinstance(upstream_model, str) and upstream_model else None
    return build_response(
        response_id,
        created_at,
        echo_fields(request),
        model or _request_model(request),
        status,
        output,
        usage=response_usage(chat.get("usage")),
        incomplete_details=details,
    )


def response_usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI chat usage -> a Responses usage object; None without usage.

    Both count cached tokens inside the prompt, so the counts carry over as they are.
    """
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    read = _count(_details(usage, "prompt_tokens_details"), "cached_tokens")
    write = _count(_details(usage, "prompt_tokens_details"), "cache_write_tokens")
    reasoning = _count(_details(usage, "completion_tokens_details"), "reasoning_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": _count(usage, "total_tokens") or prompt + completion,
    }


def echo_fields(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields a Response reports, with OpenAI's defaults for those not sent.

    What the gateway ignores is reported as it acted: ``truncation`` "disabled",
    ``service_tier`` "default". A :class:`~proxyapi.providers.base.ClientBody`'s ``echo``
    fields (``previous_response_id``) win.
    """

    def given(name: str, kinds: type | tuple[type, ...], default: Any) -> Any:
        value = request.get(name)
        return value if isinstance(value, kinds) and not isinstance(value, bool) else default

    reasoning = request.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, Mapping) else {}
    text = request.get("text")
    text = text if isinstance(text, Mapping) else {}
    fmt = text.get("format")
    choice = request.get("tool_choice")
    parallel = request.get("parallel_tool_calls")
    fields: dict[str, Any] = {
        "background": False,
        "instructions": given("instructions", str, None),
        "max_output_tokens": given("max_output_tokens", int, None),
        "max_tool_calls": None,
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": given("previous_response_id", str, None),
        "prompt_cache_key": given("prompt_cache_key", str, None),
        "reasoning": {
            "effort": reasoning.get("effort"),
            "summary": reasoning.get("summary") or reasoning.get("generate_summary"),
        },
        "safety_identifier": given("safety_identifier", str, None),
        "service_tier": "default",
        "store": request.get("store") is not False,
        "temperature": given("temperature", (int, float), 1.0),
        "text": {
            "format": dict(fmt) if isinstance(fmt, Mapping) else {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        },
        "tool_choice": choice if isinstance(choice, str | Mapping) else "auto",
        "tools": _echo_tools(request.get("tools")),
        "top_logprobs": 0,
        "top_p": given("top_p", (int, float), 1.0),
        "truncation": "disabled",
        "metadata": given("metadata", dict, {}),
    }
    # The spec types `user` as a string, not null: it is left out when not sent.
    if isinstance(request.get("user"), str):
        fields["user"] = request["user"]
    echo = getattr(request, "echo", None)
    if isinstance(echo, Mapping):
        fields.update(echo)
    return fields


def failure_code(exc: ProxyAPIError) -> str:
    """The Responses ``error.code`` for ``exc`` (Codex tells these codes apart)."""
    code = (exc.error_code or "").lower()
    kind = (exc.type or "").lower()
    message = str(exc.description).lower()
    if "insufficient_quota" in (code, kind):  # OpenAI sends it with a 429
        return "insufficient_quota"
    if code == "context_length_exceeded" or any(p in message for p in _CONTEXT_PHRASES):
        return "context_length_exceeded"
    status = exc.code or 500
    if status == 429 or "rate_limit" in code or "rate_limit" in kind:
        return "rate_limit_exceeded"
    if 400 <= status < 500:  # the upstream refused the request for what it holds
        return "invalid_prompt"
    return "server_error"


def failure_error(exc: ProxyAPIError, secrets: Iterable[str] = ()) -> dict[str, str]:
    """The Response ``error`` object for ``exc``, its message scrubbed of ``secrets``."""
    code = failure_code(exc)
    message = redact(str(exc.description), secrets)
    wait = _retry_after(exc.extra_headers) if code == "rate_limit_exceeded" else None
    if wait is not None:
        # Codex reads the delay to wait from these words.
        message = f"{message.rstrip()} Please try again in {wait}s."
    return {"code": code, "message": message}


def failed_response(
    response_id: str,
    created_at: int,
    request: Mapping[str, Any],
    exc: ProxyAPIError,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """A Response with status "failed" and no output, for a request that ``exc`` ended."""
    return build_response(
        response_id,
        created_at,
        echo_fields(request),
        _request_model(request),
        "failed",
        [],
        error=failure_error(exc, secrets),
    )


def build_response(
    response_id: str,
    created_at: int,
    echo: Mapping[str, Any],
    model: str,
    status: str,
    output: list[dict[str, Any]],
    *,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response object; ``usage`` is left out when unknown (the spec has no null for it)."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        # Translation keeps no clock: an answer counts as completed when it was created.
        "completed_at": created_at if status == "completed" else None,
        "error": error,
        "incomplete_details": incomplete_details,
        **echo,
        "model": model,
        "output": output,
    }
    if usage is not None:
        response["usage"] = usage
    return response


def finish_status(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """A chat finish_reason -> the Response ``status`` and ``incomplete_details``."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


# ---------------------------------------------------------------------------------- items


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def reasoning_part(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


def reasoning_item(item_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def custom_tool_call_item(item_id: str, call_id: str, name: str, tool_input: str) -> dict[str, Any]:
    return {
        "type": "custom_tool_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "input": tool_input,
    }


def custom_input(arguments: str) -> str:
    """A custom tool's input from the arguments of the function that stands for it: the
    ``input`` string of ``{"input": ...}``, else the arguments' text as it is."""
    try:
        # Lenient about raw control characters, which some models leave in long texts.
        value = json.loads(arguments, strict=False)
    except (ValueError, RecursionError):
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        text: str = value["input"]
        return text
    return arguments


def arguments_text(arguments: Any) -> str:
    """A tool call's arguments as JSON text ("{}" when the upstream sent none)."""
    if isinstance(arguments, str):
        return arguments or "{}"
    if arguments is None:
        return "{}"
    return compact_json(arguments)  # some upstreams send the object itself


def reasoning_delta(message: Mapping[str, Any]) -> str:
    """The reasoning text of a chat message or delta (``reasoning_content``, or OpenRouter's
    and vLLM's ``reasoning``): one of the two, as some upstreams send both."""
    for name in ("reasoning_content", "reasoning"):
        text = message.get(name)
        if isinstance(text, str) and text:
            return text
    return ""


def _call_item(
    call_id: Any, function: Mapping[str, Any], customs: frozenset[str]
) -> dict[str, Any]:
    name = function.get("name")
    name = name if isinstance(name, str) else ""
    call_id = call_id if isinstance(call_id, str) and call_id else new_id("call")
    arguments = arguments_text(function.get("arguments"))
    if name in customs:
        return custom_tool_call_item(new_id("ctc"), call_id, name, custom_input(arguments))
    return function_call_item(new_id("fc"), call_id, name, arguments, "completed")


def _request_model(request: Mapping[str, Any]) -> str:
    model = request.get("model")
    return model if isinstance(model, str) else ""


def _details(usage: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    details = usage.get(name)
    return details if isinstance(details, Mapping) else {}


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return value if is_count(value) and value > 0 else 0


def _echo_tools(tools: Any) -> list[dict[str, Any]]:
    """The request's tools as a Response reports them: a function tool always says its
    ``parameters`` (the empty schema sent when it had none) and ``strict``."""
    if not isinstance(tools, list):
        return []
    out = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        tool = dict(tool)
        if tool.get("type") == "function":
            if tool.get("parameters") is None:
                tool["parameters"] = dict(NO_PARAMETERS)
            tool.setdefault("strict", None)
        out.append(tool)
    return out


def _retry_after(headers: Mapping[str, str]) -> str | None:
    """Retry-After in whole or decimal seconds, as text; None when absent or a date."""
    for name, value in headers.items():
        if name.lower() == _RETRY_AFTER:
            try:
                seconds = float(value)
            except ValueError:
                return None
            if not math.isfinite(seconds) or seconds < 0:
                return None
            return str(int(seconds)) if seconds.is_integer() else f"{seconds:g}"
    return None
