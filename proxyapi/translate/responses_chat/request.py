"""Responses API requests as OpenAI chat requests (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyapi.errors import InvalidRequest
from proxyapi.jsonio import compact_json, is_count
from proxyapi.translate.messages_chat import ChatTarget

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
_IMAGE_DETAILS = {"auto": None, "low": "low", "high": "high", "original": "high"}
_TOOL_CHOICES = ("auto", "none", "required")
# OpenAI's built-in tools that OpenAI's models call and the client runs.
_CLIENT_RUN_TOOLS = frozenset({"local_shell", "shell", "apply_patch"})
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
_CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {
        "input": {"type": "string", "description": "The whole input of the tool, as free text."}
    },
    "required": ["input"],
    "additionalProperties": False,
}
_NO_PARAMETERS = {"type": "object", "properties": {}}
# What a tool output's attachments are called in the text part that introduces them.
_ATTACHMENT_NAMES = {"image_url": "images", "file": "files"}


def chat_request(body: Mapping[str, Any], target: ChatTarget, stream: bool) -> dict[str, Any]:
    """A Responses API request body -> an OpenAI chat completions request body.

    Raise :class:`~proxyapi.errors.InvalidRequest` naming the field that cannot be translated.
    """
    for name, value in body.items():
        if value is None or name in _MAPPED:
            continue
        if name in _REFUSED:
            raise _invalid(name, f"'{name}' cannot be translated for this model: {_REFUSED[name]}.")
        if name not in _IGNORED:
            raise _invalid(
                name,
                f"'{name}' has no counterpart at this model's provider (an OpenAI-compatible "
                "chat upstream); remove it, or use a model served by OpenAI's Responses API.",
            )
        _check_ignored(name, value)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "'model' is required, as a string.")
    tools, functions, customs = _tools(body.get("tools"))
    messages = _instructions(body.get("instructions")) + _input(body.get("input"))
    if not messages:
        raise _invalid("input", "'input' holds nothing to send to the model.")
    out: dict[str, Any] = {"model": model, "messages": messages}
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        if not is_count(max_tokens) or max_tokens < 1:
            raise _invalid("max_output_tokens", "'max_output_tokens' must be a positive integer.")
        out[target.max_tokens_field] = max_tokens
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not _is_number(value):
                raise _invalid(name, f"'{name}' must be a number.")
            out[name] = value
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise _invalid("user", "'user' must be a string.")
        out["user"] = user
    if tools:
        out["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), functions | customs)
    if choice is not None:
        out["tool_choice"] = choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _invalid("parallel_tool_calls", "'parallel_tool_calls' must be a boolean.")
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


def custom_tool_names(body: Mapping[str, Any]) -> frozenset[str]:
    """The names of the request's custom (freeform) tools, whose calls answer as
    ``custom_tool_call`` items."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return frozenset()
    return frozenset(
        tool["name"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type") == "custom"
        and isinstance(tool.get("name"), str)
    )


def _invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_ignored(name: str, value: Any) -> None:
    """Refuse the values of ignored fields that would change the answer."""
    if name == "background" and value is not False:
        raise _invalid(
            "background",
            "'background' asks OpenAI to run the response in the background and keep it; this "
            "model's provider answers within the request: remove it or set it to false.",
        )
    if name == "top_logprobs" and value != 0:
        raise _invalid(
            "top_logprobs",
            "'top_logprobs' asks for log probabilities, which this gateway cannot return for "
            "this model; remove it.",
        )
    if name == "truncation" and value not in ("auto", "disabled"):
        raise _invalid("truncation", "'truncation' must be 'auto' or 'disabled'.")
    if name == "include":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _invalid("include", "'include' must be an array of strings.")
        for wanted in value:
            if wanted == "message.output_text.logprobs":
                raise _invalid(
                    "include",
                    "'include' asks for 'message.output_text.logprobs', which this gateway "
                    "cannot return for this model; remove it.",
                )
            if wanted not in _IGNORED_INCLUDES:
                raise _invalid("include", f"'include' holds {wanted!r}, which is not known.")


def _instructions(instructions: Any) -> list[dict[str, Any]]:
    if instructions is None:
        return []
    if not isinstance(instructions, str):
        raise _invalid("instructions", "'instructions' must be a string.")
    return [{"role": "system", "content": instructions}] if instructions else []


# ---------------------------------------------------------------------------------- input


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


def _input(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _invalid("input", "'input' is required, as a string or an array of items.")
    messages = _Messages()
    for i, item in enumerate(items):
        at = f"input.{i}"
        if not isinstance(item, dict):
            raise _invalid(at, f"'{at}' must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _message(item, at, messages)
        elif kind in ("function_call", "custom_tool_call"):
            messages.call(_tool_call(item, kind, at))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _string(item, "call_id", at)
            if call_id not in messages.call_ids:
                raise _invalid(
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
        return _invalid(f"{at}.type", f"'{at}' must be an item with a 'type'.")
    else:
        why = "it is not an item type this gateway can translate"
    return _invalid(
        f"{at}.type",
        f"'{at}' is a {kind!r} item, which cannot be sent to this model's provider: {why}.",
    )


def _string(item: Mapping[str, Any], name: str, at: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(f"{at}.{name}", f"'{at}.{name}' must be a non-empty string.")
    return value


def _part_type(part: Any, at: str) -> str:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _invalid(at, f"'{at}' must be a content part: an object with a 'type'.")
    kind: str = part["type"]
    return kind


def _part_text(part: Mapping[str, Any], name: str, at: str) -> str:
    text = part.get(name)
    if not isinstance(text, str):
        raise _invalid(f"{at}.{name}", f"'{at}.{name}' must be a string.")
    return text


def _message(item: Mapping[str, Any], at: str, messages: _Messages) -> None:
    role, content = item.get("role"), item.get("content")
    if not isinstance(content, str | list):
        raise _invalid(f"{at}.content", f"'{at}.content' must be a string or an array.")
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
        raise _invalid(
            f"{at}.role",
            f"'{at}.role' must be 'user', 'assistant', 'system' or 'developer', got {role!r}.",
        )


def _user_content(content: str | list[Any], at: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not content:
        raise _invalid(f"{at}.content", f"'{at}.content' must not be empty.")
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
    raise _invalid(f"{at}.type", f"'{at}' is a {kind!r} part, which cannot be translated: {why}.")


def _image(part: Mapping[str, Any], at: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id") is not None:
            raise _invalid(
                f"{at}.file_id",
                f"'{at}' refers to a file stored by OpenAI ('file_id'), which this model's "
                "provider cannot read; send the image as a URL or a data URL in 'image_url'.",
            )
        raise _invalid(f"{at}.image_url", f"'{at}.image_url' must be a URL or a data URL.")
    detail = part.get("detail")
    if detail is not None and detail not in _IMAGE_DETAILS:
        raise _invalid(f"{at}.detail", f"'{at}.detail' must be auto, low, high or original.")
    image: dict[str, Any] = {"url": url}
    if detail is not None and _IMAGE_DETAILS[detail] is not None:
        image["detail"] = _IMAGE_DETAILS[detail]
    return {"type": "image_url", "image_url": image}


def _file(part: Mapping[str, Any], at: str) -> dict[str, Any]:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        where = "file_id" if part.get("file_id") is not None else "file_url"
        raise _invalid(
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
            raise _invalid(
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
            raise _invalid(
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
                raise _invalid(
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
        raise _invalid(f"{at}.output", f"'{at}.output' must be a string or an array of parts.")
    message = {"role": "tool", "tool_call_id": call_id, "content": "\n".join(texts)}
    if attachments:
        names = dict.fromkeys(_ATTACHMENT_NAMES[part["type"]] for part in attachments)
        label = f"({' and '.join(names)} returned by tool {call_id})"
        attachments.insert(0, {"type": "text", "text": label})
    return message, attachments


# ---------------------------------------------------------------------------------- tools


def _tools(tools: Any) -> tuple[list[dict[str, Any]], frozenset[str], frozenset[str]]:
    """Return the chat tools, and the names of the function and of the custom tools."""
    if tools is None:
        return [], frozenset(), frozenset()
    if not isinstance(tools, list):
        raise _invalid("tools", "'tools' must be an array.")
    out: list[dict[str, Any]] = []
    functions: set[str] = set()
    customs: set[str] = set()
    for i, tool in enumerate(tools):
        at = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _invalid("tools", f"'{at}' must be an object.")
        kind = tool.get("type")
        if kind == "function":
            out.append(_function_tool(tool, at))
            functions.add(tool["name"])
        elif kind == "custom":
            out.append(_custom_tool(tool, at))
            customs.add(tool["name"])
        else:
            raise _invalid("tools", _tool_refusal(kind, at))
    return out, frozenset(functions), frozenset(customs)


def _tool_refusal(kind: Any, at: str) -> str:
    if kind == "namespace":
        return (
            f"'{at}' is a namespace of tools, which is not translated; declare its functions "
            "as top-level function tools."
        )
    if not isinstance(kind, str):
        return f"'{at}' must be a tool with a 'type'."
    if kind in _CLIENT_RUN_TOOLS:
        where = "is built into OpenAI's models, and this model's provider cannot call it"
    else:
        where = "runs on OpenAI's servers; this model's provider cannot run it"
    return (
        f"'{at}' is OpenAI's built-in tool {kind!r}, which {where}. Declare the tools you run "
        "as 'function' or 'custom' tools."
    )


def _tool_name(tool: Mapping[str, Any], at: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid("tools", f"'{at}.name' must be a non-empty string.")
    return name


def _description(tool: Mapping[str, Any], at: str) -> str | None:
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise _invalid("tools", f"'{at}.description' must be a string.")
    return description


def _function_tool(tool: Mapping[str, Any], at: str) -> dict[str, Any]:
    function: dict[str, Any] = {"name": _tool_name(tool, at)}
    description = _description(tool, at)
    if description is not None:
        function["description"] = description
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _invalid("tools", f"'{at}.parameters' must be an object (a JSON schema).")
    function["parameters"] = parameters if parameters is not None else dict(_NO_PARAMETERS)
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise _invalid("tools", f"'{at}.strict' must be a boolean.")
        function["strict"] = strict
    return {"type": "function", "function": function}


def _custom_tool(tool: Mapping[str, Any], at: str) -> dict[str, Any]:
    name = _tool_name(tool, at)
    description = _description(tool, at)
    lines = [description] if description else []
    lines.append(
        "This tool takes free text, not JSON: put the whole text the tool is to receive, as "
        "it is, in the string argument `input`."
    )
    fmt = tool.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if isinstance(fmt, dict) and kind == "grammar":
        syntax, definition = fmt.get("syntax"), fmt.get("definition")
        if syntax not in ("lark", "regex") or not isinstance(definition, str):
            raise _invalid(
                "tools",
                f"'{at}.format' must be a grammar with 'syntax' lark or regex and a 'definition'.",
            )
        lines.append(f"The text must follow this {syntax} grammar:\n{definition}")
    elif fmt is not None and kind != "text":
        raise _invalid("tools", f"'{at}.format' must be of type 'text' or 'grammar'.")
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "\n\n".join(lines),
            "parameters": _CUSTOM_PARAMETERS,
        },
    }


def _tool_choice(choice: Any, names: frozenset[str]) -> Any:
    """OpenAI chat's ``tool_choice`` (None: leave it out)."""
    if choice is None:
        return None
    if choice in _TOOL_CHOICES:
        if not names:
            if choice == "required":
                raise _invalid("tool_choice", "'tool_choice' 'required' needs 'tools'.")
            return None  # OpenAI refuses a tool_choice without tools
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str) or name not in names:
            raise _invalid(
                "tool_choice",
                f"'tool_choice' names the tool {name!r}, which is not in 'tools'.",
            )
        return {"type": "function", "function": {"name": name}}
    raise _invalid(
        "tool_choice",
        "'tool_choice' must be 'auto', 'none', 'required', or a function or custom tool "
        '({"type": "function", "name": ...}); allowed_tools and OpenAI\'s built-in tools are '
        "not translated.",
    )


# ---------------------------------------------------------------------------------- options


def _reasoning_effort(reasoning: Any) -> str | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise _invalid("reasoning", "'reasoning' must be an object.")
    for name, value in reasoning.items():
        if value is not None and name not in ("effort", "summary", "generate_summary", "context"):
            raise _invalid(f"reasoning.{name}", f"'reasoning.{name}' cannot be translated.")
    for name in ("summary", "generate_summary"):
        if reasoning.get(name) not in _SUMMARIES:
            raise _invalid(
                f"reasoning.{name}", f"'reasoning.{name}' must be auto, concise or detailed."
            )
    effort = reasoning.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise _invalid(
            "reasoning.effort",
            f"'reasoning.effort' must be one of {', '.join(_EFFORTS)}, got {effort!r}.",
        )
    return _EFFORTS[effort]


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _invalid("text", "'text' must be an object.")
    for name, value in text.items():
        if value is not None and name not in ("format", "verbosity"):
            raise _invalid(f"text.{name}", f"'text.{name}' cannot be translated.")
    if text.get("verbosity") not in _VERBOSITIES:
        raise _invalid("text.verbosity", "'text.verbosity' must be low, medium or high.")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise _invalid(
            "text.format", "'text.format' must be of type 'text', 'json_schema' or 'json_object'."
        )
    name, schema = fmt.get("name"), fmt.get("schema")
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise _invalid(
            "text.format",
            "'text.format' of type 'json_schema' needs a 'name' and a 'schema' (an object).",
        )
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    description, strict = fmt.get("description"), fmt.get("strict")
    if description is not None:
        if not isinstance(description, str):
            raise _invalid("text.format", "'text.format.description' must be a string.")
        json_schema["description"] = description
    if strict is not None:
        if not isinstance(strict, bool):
            raise _invalid("text.format", "'text.format.strict' must be a boolean.")
        json_schema["strict"] = strict
    return {"type": "json_schema", "json_schema": json_schema}
