"""Directives: the ``[mock:key=value,...]`` settings a request puts in its last user message
(or prompt) to steer its own answer, as :mod:`proxyapi.mock.answers` describes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_DIRECTIVE = re.compile(r"\[mock:([^\]]{0,200})\]")


class DirectiveError(ValueError):
    """A ``[mock:...]`` directive that cannot be carried out (answered 400)."""


def directives(text: str) -> dict[str, str]:
    """The ``[mock:key=value,...]`` settings in ``text`` (the last wins)."""
    found: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        for item in match.group(1).split(","):
            key, _, value = item.strip().partition("=")
            if key:
                found[key.strip()] = value.strip()
    return found


def number(steering: Mapping[str, str], key: str, default: float) -> float:
    if key not in steering:
        return default
    try:
        value = float(steering[key])
    except ValueError:
        value = math.nan
    if not 0 <= value <= 600:
        raise DirectiveError(f"[mock:{key}=...] takes a number from 0 to 600.")
    return value


def whole(steering: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = steering.get(key)
    if raw is None and default is not None:
        return default
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise DirectiveError(f"[mock:{key}=...] takes a whole number.")
    return int(raw)


def steering_text(request: Mapping[str, Any]) -> str:
    """The text that may hold directives: the last user message, or the prompt."""
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text(message.get("content"))
        return ""
    return _text(request.get("prompt"))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [p.get("text") if isinstance(p, dict) else p for p in content]
    return " ".join(t for t in texts if isinstance(t, str))


def without_directives(text: str) -> str:
    """``text`` with its directives taken out."""
    return _DIRECTIVE.sub("", text)
