"""Anthropic Messages requests as OpenAI Chat Completions calls, and the answers back.

This is how an Anthropic client (Claude Code, the anthropic SDK) reaches an OpenAI-compatible
upstream. Anthropic upstreams get the request as sent instead: thinking signatures, cache
breakpoints and server tools do not survive this translation.

Request (:func:`chat_request`). Every top-level field falls in one of four groups; a field sent
as null counts as absent:

* mapped: ``model`` (kept; the caller rewrites it), ``max_tokens`` (required, a positive
  integer: 0, Anthropic's cache pre-warming, has no Chat counterpart) as
  ``ChatTarget.max_tokens_field``, ``system``, ``messages``, ``stop_sequences`` as ``stop`` (at
  most 4, OpenAI's limit), ``temperature`` and ``top_p`` (copied; Anthropic's 0-1 temperature
  is inside OpenAI's 0-2 range and is not rescaled), ``metadata.user_id`` as ``user`` (other
  metadata keys are ignored), ``tools``, ``tool_choice``, ``thinking``, ``output_config``, and
  ``stream`` (the ``stream`` argument decides; a streamed call asks for
  ``stream_options.include_usage``, as the gateway needs the counts);
* dropped, having no Chat counterpart: ``top_k``, and the top-level ``cache_control``
  (OpenAI-compatible upstreams cache prompts by themselves or not at all);
* ignored, having no effect on the answer: ``service_tier``, ``container``, ``inference_geo``,
  ``speed``, ``diagnostics``;
* rejected: every other field (a clear 400 beats a setting that quietly does nothing).

``system`` (a string or text blocks, joined with a blank line) becomes one leading system
message, left out when empty; a ``system`` message inside ``messages`` (which the SDK's types
allow) becomes a system message where it stands. User turns take ``text``, ``image`` (base64 as
a data URL, or a URL), ``document`` (a base64 PDF as a ``file`` part named by its ``title``, with
``.pdf`` added when missing, else ``document.pdf``; a plain-text source as a text part, its
title and context dropped) and ``tool_result``. Each tool result becomes a ``tool`` message;
OpenAI wants those right after the assistant message with the calls, so a turn's tool messages
come first, in order, and the rest of the turn follows as one user message. A tool result's
text blocks are joined with a blank line, ``is_error`` prefixes the text with ``"Error: "``, and
its images and documents, which a tool message cannot carry, open that user message after a
text part such as ``(images returned by tool <id>)``. Assistant turns take ``text`` (joined
with nothing: the blocks are pieces of one answer), ``tool_use`` (as ``tool_calls``, arguments
as compact JSON), and ``thinking`` and ``redacted_thinking``, which are dropped (Chat has no
place for them, and their signatures cannot be carried); a turn left with nothing is left out.
Refused with a 400 naming the block: images and documents in assistant turns, image sources
other than base64 and URL (Files API ids), document sources other than base64 PDF and plain
text (URL, content blocks, file ids), documents asking for ``citations``, a user turn with
an empty content array, server-tool blocks
(``server_tool_use``, ``web_search_tool_result``...), ``search_result``, ``container_upload``
and every unknown block type. ``cache_control`` and ``citations`` on any block are dropped.

Custom tools become function tools (``strict: true`` is kept; ``cache_control``,
``input_examples``, ``defer_loading``, ``allowed_callers`` and ``eager_input_streaming`` are
dropped); Anthropic's built-in tools (``web_search_20250305``, ``bash_20250124``...), which
only Anthropic runs, are refused. ``tool_choice`` auto/any/tool/none becomes
``"auto"``/``"required"``/a named function/``"none"``, and ``disable_parallel_tool_use`` becomes
``parallel_tool_calls: false``; without tools, auto and none are left out (OpenAI refuses a
``tool_choice`` without tools) and any and tool are refused.

When ``ChatTarget.reasoning_effort`` is set, ``thinking`` becomes ``reasoning_effort``: enabled
with ``budget_tokens`` under 4096 is ``"low"``, under 16384 ``"medium"``, else ``"high"``;
adaptive and between_tools are ``"medium"``; disabled sends nothing. ``output_config.effort``,
when given, wins (``xhigh`` and ``max`` are ``"high"``, the most every such upstream takes).
Without it, both are checked and dropped. ``output_config.format`` (a JSON schema) becomes a
strict ``json_schema`` ``response_format`` named ``output``.

Answer (:func:`messages_answer`): the first choice only (the request never asks for more).
Its text, then its refusal, each as a text block (left out when empty), then each tool call as
``tool_use``. Arguments that are not a JSON object are kept as ``{"_raw": "<the text>"}``, so
the client's tool rejects them visibly instead of running with no arguments. ``stop``
is ``end_turn`` (OpenAI does not say which stop sequence matched, so ``stop_sequence`` is
always null), ``length`` is ``max_tokens``, ``tool_calls`` and ``function_call`` are
``tool_use``, ``content_filter`` is ``refusal``; any other is ``end_turn``, and ``end_turn``
with tool calls (some upstreams say ``stop``) is ``tool_use``. The id is ``msg_`` and the chat
id without its ``chatcmpl-`` prefix (``msg_`` is not doubled). Reasoning text some upstreams
add (``reasoning_content``) is dropped: an Anthropic thinking block carries a signature, which
no Chat upstream makes. Usage: see :func:`messages_usage`.

Stream (:class:`ChatToMessagesStream`): Anthropic's event order, ``event:`` lines included.
``message_start`` (usage zero: the counts come at the end) and ``ping`` wait for the first
event to send, so an upstream error before any content leaves nothing sent and the caller can
fall back. Text opens a text block; each tool call (by its OpenAI index) opens a tool_use block
once its name is known, closing the block before it; a tool call's pieces after another block
began cannot be placed and fail the stream. Refusal deltas are text; reasoning deltas and
choices other than the first are dropped. ``message_delta`` (with the full usage) and
``message_stop`` follow once a finish_reason was seen and the stream ended: at ``[DONE]``, at a
usage chunk after the finish, or at the upstream's end when usage came with the finish. A
stream that ends otherwise gets its open block closed and nothing more (``complete`` stays
False: the caller reports the truncation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from proxyapi.errors import InvalidRequest, UpstreamMalformed, UpstreamStreamFailed
from proxyapi.jsonio import compact_json
from proxyapi.providers.base import StreamTranslator, Usage
from proxyapi.providers.sse import ServerEvent, SSEParser, sse_event


@dataclass(frozen=True)
class ChatTarget:
    """What the OpenAI-compatible upstream takes."""

    # Or "max_completion_tokens", which OpenAI's reasoning models require.
    max_tokens_field: str = "max_tokens"
    # The upstream takes `reasoning_effort`.
    reasoning_effort: bool = False


_MAPPED = frozenset(
    {
        "model",
        "max_tokens",
        "system",
        "messages",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "cache_control",
    }
)
_IGNORED = frozenset({"service_tier", "container", "inference_geo", "speed", "diagnostics"})
_MAX_STOP = 4  # OpenAI takes at most four stop sequences
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# What a tool result's attachments are called in the text part that introduces them.
_ATTACHMENT_NAMES = {"image_url": "images", "file": "documents"}
_STREAM_ERROR_TYPE = "upstream_error"
_MALFORMED = "upstream_malformed_response"
_DONE = b"[DONE]"
_ERROR_SNIPPET = 300


# ---------------------------------------------------------------------------------- request


def chat_request(body: Mapping[str, Any], target: ChatTarget, stream: bool) -> dict[str, Any]:
    """An Anthropic Messages request body -> an OpenAI chat completions request body.

    Raise :class:`~proxyapi.errors.InvalidRequest` naming the field that cannot be translated.
    """
    for name, value in body.items():
        if value is not None and name not in _MAPPED and name not in _IGNORED:
            raise _invalid(
                name,
                f"'{name}' has no counterpart at an OpenAI-compatible upstream; remove it, or "
                "use a model served by Anthropic.",
            )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "'model' is required, as a string.")
    max_tokens = body.get("max_tokens")
    if not _is_count(max_tokens) or max_tokens < 1:
        raise _invalid("max_tokens", "'max_tokens' is required, as a positive integer.")
    out: dict[str, Any] = {
        "model": model,
        "messages": _system(body.get("system")) + _messages(body.get("messages")),
        target.max_tokens_field: max_tokens,
    }
    stop = _stop(body.get("stop_sequences"))
    if stop:
        out["stop"] = stop
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not _is_number(value):
                raise _invalid(name, f"'{name}' must be a number.")
            out[name] = value
    user = _user(body.get("metadata"))
    if user is not None:
        out["user"] = user
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    choice, parallel = _tool_choice(body.get("tool_choice"), bool(tools))
    if choice is not None:
        out["tool_choice"] = choice
    if parallel is not None:
        out["parallel_tool_calls"] = parallel
    effort = _thinking_effort(body.get("thinking"))
    config_effort, response_format = _output_config(body.get("output_config"))
    effort = config_effort or effort
    if effort is not None and target.reasoning_effort:
        out["reasoning_effort"] = effort
    if response_format is not None:
        out["response_format"] = response_format
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    text = _system_text(system, "system")
    return [{"role": "system", "content": text}] if text else []


def _system_text(content: Any, where: str) -> str:
    """The text of a string or of a list of text blocks, joined with a blank line."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(where, f"'{where}' must be a string or an array of text blocks.")
    texts = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        kind = _block_type(block, at)
        if kind != "text":
            raise _invalid(at, f"'{at}' is a {kind!r} block; a system prompt takes text only.")
        texts.append(_block_text(block, at))
    return "\n\n".join(texts)


def _block_type(block: Any, at: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _invalid(at, f"'{at}' must be a content block: an object with a 'type'.")
    kind: str = block["type"]
    return kind


def _block_text(block: Mapping[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{at}.text", f"'{at}.text' must be a string.")
    return text


def _untranslatable(kind: str, at: str, role: str) -> InvalidRequest:
    if kind == "server_tool_use" or kind.endswith("_tool_result"):
        why = "it belongs to Anthropic's server tools, which only Anthropic runs"
    elif kind in ("tool_use", "thinking", "redacted_thinking"):
        why = "it belongs in an assistant turn"
    elif kind == "tool_result":
        why = "it belongs in a user turn"
    elif kind in ("image", "document") and role == "assistant":
        why = "OpenAI assistant messages carry text and tool calls only"
    else:
        why = "OpenAI chat messages have no such content"
    return _invalid(
        f"{at}.type",
        f"'{at}' is a {kind!r} block, which cannot be translated for an OpenAI-compatible "
        f"upstream: {why}.",
    )


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "'messages' is required, as a non-empty array of messages.")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise _invalid(where, f"'{where}' must be an object with 'role' and 'content'.")
        role, content = message.get("role"), message.get("content")
        if role == "user":
            out.extend(_user_turn(content, where))
        elif role == "assistant":
            turn = _assistant_turn(content, where)
            if turn is not None:
                out.append(turn)
        elif role == "system":
            text = _system_text(content, f"{where}.content")
            if text:
                out.append({"role": "system", "content": text})
        else:
            raise _invalid(
                f"{where}.role", f"'{where}.role' must be 'user' or 'assistant', got {role!r}."
            )
    return out


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """One user turn -> its tool messages, then one user message with the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", f"'{where}.content' must be a string or an array.")
    tool_messages: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    if not content:
        raise _invalid(f"{where}.content", f"'{where}.content' must not be empty.")
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at)
        if kind == "tool_result":
            message, returned = _tool_result(block, at)
            tool_messages.append(message)
            attachments.extend(returned)
        else:
            parts.append(_user_part(block, kind, at))
    out = tool_messages
    if attachments or parts:
        out.append({"role": "user", "content": attachments + parts})
    return out


def _user_part(block: Mapping[str, Any], kind: str, at: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": _block_text(block, at)}
    if kind == "image":
        return _image(block, at)
    if kind == "document":
        return _document(block, at)
    raise _untranslatable(kind, at, "user")


def _source(block: Mapping[str, Any], at: str) -> tuple[Mapping[str, Any], Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{at}.source", f"'{at}.source' must be an object.")
    return source, source.get("type")


def _string(source: Mapping[str, Any], name: str, at: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(f"{at}.source.{name}", f"'{at}.source.{name}' must be a string.")
    return value


def _image(block: Mapping[str, Any], at: str) -> dict[str, Any]:
    source, kind = _source(block, at)
    if kind == "base64":
        media_type = _string(source, "media_type", at)
        url = f"data:{media_type};base64,{_string(source, 'data', at)}"
    elif kind == "url":
        url = _string(source, "url", at)
    else:
        raise _invalid(
            f"{at}.source.type",
            f"'{at}' has an image source of type {kind!r}, which cannot be translated for an "
            "OpenAI-compatible upstream (Files API ids are Anthropic's); send the image as "
            "base64 or a URL.",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: Mapping[str, Any], at: str) -> dict[str, Any]:
    citations = block.get("citations")
    if isinstance(citations, dict) and citations.get("enabled") is True:
        raise _invalid(
            f"{at}.citations",
            f"'{at}' asks for citations, which an OpenAI-compatible upstream cannot give; "
            "remove 'citations'.",
        )
    source, kind = _source(block, at)
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type != "application/pdf":
            raise _invalid(
                f"{at}.source.media_type",
                f"'{at}' is a base64 document of type {media_type!r}; only PDFs are translated.",
            )
        title = block.get("title")
        filename = title if isinstance(title, str) and title.strip() else "document.pdf"
        if not filename.lower().endswith(".pdf"):
            filename += ".pdf"
        data = _string(source, "data", at)
        return {
            "type": "file",
            "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"},
        }
    if kind == "text":
        text = source.get("data")
        if not isinstance(text, str):
            raise _invalid(f"{at}.source.data", f"'{at}.source.data' must be a string.")
        return {"type": "text", "text": text}
    hints = {
        "url": "fetch the PDF and send it as base64",
        "content": "send its blocks as content of the turn itself",
        "file": "Files API ids are Anthropic's; send the file as base64",
    }
    hint = hints.get(kind) if isinstance(kind, str) else None
    raise _invalid(
        f"{at}.source.type",
        f"'{at}' has a document source of type {kind!r}, which cannot be translated for an "
        f"OpenAI-compatible upstream; {hint or 'send a base64 PDF or plain text'}.",
    )


def _tool_result(block: Mapping[str, Any], at: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result -> its tool message, and the parts a tool message cannot carry."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{at}.tool_use_id", f"'{at}.tool_use_id' must be a string.")
    content = block.get("content")
    texts: list[str] = []
    attachments: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, item in enumerate(content):
            item_at = f"{at}.content.{k}"
            kind = _block_type(item, item_at)
            if kind not in ("text", "image", "document"):
                raise _untranslatable(kind, item_at, "user")
            part = _user_part(item, kind, item_at)
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                attachments.append(part)
    elif content is not None:
        raise _invalid(f"{at}.content", f"'{at}.content' must be a string or an array.")
    text = "\n\n".join(texts)
    if block.get("is_error") is True:
        text = "Error: " + text
    message = {"role": "tool", "tool_call_id": call_id, "content": text}
    if attachments:
        names = dict.fromkeys(_ATTACHMENT_NAMES[part["type"]] for part in attachments)
        label = f"({' and '.join(names)} returned by tool {call_id})"
        attachments.insert(0, {"type": "text", "text": label})
    return message, attachments


def _assistant_turn(content: Any, where: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", f"'{where}.content' must be a string or an array.")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at)
        if kind == "text":
            texts.append(_block_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _untranslatable(kind, at, "assistant")
    if not texts and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Mapping[str, Any], at: str) -> dict[str, Any]:
    call_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise _invalid(at, f"'{at}' must be a tool_use block with an 'id' and a 'name'.")
    if not isinstance(tool_input, dict):
        raise _invalid(f"{at}.input", f"'{at}.input' must be an object.")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": compact_json(tool_input)},
    }


def _stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _invalid("stop_sequences", "'stop_sequences' must be an array of strings.")
    if len(stop) > _MAX_STOP:
        raise _invalid(
            "stop_sequences",
            f"'stop_sequences' has {len(stop)} entries; an OpenAI-compatible upstream takes at "
            f"most {_MAX_STOP}.",
        )
    return list(stop)


def _user(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "'metadata' must be an object.")
    user_id = metadata.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise _invalid("metadata.user_id", "'metadata.user_id' must be a string.")
    return user_id


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _invalid("tools", "'tools' must be an array.")
    out = []
    for i, tool in enumerate(tools):
        at = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _invalid(at, f"'{at}' must be an object.")
        kind, name = tool.get("type"), tool.get("name")
        if kind not in (None, "custom"):
            raise _invalid(
                f"{at}.type",
                f"'{at}' is Anthropic's built-in tool {kind!r}, which only Anthropic runs; an "
                "OpenAI-compatible upstream takes custom tools (name, description, "
                "input_schema) only.",
            )
        if not isinstance(name, str) or not name:
            raise _invalid(f"{at}.name", f"'{at}.name' must be a string.")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"{at}.input_schema", f"'{at}.input_schema' must be an object.")
        function: dict[str, Any] = {"name": name}
        description = tool.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise _invalid(f"{at}.description", f"'{at}.description' must be a string.")
            function["description"] = description
        function["parameters"] = schema
        if tool.get("strict") is True:
            function["strict"] = True
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, has_tools: bool) -> tuple[Any, bool | None]:
    """Return OpenAI's ``tool_choice`` and ``parallel_tool_calls`` (None: leave out)."""
    if choice is None:
        return None, None
    kind = choice.get("type") if isinstance(choice, dict) else None
    mapped: Any
    if kind in _TOOL_CHOICES:
        mapped = _TOOL_CHOICES[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str) and choice["name"]:
        mapped = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _invalid(
            "tool_choice",
            '\'tool_choice\' must be {"type": "auto"}, {"type": "any"}, {"type": '
            '"none"} or {"type": "tool", "name": ...}.',
        )
    if not has_tools:
        if kind in ("any", "tool"):
            raise _invalid("tool_choice", f"'tool_choice' {kind!r} needs 'tools'.")
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    return mapped, parallel


def _thinking_effort(thinking: Any) -> str | None:
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not _is_count(budget) or budget < 1:
            raise _invalid(
                "thinking.budget_tokens", "'thinking.budget_tokens' must be a positive integer."
            )
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if kind in ("adaptive", "between_tools"):
        return "medium"
    if kind == "disabled":
        return None
    raise _invalid(
        "thinking.type",
        "'thinking.type' must be 'enabled', 'adaptive', 'between_tools' or 'disabled'.",
    )


def _output_config(config: Any) -> tuple[str | None, dict[str, Any] | None]:
    """Return the ``reasoning_effort`` and ``response_format`` that ``output_config`` asks for."""
    if config is None:
        return None, None
    if not isinstance(config, dict):
        raise _invalid("output_config", "'output_config' must be an object.")
    for name, value in config.items():
        if value is not None and name not in ("effort", "format"):
            raise _invalid(
                f"output_config.{name}",
                f"'output_config.{name}' has no counterpart at an OpenAI-compatible upstream.",
            )
    effort = config.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise _invalid(
            "output_config.effort",
            f"'output_config.effort' must be one of {', '.join(_EFFORTS)}, got {effort!r}.",
        )
    response_format = None
    output_format = config.get("format")
    if output_format is not None:
        is_schema = isinstance(output_format, dict) and output_format.get("type") == "json_schema"
        schema = output_format.get("schema") if is_schema else None
        if not isinstance(schema, dict):
            raise _invalid(
                "output_config.format",
                '\'output_config.format\' must be {"type": "json_schema", "schema": {...}}.',
            )
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    return (_EFFORTS[effort] if effort is not None else None), response_format


# ---------------------------------------------------------------------------------- answer


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
    for text in (_message_text(message.get("content")), message.get("refusal")):
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
    cache_read = read if _is_count(read) else 0
    cache_write = write if _is_count(write) else 0
    out = {"input_tokens": max(_count(usage, "prompt_tokens") - cache_read - cache_write, 0)}
    if _is_count(read) or _is_count(write):
        out["cache_creation_input_tokens"] = cache_write
        out["cache_read_input_tokens"] = cache_read
    out["output_tokens"] = _count(usage, "completion_tokens")
    return out


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return value if _is_count(value) and value > 0 else 0


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some upstreams answer with text parts
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


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


# ---------------------------------------------------------------------------------- stream


@dataclass
class _ToolCall:
    """One streamed OpenAI tool call, until its Anthropic block is closed."""

    id: str
    name: str
    pending: list[str] = field(default_factory=list)  # arguments before the block could start
    started: bool = False
    closed: bool = False


class ChatToMessagesStream(StreamTranslator):
    """OpenAI chat.completion.chunk SSE bytes -> Anthropic Messages SSE bytes.

    Input may be cut anywhere; output is whole events. After the end, or an error, the rest of
    the input is ignored. An error event (``{"error": ...}`` or ``event: error``) or an event
    that is not JSON raises :class:`UpstreamStreamFailed`, from :meth:`feed` or :meth:`close`
    once the events before it were returned. ``message_id`` replaces the one made from the
    upstream's chunk id.
    """

    def __init__(self, provider: str, model: str, message_id: str | None = None) -> None:
        self.provider = provider
        self.model = model  # until the upstream names its own
        self.message_id = message_id
        self.usage: Usage | None = None
        self.complete = False
        self._parser = SSEParser()
        self._raw_usage: Mapping[str, Any] | None = None
        self._started = False  # message_start was sent
        self._reading = True  # False after the end, an error, or [DONE]
        self._failure: UpstreamStreamFailed | None = None
        self._finish_reason: str | None = None
        self._final_usage = False  # usage came with the finish, or after it
        self._blocks = 0  # blocks opened so far; the next one's index
        self._open: str | None = None  # "text" or "tool": the kind of the open block
        self._tools: dict[Any, _ToolCall] = {}  # by OpenAI tool call index
        self._open_tool: Any = None
        self._tool_used = False

    def feed(self, chunk: bytes) -> list[bytes]:
        out = self._read(self._parser.feed(chunk) if self._reading else [], last=False)
        if self._failure is not None and not out:
            raise self._failure
        return out  # a failure found in this chunk is raised on the next call

    def close(self) -> list[bytes]:
        """Send what ends the message; the blocks only, when the stream was cut short."""
        if self._failure is not None:
            raise self._failure
        out = self._read(self._parser.close() if self._reading else [], last=True)
        if self._failure is not None:
            if not out:
                raise self._failure
            return out
        if not self.complete:
            if self._final_usage:
                out.extend(self._end())  # usage came with the finish; [DONE] was all we lacked
            else:
                out.extend(self._close_block())
            self._reading = False
        return self._started_first(out)

    # ------------------------------------------------------------------ input

    def _read(self, events: list[ServerEvent], *, last: bool) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if not self._reading:
                break
            out.extend(self._started_first(self._event(event, last=last)))
        return out

    def _started_first(self, out: list[bytes]) -> list[bytes]:
        """Put message_start before the first events sent: sending waits for something to say."""
        if out and not self._started:
            out[:0] = self._start()
        return out

    def _event(self, event: ServerEvent, *, last: bool) -> list[bytes]:
        if event.data.strip() == _DONE:
            self._reading = False
            # Without a finish_reason the answer may be cut short: close() says so.
            return self._end() if self._finish_reason is not None else []
        try:
            data = json.loads(event.data)
        except (ValueError, RecursionError):  # UnicodeDecodeError included
            data = None
        if event.event == "error" or (isinstance(data, dict) and data.get("error") is not None):
            return self._on_error(data, event.data)
        if not isinstance(data, dict):
            if last:  # the stream was cut inside it; close() reports the truncation
                return []
            return self._fail(
                f"Provider '{self.provider}' sent a stream event that is not a JSON object.",
                _STREAM_ERROR_TYPE,
                _MALFORMED,
            )
        return self._on_chunk(data)

    def _on_chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        finished_before = self._finish_reason is not None
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._raw_usage = usage
            self.usage = Usage.from_openai(usage)
        if not self._started:
            if self.message_id is None and isinstance(chunk.get("id"), str) and chunk["id"]:
                self.message_id = _message_id(chunk["id"])
            if isinstance(chunk.get("model"), str) and chunk["model"]:
                self.model = chunk["model"]
        out: list[bytes] = []
        choice = _first_choice(chunk.get("choices"))
        delta = choice.get("delta") if choice is not None else None
        if isinstance(delta, dict):
            for name in ("content", "refusal"):
                text = delta.get(name)
                if isinstance(text, str) and text:
                    out.extend(self._text(text))
            calls = delta.get("tool_calls")
            for piece in calls if isinstance(calls, list) else ():
                if isinstance(piece, dict):
                    out.extend(self._tool_piece(piece))
                    if self._failure is not None:
                        return out
            legacy = delta.get("function_call")
            if isinstance(legacy, dict):
                out.extend(self._tool_piece({"index": "function_call", "function": legacy}))
        finish = choice.get("finish_reason") if choice is not None else None
        if isinstance(finish, str) and finish:
            self._finish_reason = finish
            out.extend(self._close_block())
        if isinstance(usage, dict) and self._finish_reason is not None:
            self._final_usage = True
            if finished_before:  # the usage chunk that follows the finish
                out.extend(self._end())
        return out

    def _on_error(self, data: Any, raw: bytes) -> list[bytes]:
        err = data.get("error", data) if isinstance(data, dict) else None
        if not isinstance(err, dict):
            err = {"message": err if isinstance(err, str) else None}
        message, kind, code = err.get("message"), err.get("type"), err.get("code")
        if not isinstance(message, str) or not message:
            snippet = raw[:_ERROR_SNIPPET].decode("utf-8", "replace").strip()
            message = snippet if data is None and snippet else "The provider's stream failed."
        return self._fail(
            message,
            kind if isinstance(kind, str) and kind else _STREAM_ERROR_TYPE,
            str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        )

    def _fail(self, message: str, kind: str, code: str | None) -> list[bytes]:
        # Raised (by feed or close, once what came before it is out), not written: before the
        # first event the caller falls back to the next provider; after it, the caller ends the
        # stream with an error event.
        self._reading = False
        self._failure = UpstreamStreamFailed(message, type=kind, error_code=code)
        return []

    # ------------------------------------------------------------------ blocks

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != "text":
            out.extend(self._close_block())
            out.append(self._open_block("text", {"type": "text", "text": ""}))
        out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def _tool_piece(self, piece: Mapping[str, Any]) -> list[bytes]:
        index = piece.get("index")
        function = piece.get("function")
        function = function if isinstance(function, dict) else {}
        call_id, name, arguments = piece.get("id"), function.get("name"), function.get("arguments")
        if index is None or isinstance(index, bool):
            # No index: a piece with an id starts a call, one without continues the open one.
            fresh = call_id or self._open_tool is None
            index = len(self._tools) if fresh else self._open_tool
        out: list[bytes] = []
        call = self._tools.get(index)
        if call is None:
            out.extend(self._close_block())
            call = _ToolCall(f"call_{len(self._tools)}", "")
            self._tools[index] = call
            self._open, self._open_tool = "tool", index
        elif call.closed:
            if not arguments and not name:
                return []  # a repeat of what is known
            return self._fail(
                f"Provider '{self.provider}' sent pieces of tool call {index} after another "
                "content block began.",
                _STREAM_ERROR_TYPE,
                _MALFORMED,
            )
        if not call.started:
            if isinstance(call_id, str) and call_id:
                call.id = call_id
            if isinstance(name, str) and name:
                call.name = name
        if isinstance(arguments, str) and arguments:
            if call.started:
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            else:
                call.pending.append(arguments)
        if not call.started and call.name:
            out.extend(self._start_tool(call))
        return out

    def _start_tool(self, call: _ToolCall) -> list[bytes]:
        call.started = True
        self._tool_used = True
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        out = [self._open_block("tool", block)]
        if call.pending:
            partial = "".join(call.pending)
            call.pending.clear()
            out.append(self._delta({"type": "input_json_delta", "partial_json": partial}))
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        self._open = kind
        self._blocks += 1
        return self._event_bytes(
            {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._event_bytes(
            {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        )

    def _close_block(self) -> list[bytes]:
        out: list[bytes] = []
        if self._open == "tool":
            call = self._tools[self._open_tool]
            if not call.started:  # it never got a name: it still gets its block
                out.extend(self._start_tool(call))
            call.closed = True
            self._open_tool = None
        if self._open is not None:
            out.append(self._event_bytes({"type": "content_block_stop", "index": self._blocks - 1}))
            self._open = None
        return out

    # ------------------------------------------------------------------ message

    def _start(self) -> list[bytes]:
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id or _message_id(None),
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            self._event_bytes({"type": "message_start", "message": message}),
            self._event_bytes({"type": "ping"}),
        ]

    def _end(self) -> list[bytes]:
        out = self._close_block()
        delta = {
            "stop_reason": _stop_reason(self._finish_reason, self._tool_used),
            "stop_sequence": None,
        }
        usage = messages_usage(self._raw_usage)
        out.append(self._event_bytes({"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(self._event_bytes({"type": "message_stop"}))
        self.complete = True
        self._reading = False
        return out

    @staticmethod
    def _event_bytes(payload: dict[str, Any]) -> bytes:
        return sse_event(payload, payload["type"])


def _first_choice(choices: Any) -> Mapping[str, Any] | None:
    """Choice 0 of a chunk (the request never asks for more)."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None
