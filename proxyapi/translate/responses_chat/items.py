"""A Responses request's ``input`` items as chat messages (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyapi.errors import InvalidRequest
from proxyapi.jsonio import compact_json

_IMAGE_DETAILS = {"auto": None, "low": "low", "high": "high", "original": "high"}


_HOSTED_ITEMS = (
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "tool_search_call",
    "tool_search_output",
    "additional_tools",
    "program",
    "program_output",
)


# What a tool output's attachments are called in the text part that introduces them.
_ATTACHMENT_NAMES = {"image_url": "images", "file": "files"}


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


class _Messages:
    """Chat messages made from input items, with OpenAI's ordering rules kept."""

    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []
        # Parts the tool messages just added could not carry: a user message after them.
        self.attachments: list[dict[str, Any]] = []
        self.call_ids: set[str] = set()

    def add(self, message: dict[str, Any]) -> None:
        self._flush()
        self.out.append(message)

    def assistant_text(self, text: str) -> None:
        self._flush()
        last = self.out[-1] if self.out else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
            # Text after calls whose outputs have not come: the tool messages must follow the
            # message with the calls, so the text joins it.
            last["content"] = f"{last['content']}\n\n{text}" if last["content"] else text
        else:
            self.out.append({"role": "assistant", "content": text})

    def call(self, call: dict[str, Any]) -> None:
        self._flush()
        self.call_ids.add(call["id"])
        last = self.out[-1] if self.out else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.out.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def tool(self, message: dict[str, Any], attachments: list[dict[str, Any]]) -> None:
        self.out.append(message)  # tool messages stay together, right after the calls
        self.attachments.extend(attachments)

    def finish(self) -> list[dict[str, Any]]:
        self._flush()
        return self.out

    def _flush(self) -> None:
        if self.attachments:
            self.out.append({"role": "user", "content": self.attachments})
            self.attachments = []


def input_messages(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise invalid("input", "'input' is required, as a string or an array of items.")
    messages = _Messages()
    for i, item in enumerate(items):
        at = f"input.{i}"
        if not isinstance(item, dict):
            raise invalid(at, f"'{at}' must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _message(item, at, messages)
        elif kind in ("function_call", "custom_tool_call"):
            messages.call(_tool_call(item, kind, at))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _string(item, "call_id", at)
            if call_id not in messages.call_ids:
                raise invalid(
                    f"{at}.call_id",
                    f"'{at}' is the output of call {call_id!r}, which no earlier item of "
                    "'input' makes.",
                )
            messages.tool(*_tool_output(item, call_id, at))
        elif kind != "reasoning":  # reasoning items are dropped: see the package docstring
            raise _untranslatable_item(kind, at)
    return messages.finish()


def _untranslatable_item(kind: Any, at: str) -> InvalidRequest:
    if kind == "item_reference":
        why = "it refers to an item stored by OpenAI; send the item itself"
    elif kind == "compaction":
        why = "it holds a conversation compacted and encrypted by OpenAI, which only OpenAI reads"
    elif kind in _HOSTED_ITEMS or (isinstance(kind, str) and kind.startswith("mcp_")):
        why = "it belongs to one of OpenAI's built-in tools, which only OpenAI runs"
    elif not isinstance(kind, str):
        return invalid(f"{at}.type", f"'{at}' must be an item with a 'type'.")
    else:
        why = "it is not an item type this gateway can translate"
    return invalid(
        f"{at}.type",
        f"'{at}' is a {kind!r} item, which cannot be sent to this model's provider: {why}.",
    )


def _string(item: Mapping[str, Any], name: str, at: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise invalid(f"{at}.{name}", f"'{at}.{name}' must be a non-empty string.")
    return value


def _part_type(part: Any, at: str) -> str:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise invalid(at, f"'{at}' must be a content part: an object with a 'type'.")
    kind: str = part["type"]
    return kind


def _part_text(part: Mapping[str, Any], name: str, at: str) -> str:
    text = part.get(name)
    if not isinstance(text, str):
        raise invalid(f"{at}.{name}", f"'{at}.{name}' must be a string.")
    return text


def _message(item: Mapping[str, Any], at: str, messages: _Messages) -> None:
    role, content = item.get("role"), item.get("content")
    if not isinstance(content, str | list):
        raise invalid(f"{at}.content", f"'{at}.content' must be a string or an array.")
    if role == "user":
        messages.add({"role": "user", "content": _user_content(content, at)})
    elif role in ("system", "developer"):
        text = _system_text(content, at)
        if text:
            messages.add({"role": "system", "content": text})
    elif role == "assistant":
        text = _assistant_text(content, at)
        if text:
            messages.assistant_text(text)
    else:
        raise invalid(
            f"{at}.role",
            f"'{at}.role' must be 'user', 'assistant', 'system' or 'developer', got {role!r}.",
        )


def _user_content(content: str | list[Any], at: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not content:
        raise invalid(f"{at}.content", f"'{at}.content' must not be empty.")
    parts = [_user_part(part, f"{at}.content.{j}") for j, part in enumerate(content)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _user_part(part: Any, at: str) -> dict[str, Any]:
    kind = _part_type(part, at)
    if kind == "input_text":
        return {"type": "text", "text": _part_text(part, "text", at)}
    if kind == "input_image":
        return _image(part, at)
    if kind == "input_file":
        return _file(part, at)
    if kind == "input_audio":
        why = "audio input is not translated; send a transcript as text"
    else:
        why = "a user message takes input_text, input_image and input_file parts"
    raise invalid(f"{at}.type", f"'{at}' is a {kind!r} part, which cannot be translated: {why}.")


def _image(part: Mapping[str, Any], at: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id") is not None:
            raise invalid(
                f"{at}.file_id",
                f"'{at}' refers to a file stored by OpenAI ('file_id'), which this model's "
                "provider cannot read; send the image as a URL or a data URL in 'image_url'.",
            )
        raise invalid(f"{at}.image_url", f"'{at}.image_url' must be a URL or a data URL.")
    detail = part.get("detail")
    if detail is not None and detail not in _IMAGE_DETAILS:
        raise invalid(f"{at}.detail", f"'{at}.detail' must be auto, low, high or original.")
    image: dict[str, Any] = {"url": url}
    if detail is not None and _IMAGE_DETAILS[detail] is not None:
        image["detail"] = _IMAGE_DETAILS[detail]
    return {"type": "image_url", "image_url": image}


def _file(part: Mapping[str, Any], at: str) -> dict[str, Any]:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        where = "file_id" if part.get("file_id") is not None else "file_url"
        raise invalid(
            f"{at}.{where}",
            f"'{at}' must carry the file itself in 'file_data': files stored by OpenAI "
            "('file_id') and files by URL ('file_url') cannot be read by this model's provider.",
        )
    filename = part.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        filename = "document.pdf"  # chat files are PDFs
    return {"type": "file", "file": {"file_data": data, "filename": filename}}


def _system_text(content: str | list[Any], at: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        part_at = f"{at}.content.{j}"
        kind = _part_type(part, part_at)
        if kind != "input_text":
            raise invalid(
                f"{part_at}.type",
                f"'{part_at}' is a {kind!r} part; system and developer messages take text only.",
            )
        texts.append(_part_text(part, "text", part_at))
    return "\n\n".join(texts)


def _assistant_text(content: str | list[Any], at: str) -> str:
    if isinstance(content, str):
        return content
    texts = []  # pieces of one answer: joined with nothing
    for j, part in enumerate(content):
        part_at = f"{at}.content.{j}"
        kind = _part_type(part, part_at)
        if kind in ("output_text", "input_text"):
            texts.append(_part_text(part, "text", part_at))
        elif kind == "refusal":
            texts.append(_part_text(part, "refusal", part_at))
        else:
            raise invalid(
                f"{part_at}.type",
                f"'{part_at}' is a {kind!r} part; assistant messages take text and refusals only.",
            )
    return "".join(texts)


def _tool_call(item: Mapping[str, Any], kind: str, at: str) -> dict[str, Any]:
    call_id, name = _string(item, "call_id", at), _string(item, "name", at)
    if kind == "custom_tool_call":
        arguments = compact_json({"input": _part_text(item, "input", at)})
    else:
        arguments = _part_text(item, "arguments", at) or "{}"
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_output(
    item: Mapping[str, Any], call_id: str, at: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool output item -> its tool message, and the parts a tool message cannot carry."""
    output = item.get("output")
    texts: list[str] = []
    attachments: list[dict[str, Any]] = []
    if isinstance(output, str):
        texts.append(output)
    elif isinstance(output, list):
        for k, part in enumerate(output):
            part_at = f"{at}.output.{k}"
            kind = _part_type(part, part_at)
            if kind not in ("input_text", "input_image", "input_file"):
                raise invalid(
                    f"{part_at}.type",
                    f"'{part_at}' is a {kind!r} part; a tool output takes input_text, "
                    "input_image and input_file parts.",
                )
            chat_part = _user_part(part, part_at)
            if chat_part["type"] == "text":
                texts.append(chat_part["text"])
            else:
                attachments.append(chat_part)
    else:
        raise invalid(f"{at}.output", f"'{at}.output' must be a string or an array of parts.")
    message = {"role": "tool", "tool_call_id": call_id, "content": "\n".join(texts)}
    if attachments:
        names = dict.fromkeys(_ATTACHMENT_NAMES[part["type"]] for part in attachments)
        label = f"({' and '.join(names)} returned by tool {call_id})"
        attachments.insert(0, {"type": "text", "text": label})
    return message, attachments
