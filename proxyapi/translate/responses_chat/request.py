"""Responses API requests as OpenAI chat requests: the top-level fields (see the package
docstring; the input items are in :mod:`.items`, the tools in :mod:`.tools`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyapi.jsonio import is_count
from proxyapi.translate.messages_chat import ChatTarget
from proxyapi.translate.responses_chat.items import input_messages, invalid
from proxyapi.translate.responses_chat.tools import chat_tool_choice, chat_tools, custom_tool_names

__all__ = ["chat_request", "custom_tool_names"]

_MAPPED = frozenset(
    {
        "model",
        "input",
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
        "stream",
    }
)


# Checked by _check_ignored where one value changes the answer (background, top_logprobs...).
_IGNORED = frozenset(
    {
        "store",
        "metadata",
        "include",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "service_tier",
        "truncation",
        "stream_options",
        "background",
        "top_logprobs",
    }
)


_REFUSED = {
    "previous_response_id": "it names a response this request should continue; send the "
    "whole conversation in 'input' instead",
    "conversation": "it names a conversation stored by OpenAI; send its items in 'input' instead",
    "prompt": "it names a prompt template stored by OpenAI; send its text as 'instructions' "
    "and 'input' instead",
    "max_tool_calls": "it limits calls to OpenAI's built-in tools, which this model's provider "
    "does not run",
    "context_management": "it asks OpenAI to compact the conversation on its servers",
    "moderation": "it asks for OpenAI's moderation results",
}


# include values that ask for nothing an answer from a chat upstream could hold.
_IGNORED_INCLUDES = frozenset(
    {
        "reasoning.encrypted_content",  # nothing is encrypted: reasoning comes as plain text
        "message.input_image.image_url",  # input items are not returned
        "file_search_call.results",  # the built-in tools are refused: no such calls
        "web_search_call.results",
        "web_search_call.action.sources",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)


# Chat takes none to high; xhigh and max are "high", the most every such upstream takes.
_EFFORTS = {
    "none": "none",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


_SUMMARIES = (None, "auto", "concise", "detailed")


_VERBOSITIES = (None, "low", "medium", "high")


def chat_request(body: Mapping[str, Any], target: ChatTarget, stream: bool) -> dict[str, Any]:
    """A Responses API request body -> an OpenAI chat completions request body.

    Raise :class:`~proxyapi.errors.InvalidRequest` naming the field that cannot be translated.
    """
    for name, value in body.items():
        if value is None or name in _MAPPED:
            continue
        if name in _REFUSED:
            raise invalid(name, f"'{name}' cannot be translated for this model: {_REFUSED[name]}.")
        if name not in _IGNORED:
            raise invalid(
                name,
                f"'{name}' has no counterpart at this model's provider (an OpenAI-compatible "
                "chat upstream); remove it, or use a model served by OpenAI's Responses API.",
            )
        _check_ignored(name, value)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "'model' is required, as a string.")
    tools, functions, customs = chat_tools(body.get("tools"))
    messages = _instructions(body.get("instructions")) + input_messages(body.get("input"))
    if not messages:
        raise invalid("input", "'input' holds nothing to send to the model.")
    out: dict[str, Any] = {"model": model, "messages": messages}
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        if not is_count(max_tokens) or max_tokens < 1:
            raise invalid("max_output_tokens", "'max_output_tokens' must be a positive integer.")
        out[target.max_tokens_field] = max_tokens
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not _is_number(value):
                raise invalid(name, f"'{name}' must be a number.")
            out[name] = value
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("user", "'user' must be a string.")
        out["user"] = user
    if tools:
        out["tools"] = tools
    choice = chat_tool_choice(body.get("tool_choice"), functions | customs)
    if choice is not None:
        out["tool_choice"] = choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise invalid("parallel_tool_calls", "'parallel_tool_calls' must be a boolean.")
        if tools:  # OpenAI refuses parallel_tool_calls without tools
            out["parallel_tool_calls"] = parallel
    effort = _reasoning_effort(body.get("reasoning"))
    if effort is not None and target.reasoning_effort:
        out["reasoning_effort"] = effort
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_ignored(name: str, value: Any) -> None:
    """Refuse the values of ignored fields that would change the answer."""
    if name == "background" and value is not False:
        raise invalid(
            "background",
            "'background' asks OpenAI to run the response in the background and keep it; this "
            "model's provider answers within the request: remove it or set it to false.",
        )
    if name == "top_logprobs" and value != 0:
        raise invalid(
            "top_logprobs",
            "'top_logprobs' asks for log probabilities, which this gateway cannot return for "
            "this model; remove it.",
        )
    if name == "truncation" and value not in ("auto", "disabled"):
        raise invalid("truncation", "'truncation' must be 'auto' or 'disabled'.")
    if name == "include":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid("include", "'include' must be an array of strings.")
        for wanted in value:
            if wanted == "message.output_text.logprobs":
                raise invalid(
                    "include",
                    "'include' asks for 'message.output_text.logprobs', which this gateway "
                    "cannot return for this model; remove it.",
                )
            if wanted not in _IGNORED_INCLUDES:
                raise invalid("include", f"'include' holds {wanted!r}, which is not known.")


def _instructions(instructions: Any) -> list[dict[str, Any]]:
    if instructions is None:
        return []
    if not isinstance(instructions, str):
        raise invalid("instructions", "'instructions' must be a string.")
    return [{"role": "system", "content": instructions}] if instructions else []


def _reasoning_effort(reasoning: Any) -> str | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise invalid("reasoning", "'reasoning' must be an object.")
    for name, value in reasoning.items():
        if value is not None and name not in ("effort", "summary", "generate_summary", "context"):
            raise invalid(f"reasoning.{name}", f"'reasoning.{name}' cannot be translated.")
    for name in ("summary", "generate_summary"):
        if reasoning.get(name) not in _SUMMARIES:
            raise invalid(
                f"reasoning.{name}", f"'reasoning.{name}' must be auto, concise or detailed."
            )
    effort = reasoning.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise invalid(
            "reasoning.effort",
            f"'reasoning.effort' must be one of {', '.join(_EFFORTS)}, got {effort!r}.",
        )
    return _EFFORTS[effort]


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid("text", "'text' must be an object.")
    for name, value in text.items():
        if value is not None and name not in ("format", "verbosity"):
            raise invalid(f"text.{name}", f"'text.{name}' cannot be translated.")
    if text.get("verbosity") not in _VERBOSITIES:
        raise invalid("text.verbosity", "'text.verbosity' must be low, medium or high.")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise invalid(
            "text.format", "'text.format' must be of type 'text', 'json_schema' or 'json_object'."
        )
    name, schema = fmt.get("name"), fmt.get("schema")
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise invalid(
            "text.format",
            "'text.format' of type 'json_schema' needs a 'name' and a 'schema' (an object).",
        )
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    description, strict = fmt.get("description"), fmt.get("strict")
    if description is not None:
        if not isinstance(description, str):
            raise invalid("text.format", "'text.format.description' must be a string.")
        json_schema["description"] = description
    if strict is not None:
        if not isinstance(strict, bool):
            raise invalid("text.format", "'text.format.strict' must be a boolean.")
        json_schema["strict"] = strict
    return {"type": "json_schema", "json_schema": json_schema}
