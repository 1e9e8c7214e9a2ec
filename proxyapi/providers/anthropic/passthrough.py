"""Anthropic's event stream relayed to a Messages client as it is, observed on the way.

Each event's data goes out byte for byte (thinking signatures, citations, server tool blocks
and events added after this was written included); only the framing is normalized
(``event: <type>`` and one ``data:`` line). ``message_start`` and the pings before the first
content wait for that content, so an error the provider sends right after starting
("overloaded") leaves nothing sent and the request can still go to another provider. An
``error`` event raises :class:`UpstreamStreamFailed` (the relay writes it in the client's
dialect); usage is read from ``message_start`` and ``message_delta``; the stream is complete at
``message_stop``.
"""

from __future__ import annotations

from typing import Any

from proxyapi.errors import UpstreamStreamFailed
from proxyapi.providers.anthropic.chat_reply import _STREAM_ERROR_TYPE, ERROR_TYPES, merge_usage
from proxyapi.providers.base import Usage
from proxyapi.providers.passthrough import EventPassThrough

# Events that may come before the first content and are held back with message_start.
_OPENING = frozenset({"message_start", "ping"})


class MessagesPassThrough(EventPassThrough):
    """An Anthropic Messages stream for a Messages client: whole events, unchanged data."""

    OPENING = _OPENING

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._usage: dict[str, Any] = {}
        self._model: str | None = None

    def _failure_of(self, kind: str, data: Any) -> UpstreamStreamFailed | None:
        if kind != "error":
            return None
        err = data.get("error") if isinstance(data, dict) else None
        err = err if isinstance(err, dict) else {}
        code = err.get("type") if isinstance(err.get("type"), str) else None
        message = err.get("message")
        return UpstreamStreamFailed(
            message if isinstance(message, str) and message else "The stream failed.",
            type=ERROR_TYPES.get(code or "", _STREAM_ERROR_TYPE),
            error_code=code,
        )

    def _observe(self, kind: str, data: dict[str, Any]) -> None:
        usage = None
        if kind == "message_start" and isinstance(data.get("message"), dict):
            usage = data["message"].get("usage")
            model = data["message"].get("model")
            self._model = model if isinstance(model, str) and model else None
        elif kind == "message_delta":
            usage = data.get("usage")
        elif kind == "message_stop":
            self.complete = True
        if isinstance(usage, dict):
            self.usage = Usage.from_anthropic(merge_usage(self._usage, usage), self._model)
