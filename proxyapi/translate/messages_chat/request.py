"""Anthropic Messages requests as OpenAI chat requests (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyapi.errors import InvalidRequest
from proxyapi.jsonio import compact_json, is_count
from proxyapi.providers.base import ChatTarget

__all__ = ["ChatTarget", "chat_request"]

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
# What a tool result's attachments are called in the text part that introduces them.
_ATTACHMENT_NAMES = {"image_url": "images", "file": "documents"}


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
    if not is_count(max_tokens) or max_tokens < 1:
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
        if not is_count(budget) or budget < 1:
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
