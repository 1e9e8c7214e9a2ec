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

import json
from typing import Any

from proxyapi.errors import UpstreamStreamFailed
from proxyapi.providers.anthropic.chat_reply import _STREAM_ERROR_TYPE, ERROR_TYPES, openai_usage
from proxyapi.providers.base import StreamTranslator, Usage
from proxyapi.providers.sse import ServerEvent, SSEParser

# Events that may come before the first content and are held back with message_start.
_OPENING = frozenset({"message_start", "ping"})


class MessagesPassThrough(StreamTranslator):
    """An Anthropic Messages stream for a Messages client: whole events, unchanged data."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._parser = SSEParser()
        self._held: list[bytes] = []
        self._started = False
        self._failure: UpstreamStreamFailed | None = None
        self._usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> list[bytes]:
        out = self._pass(self._parser.feed(chunk))
        if self._failure is not None and not out:
            raise self._failure
        return out

    def close(self) -> list[bytes]:
        if self._failure is not None:
            raise self._failure
        return self._pass(self._parser.close())

    def _pass(self, events: list[ServerEvent]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if self._failure is not None or self.complete:
                break
            try:
                data = json.loads(event.data)
            except ValueError:
                data = None
            kind = data.get("type") if isinstance(data, dict) else None
            if not isinstance(kind, str):
                kind = event.event
            if kind == "error":
                err = data.get("error") if isinstance(data, dict) else None
                err = err if isinstance(err, dict) else {}
                code = err.get("type") if isinstance(err.get("type"), str) else None
                message = err.get("message")
                self._failure = UpstreamStreamFailed(
                    message if isinstance(message, str) and message else "The stream failed.",
                    type=ERROR_TYPES.get(code or "", _STREAM_ERROR_TYPE),
                    error_code=code,
                )
                break
            self._observe(kind, data)
            framed = b"event: " + kind.encode("utf-8", "replace") + b"\ndata: " + event.data
            framed += b"\n\n"
            if not self._started and kind in _OPENING:
                self._held.append(framed)
                continue
            if not self._started:
                self._started = True
                out.extend(self._held)
                self._held = []
            out.append(framed)
        return out

    def _observe(self, kind: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        usage = None
        if kind == "message_start" and isinstance(data.get("message"), dict):
            usage = data["message"].get("usage")
        elif kind == "message_delta":
            usage = data.get("usage")
        elif kind == "message_stop":
            self.complete = True
        if isinstance(usage, dict):
            # message_delta's counts are cumulative: they replace message_start's.
            self._usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
            self.usage = Usage.from_openai(openai_usage(self._usage))
