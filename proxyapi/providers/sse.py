"""Server-sent events: one encoder for every event the gateway writes, one incremental parser.

The parser follows the WHATWG event-stream rules that matter to LLM APIs: lines end in CRLF, LF
or CR; a line starting with ``:`` is a comment; ``data:`` lines of one event join with ``\\n``;
an event is dispatched at a blank line, and only if it had a data line; one space after the
colon is dropped; ``id``, ``retry`` and unknown fields are ignored; a leading UTF-8 BOM is
skipped. It works on bytes, so input cut anywhere (inside a UTF-8 character, between CR and LF)
is parsed as if whole, and each byte is looked at once however the input is cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxyapi.jsonio import encode_json

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


def sse_event(data: bytes | Mapping[str, Any] | list[Any], event: str | None = None) -> bytes:
    """Encode one whole event, ``event:`` line first when named (Anthropic's style).

    A mapping or list is written as compact JSON; bytes holding line breaks become several
    ``data:`` lines, which a parser joins back with ``\\n``.
    """
    payload = data if isinstance(data, bytes) else encode_json(data)
    out = bytearray()
    if event is not None:
        if _LINE_END.search(event.encode("utf-8")):
            raise ValueError("an SSE event name cannot hold a line break")
        out += b"event: " + event.encode("utf-8") + b"\n"
    for line in _LINE_END.split(payload):
        out += b"data: " + line + b"\n"
    out += b"\n"
    return bytes(out)


def whole_events_end(buf: bytes | bytearray) -> int:
    """The index just past the last complete event in ``buf`` (0 if none), for a relay that
    passes events on as bytes without parsing them."""
    end = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buf.rfind(sep)
        if at >= 0:
            end = max(end, at + len(sep))
    return end


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event; ``event`` is "" when the event had no ``event:`` line."""

    event: str
    data: bytes


class SSEParser:
    """Turns an event stream, fed in pieces cut anywhere, into whole :class:`ServerEvent` s."""

    def __init__(self) -> None:
        self._line = bytearray()  # the line being read: its end has not arrived yet
        self._skip_lf = False  # the last piece ended in CR: an LF opening the next one pairs it
        self._head: bytes | None = b""  # the stream's first bytes until the BOM check is done
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        """Take the next piece of the stream; return the events it completes."""
        if self._head is not None:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head.removeprefix(_BOM)
        if not chunk:
            return []
        start = 0
        if self._skip_lf and chunk.startswith(b"\n"):
            start = 1
        self._skip_lf = False
        out: list[ServerEvent] = []
        for end in _LINE_END.finditer(chunk, start):
            self._line += chunk[start : end.start()]
            start = end.end()
            line, self._line = bytes(self._line), bytearray()
            event = self._take(line)
            if event is not None:
                out.append(event)
        self._line += chunk[start:]
        self._skip_lf = chunk.endswith(b"\r")
        return out

    def close(self) -> list[ServerEvent]:
        """Return the last event when the stream ended without its blank line.

        A last line without its line end counts as a whole line: whether it was cut short is
        for the reader of its data to judge.
        """
        out: list[ServerEvent] = []
        if self._head:  # fewer bytes than a BOM, all of them its first: data after all
            head, self._head = self._head, None
            out.extend(self.feed(head))
        if self._line:
            line, self._line = bytes(self._line), bytearray()
            self._take(line)
        event = self._dispatch()
        if event is not None:
            out.append(event)
        self._skip_lf = False
        return out

    def _take(self, line: bytes) -> ServerEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        return None

    def _dispatch(self) -> ServerEvent | None:
        event = ServerEvent(self._event, b"\n".join(self._data)) if self._data else None
        self._event, self._data = "", []
        return event
