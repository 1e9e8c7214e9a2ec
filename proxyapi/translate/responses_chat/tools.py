"""A Responses request's ``tools`` and ``tool_choice`` as chat's (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyapi.translate.responses_chat.items import invalid

_TOOL_CHOICES = ("auto", "none", "required")


# OpenAI's built-in tools that OpenAI's models call and the client runs.
_CLIENT_RUN_TOOLS = frozenset({"local_shell", "shell", "apply_patch"})


_CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {
        "input": {"type": "string", "description": "The whole input of the tool, as free text."}
    },
    "required": ["input"],
    "additionalProperties": False,
}


NO_PARAMETERS = {"type": "object", "properties": {}}


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


def chat_tools(tools: Any) -> tuple[list[dict[str, Any]], frozenset[str], frozenset[str]]:
    """Return the chat tools, and the names of the function and of the custom tools."""
    if tools is None:
        return [], frozenset(), frozenset()
    if not isinstance(tools, list):
        raise invalid("tools", "'tools' must be an array.")
    out: list[dict[str, Any]] = []
    functions: set[str] = set()
    customs: set[str] = set()
    for i, tool in enumerate(tools):
        at = f"tools.{i}"
        if not isinstance(tool, dict):
            raise invalid("tools", f"'{at}' must be an object.")
        kind = tool.get("type")
        if kind == "function":
            out.append(_function_tool(tool, at))
            functions.add(tool["name"])
        elif kind == "custom":
            out.append(_custom_tool(tool, at))
            customs.add(tool["name"])
        else:
            raise invalid("tools", _tool_refusal(kind, at))
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
        raise invalid("tools", f"'{at}.name' must be a non-empty string.")
    return name


def _description(tool: Mapping[str, Any], at: str) -> str | None:
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid("tools", f"'{at}.description' must be a string.")
    return description


def _function_tool(tool: Mapping[str, Any], at: str) -> dict[str, Any]:
    function: dict[str, Any] = {"name": _tool_name(tool, at)}
    description = _description(tool, at)
    if description is not None:
        function["description"] = description
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid("tools", f"'{at}.parameters' must be an object (a JSON schema).")
    function["parameters"] = parameters if parameters is not None else dict(NO_PARAMETERS)
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise invalid("tools", f"'{at}.strict' must be a boolean.")
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
            raise invalid(
                "tools",
                f"'{at}.format' must be a grammar with 'syntax' lark or regex and a 'definition'.",
            )
        lines.append(f"The text must follow this {syntax} grammar:\n{definition}")
    elif fmt is not None and kind != "text":
        raise invalid("tools", f"'{at}.format' must be of type 'text' or 'grammar'.")
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "\n\n".join(lines),
            "parameters": _CUSTOM_PARAMETERS,
        },
    }


def chat_tool_choice(choice: Any, names: frozenset[str]) -> Any:
    """OpenAI chat's ``tool_choice`` (None: leave it out)."""
    if choice is None:
        return None
    if choice in _TOOL_CHOICES:
        if not names:
            if choice == "required":
                raise invalid("tool_choice", "'tool_choice' 'required' needs 'tools'.")
            return None  # OpenAI refuses a tool_choice without tools
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str) or name not in names:
            raise invalid(
                "tool_choice",
                f"'tool_choice' names the tool {name!r}, which is not in 'tools'.",
            )
        return {"type": "function", "function": {"name": name}}
    raise invalid(
        "tool_choice",
        "'tool_choice' must be 'auto', 'none', 'required', or a function or custom tool "
        '({"type": "function", "name": ...}); allowed_tools and OpenAI\'s built-in tools are '
        "not translated.",
    )
