"""Reading OpenAI Chat Completions for the translators that turn it into another dialect.

:class:`ChatStreamReader` is the input side of every chat-stream translator: chat SSE bytes cut
anywhere, parsed into chunks, ``[DONE]``, error events and events that are not JSON; a
translator adds what it writes for each chunk (:meth:`ChatStreamReader._on_chunk`) and for the
end (:meth:`ChatStreamReader._end`). Providers put an error in a stream as ``{"error": {...}}``
data (OpenAI, most hosts), as an ``event: error`` (some hosts, and the Anthropic adapter's chat
stream), or as data that is not JSON; each becomes one :class:`UpstreamStreamFailed` typed as
the provider typed it, raised (by ``feed`` or ``close``, once what came before it was returned)
rather than written: before the first event the caller falls back to the next provider; after
it, the caller ends the stream with an error event in the client's dialect.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from proxyapi.errors import UpstreamStreamFailed
from proxyapi.providers.base import StreamTranslator
from proxyapi.providers.sse import ServerEvent, SSEParser

STREAM_ERROR_TYPE = "upstream_error"
_MALFORMED = "upstream_malformed_response"
_DONE = b"[DONE]"
# How much of an error that is not JSON is quoted back to the client.
_ERROR_SNIPPET = 300


def chat_stream_failure(data: Any, raw: bytes) -> UpstreamStreamFailed:
    """The failure an error event reports: ``data`` its parsed JSON (None if it is not JSON),
    ``raw`` its bytes."""
    err = data.get("error", data) if isinstance(data, dict) else None
    if not isinstance(err, dict):
        err = {"message": err if isinstance(err, str) else None}
    message, kind, code = err.get("message"), err.get("type"), err.get("code")
    if not isinstance(message, str) or not message:
        snippet = raw[:_ERROR_SNIPPET].decode("utf-8", "replace").strip()
        message = snippet if data is None and snippet else "The provider's stream failed."
    countable = isinstance(code, str | int) and not isinstance(code, bool)
    return UpstreamStreamFailed(
        message,
        type=kind if isinstance(kind, str) and kind else STREAM_ERROR_TYPE,
        error_code=str(code) if countable else None,
    )


def first_choice(choices: Any) -> Mapping[str, Any] | None:
    """Choice 0 of a chunk (a translated request never asks for more)."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def tool_piece(piece: Mapping[str, Any], calls: int, last: Any) -> tuple[Any, Any, Any, Any]:
    """A streamed tool-call piece as (its call's key, id, name, arguments). ``calls``: the
    calls seen so far; ``last``: the key of the latest. The key is the piece's ``index``; a
    piece without one (some hosts) starts a call when it has an id, else continues the last."""
    index = piece.get("index")
    function = piece.get("function")
    function = function if isinstance(function, dict) else {}
    call_id, name, arguments = piece.get("id"), function.get("name"), function.get("arguments")
    if index is None or isinstance(index, bool):
        index = calls if call_id or last is None else last
    return index, call_id, name, arguments


def message_text(content: Any) -> str:
    """The text of a chat message's ``content``: a string, or text parts (some upstreams)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


class ChatStreamReader(StreamTranslator):
    """The chat-stream half of a translator: whole chunks in, the subclass's events out.

    After the end, or an error, the rest of the input is ignored. ``_finish_reason`` is the
    finish seen, ``_final_usage`` whether usage came with the finish or after it (then the
    answer is whole even if ``[DONE]`` never comes).
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._parser = SSEParser()
        self._reading = True  # False after the end, an error, or [DONE]
        self._failure: UpstreamStreamFailed | None = None
        self._finish_reason: str | None = None
        self._final_usage = False

    @abstractmethod
    def _on_chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """The events for one chunk."""

    @abstractmethod
    def _end(self) -> list[bytes]:
        """The events that end a whole answer (sets ``complete``)."""

    def _cut_short(self) -> list[bytes]:
        """What to send when the upstream ended without the answer's end (default nothing:
        ``complete`` stays False and the caller reports the truncation)."""
        return []

    def _sent(self, out: list[bytes]) -> list[bytes]:
        """A hook on every batch of events before it is returned."""
        return out

    def feed(self, chunk: bytes) -> list[bytes]:
        out = self._read(self._parser.feed(chunk) if self._reading else [], last=False)
        if self._failure is not None and not out:
            raise self._failure
        return out  # a failure found in this chunk is raised on the next call

    def close(self) -> list[bytes]:
        if self._failure is not None:
            raise self._failure
        out = self._read(self._parser.close() if self._reading else [], last=True)
        if self._failure is not None:
            if not out:
                raise self._failure
            return out
        if not self.complete:
            # Usage came with or after the finish: [DONE] was all that was missing.
            out.extend(self._end() if self._final_usage else self._cut_short())
        self._reading = False
        return self._sent(out)

    def _read(self, events: list[ServerEvent], *, last: bool) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if not self._reading:
                break
            out.extend(self._sent(self._event(event, last=last)))
        return out

    def _event(self, event: ServerEvent, *, last: bool) -> list[bytes]:
        if event.data.strip() == _DONE:
            self._reading = False
            # Without a finish_reason the answer may be cut short: the caller reports it.
            return self._end() if self._finish_reason is not None else []
        try:
            data = json.loads(event.data)
        except (ValueError, RecursionError):  # UnicodeDecodeError included
            data = None
        if event.event == "error" or (isinstance(data, dict) and data.get("error") is not None):
            return self._failed(chat_stream_failure(data, event.data))
        if not isinstance(data, dict):
            if last:  # the stream was cut inside it: a truncation, which the caller reports
                return []
            return self._fail(
                f"Provider '{self.provider}' sent a stream event that is not a JSON object.",
                STREAM_ERROR_TYPE,
                _MALFORMED,
            )
        return self._on_chunk(data)

    def _fail(self, message: str, kind: str, code: str | None) -> list[bytes]:
        return self._failed(UpstreamStreamFailed(message, type=kind, error_code=code))

    def _failed(self, failure: UpstreamStreamFailed) -> list[bytes]:
        self._reading = False
        self._failure = failure
        return []
