"""OpenAI chat streams as Responses API streams (see the package docstring)."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxyapi.errors import ProxyAPIError
from proxyapi.providers.base import Usage
from proxyapi.translate.chat import ChatStreamReader, first_choice, tool_piece
from proxyapi.translate.responses_chat.answer import (
    arguments_text,
    custom_input,
    custom_tool_call_item,
    failure_error,
    finish_status,
    function_call_item,
    message_item,
    reasoning_delta,
    reasoning_item,
    reasoning_part,
    refusal_part,
    response_usage,
    text_part,
)
from proxyapi.translate.responses_chat.events import ResponseEvents
from proxyapi.translate.responses_chat.ids import new_id
from proxyapi.translate.responses_chat.tools import custom_tool_names

_EMPTY_PARTS = {
    "output_text": text_part(""),
    "refusal": refusal_part(""),
    "reasoning_text": reasoning_part(""),
}


@dataclass
class _Open:
    """The open message or reasoning item, and its open part."""

    index: int
    kind: str  # "message" or "reasoning"
    part: int | None = None
    part_type: str | None = None


@dataclass
class _Call:
    """One streamed chat tool call, until its output item is done."""

    id: str
    name: str = ""
    index: int | None = None  # its output index, once its item is open
    custom: bool = False
    pending: list[str] = field(default_factory=list)  # arguments before the item could open
    arguments: str = ""
    decoder: _InputDecoder = field(default_factory=lambda: _InputDecoder())
    done: bool = False


class ChatToResponsesStream(ChatStreamReader):
    """OpenAI chat.completion.chunk SSE bytes -> Responses API SSE events, for ``request``.

    Input may be cut anywhere; output is whole events. After the end, or an error, the rest of
    the input is ignored. An error event (``{"error": ...}`` or ``event: error``) or an event
    that is not JSON raises :class:`UpstreamStreamFailed`, from :meth:`feed` or :meth:`close`
    once the events before it were returned. ``final`` is the Response the terminal event
    carried.
    """

    def __init__(
        self, provider: str, request: Mapping[str, Any], response_id: str, created_at: int
    ) -> None:
        super().__init__(provider)
        self.usage: Usage | None = None
        self.complete = False
        self.final: dict[str, Any] | None = None
        model = request.get("model")
        self._events = ResponseEvents(
            response_id, created_at, request, model if isinstance(model, str) else ""
        )
        self._customs = custom_tool_names(request)
        self._open: _Open | None = None
        self._calls: dict[Any, _Call] = {}  # by chat tool call index
        self._last_call: Any = None

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes | None:
        """``response.failed`` for this stream, numbered after what was sent (with
        ``response.created`` first if nothing was); the items left open stay out of it."""
        self._reading = False
        return b"".join(self._events.fail(failure_error(exc, secrets)))

    # ------------------------------------------------------------------ input

    def _on_chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = self._on_choice(chunk) if self._finish_reason is None else []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            model = chunk.get("model")
            self.usage = Usage.from_openai(usage, model if isinstance(model, str) else None)
            self._events.usage = response_usage(usage)
            self._final_usage = self._finish_reason is not None
        return out

    def _on_choice(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """The events of the chunk's first choice (nothing comes after the finish)."""
        model = chunk.get("model")
        if not self._events.started and isinstance(model, str) and model:
            self._events.model = model
        choice = first_choice(chunk.get("choices"))
        if choice is None:
            return []
        out: list[bytes] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = reasoning_delta(delta)
            if reasoning:
                out += self._text("reasoning_text", reasoning)
            for name, kind in (("content", "output_text"), ("refusal", "refusal")):
                text = delta.get(name)
                if isinstance(text, str) and text:
                    out += self._text(kind, text)
            calls = delta.get("tool_calls")
            for piece in calls if isinstance(calls, list) else ():
                if isinstance(piece, dict):
                    out += self._tool_piece(piece)
            legacy = delta.get("function_call")
            if isinstance(legacy, dict):
                out += self._tool_piece({"index": "function_call", "function": legacy})
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish_reason = finish
            out += self._close_all()
        return out

    # ------------------------------------------------------------------ items

    def _text(self, part_type: str, text: str) -> list[bytes]:
        """Text of a part: in the open item when it is of the part's kind, else a new one."""
        kind = "reasoning" if part_type == "reasoning_text" else "message"
        out: list[bytes] = []
        if self._open is None or self._open.kind != kind:
            out += self._close_open()
            if kind == "reasoning":
                item = reasoning_item(new_id("rs"), [])
            else:
                item = message_item(new_id("msg"), [], "in_progress")
            index, added = self._events.add_item(item)
            out += added
            self._open = _Open(index, kind)
        if self._open.part_type != part_type:
            out += self._close_part()
            self._open.part, added = self._events.add_part(
                self._open.index, _EMPTY_PARTS[part_type]
            )
            self._open.part_type = part_type
            out += added
        assert self._open.part is not None
        return out + self._events.part_delta(self._open.index, self._open.part, text)

    def _close_part(self) -> list[bytes]:
        if self._open is None or self._open.part is None:
            return []
        out = self._events.finish_part(self._open.index, self._open.part)
        self._open.part = self._open.part_type = None
        return out

    def _close_open(self, status: str = "completed") -> list[bytes]:
        if self._open is None:
            return []
        out = self._close_part()
        out += self._events.finish_item(self._open.index, status=status)
        self._open = None
        return out

    def _tool_piece(self, piece: Mapping[str, Any]) -> list[bytes]:
        index, call_id, name, arguments = tool_piece(piece, len(self._calls), self._last_call)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(new_id("call"))
        self._last_call = index
        out: list[bytes] = []
        if call.index is None:
            if isinstance(call_id, str) and call_id:
                call.id = call_id
            if isinstance(name, str) and name:
                call.name = name
        if isinstance(arguments, str) and arguments:
            if call.index is None:
                call.pending.append(arguments)
            else:
                out += self._arguments(call, arguments)
        if call.index is None and call.name:
            out += self._open_call(call)
        return out

    def _open_call(self, call: _Call) -> list[bytes]:
        out = self._close_open()
        call.custom = call.name in self._customs
        if call.custom:
            item = custom_tool_call_item(new_id("ctc"), call.id, call.name, "")
        else:
            item = function_call_item(new_id("fc"), call.id, call.name, "", "in_progress")
        call.index, added = self._events.add_item(item)
        out += added
        if call.pending:
            out += self._arguments(call, "".join(call.pending))
            call.pending.clear()
        return out

    def _arguments(self, call: _Call, arguments: str) -> list[bytes]:
        assert call.index is not None
        call.arguments += arguments
        if call.custom:
            arguments = call.decoder.feed(arguments)
        return self._events.arguments_delta(call.index, arguments) if arguments else []

    def _close_call(self, call: _Call, status: str) -> list[bytes]:
        assert call.index is not None
        if call.custom:
            value = custom_input(call.arguments)
            out = []
            sent = call.decoder.text
            if value.startswith(sent) and len(value) > len(sent):  # what decoding held back
                out += self._events.arguments_delta(call.index, value[len(sent) :])
        else:
            value, out = arguments_text(call.arguments), []
        out += self._events.finish_arguments(call.index, value)
        call.done = True
        return out + self._events.finish_item(call.index, status=status)

    def _close_all(self) -> list[bytes]:
        """At the finish: close every open item, the last one incomplete if the answer is."""
        out: list[bytes] = []
        for call in self._calls.values():
            if call.index is None:  # it never got a name: it still gets its item
                out += self._open_call(call)
        opened: list[tuple[int, Any]] = [
            (call.index, call)
            for call in self._calls.values()
            if call.index is not None and not call.done
        ]
        if self._open is not None:
            opened.append((self._open.index, None))
        opened.sort(key=lambda entry: entry[0])
        incomplete = finish_status(self._finish_reason)[0] != "completed"
        for n, (_, call) in enumerate(opened):
            status = "incomplete" if incomplete and n == len(opened) - 1 else "completed"
            out += self._close_open(status) if call is None else self._close_call(call, status)
        return out

    def _end(self) -> list[bytes]:
        status, details = finish_status(self._finish_reason)
        out = self._events.complete(status, details)
        self.final = self._events.final
        self.complete = True
        self._reading = False
        return out


class _InputDecoder:
    """Decodes the ``input`` string of a custom tool's arguments, ``{"input": "..."}``, as
    they stream, so the client sees the input grow; it stops at any other shape, and the
    input then comes whole when the call ends."""

    def __init__(self) -> None:
        self.text = ""  # decoded so far
        self._raw = ""
        self._at: int | None = None  # where the string's next character is; None: before it
        self._stopped = False  # the string ended, or the arguments are of another shape

    def feed(self, piece: str) -> str:
        """Take more arguments; return the input they add."""
        self._raw += piece
        if self._stopped:
            return ""
        if self._at is None:
            start = _string_start(self._raw)
            if start is None:
                return ""
            if start < 0:
                self._stopped = True
                return ""
            self._at = start
        decoded = self._decode()
        self.text += decoded
        return decoded

    def _decode(self) -> str:
        raw, i = self._raw, self._at
        assert i is not None
        out: list[str] = []
        while i < len(raw) and not self._stopped:
            char = raw[i]
            if char == '"':
                self._stopped = True
            elif char != "\\":
                out.append(char)
                i += 1
                continue
            elif i + 1 >= len(raw):
                break  # the escaped character has not come
            elif raw[i + 1] in _ESCAPES:
                out.append(_ESCAPES[raw[i + 1]])
                i += 2
                continue
            elif raw[i + 1] == "u":
                char_text, width = _unicode_escape(raw, i)
                if width == 0:
                    break  # the escape has not all come
                if width < 0:
                    self._stopped = True
                else:
                    out.append(char_text)
                    i += width
                    continue
            else:
                self._stopped = True  # not JSON: the input comes whole at the end
        self._at = i
        return "".join(out)


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEAD = ("{", '"input"', ":", '"')
_SPACE = " \t\r\n"
_HEX = frozenset(string.hexdigits)


def _string_start(raw: str) -> int | None:
    """Where the ``input`` string starts in ``{"input": "``; None: not known yet; -1: never."""
    i = 0
    for token in _HEAD:
        while i < len(raw) and raw[i] in _SPACE:
            i += 1
        seen = raw[i : i + len(token)]
        if seen != token:
            return None if token.startswith(seen) and i + len(seen) == len(raw) else -1
        i += len(token)
    return i


def _unicode_escape(raw: str, i: int) -> tuple[str, int]:
    """The character of the ``\\uXXXX`` escape at ``i`` (a surrogate pair taken whole) and the
    escape's width; width 0: not all of it has come; -1: not an escape."""
    code = _hex4(raw, i + 2)
    if code is None:
        return "", 0 if len(raw) < i + 6 and set(raw[i + 2 :]) <= _HEX else -1
    if 0xD800 <= code < 0xDC00:  # a high surrogate: its low half may follow
        rest = raw[i + 6 : i + 12]
        low = _hex4(raw, i + 8) if rest.startswith("\\u") else None
        if low is not None and 0xDC00 <= low < 0xE000:
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), 12
        if len(rest) < 6 and ("\\u".startswith(rest[:2]) and set(rest[2:]) <= _HEX):
            return "", 0
    return chr(code), 6


def _hex4(raw: str, at: int) -> int | None:
    digits = raw[at : at + 4]
    return int(digits, 16) if len(digits) == 4 and set(digits) <= _HEX else None
