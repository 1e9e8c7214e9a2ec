"""Collect one HTTP/1.1 request off the wire until it is whole, without a thread waiting on it.

:class:`RequestBuffer` is fed the bytes a connection delivers, as they arrive, and says when
the request is complete: its head parsed (by gunicorn's own parser, so every limit and rule
of gunicorn still applies), and its whole body there (``Content-Length`` bytes, or a chunked
body up to its last chunk and trailers). It refuses what gunicorn would refuse, a body over
``server.max_body_bytes`` (whether announced or chunked), a malformed chunk, and a request cut
short, each as a :class:`Refusal` that :func:`refusal_response` turns into an OpenAI-shaped
JSON answer. Pure: bytes in, a state out; no socket, no clock.

The request handed on reads only from the buffered bytes (:class:`BufferUnreader`), never from
the socket, so the thread that serves it cannot block on a slow client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from gunicorn.http import errors as h
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader, Unreader

from proxyapi.dialects.shapes import dialect_of_path, error_for
from proxyapi.jsonio import encode_json
from proxyapi.logs import clip

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A chunk-size line longer than this is refused, as gunicorn's ChunkedReader does.
MAX_CHUNK_LINE = 8190

# gunicorn's refusals and the status it gives each (gunicorn.workers.base.handle_error), with
# the code our JSON body carries; every other parse error is a 400 invalid_http_request.
_REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (h.LimitRequestLine, 414, "request_line_too_long"),
    (h.LimitRequestHeaders, 431, "request_headers_too_large"),
    (h.UnsupportedTransferCoding, 501, "unsupported_transfer_coding"),
    (h.ExpectationFailed, 417, "expectation_failed"),
    (h.ForbiddenProxyRequest, 403, "forbidden_proxy_request"),
    (h.ConfigurationProblem, 500, "server_misconfigured"),
    (h.InvalidChunkSize, 400, "invalid_chunked_body"),
    (h.ChunkMissingTerminator, 400, "invalid_chunked_body"),
    (h.InvalidChunkExtension, 400, "invalid_chunked_body"),
)


class State(enum.Enum):
    """Where a request stands after the bytes fed so far."""

    NEED_MORE = "need_more"
    READY = "ready"
    REFUSED = "refused"
    EMPTY = "empty"  # the connection ended before a first byte: nothing to answer


@dataclass(frozen=True)
class Refusal:
    """Why a request is answered by the server itself, and how."""

    status: int
    code: str
    message: str


def refusal_for(exc: Exception) -> Refusal:
    """The answer to a request gunicorn's parser refused with ``exc``."""
    status, code = 400, "invalid_http_request"
    for kind, kind_status, kind_code in _REFUSALS:
        if isinstance(exc, kind):
            status, code = kind_status, kind_code
            break
    detail = clip(str(exc) or exc.__class__.__name__)
    return Refusal(status, code, f"The request could not be read: {detail}.")


def refusal_response(refusal: Refusal, path: str = "") -> bytes:
    """A whole HTTP/1.1 response carrying ``refusal`` as an error in the dialect of ``path``
    (OpenAI's when the path is not known); it closes the connection."""
    dialect = dialect_of_path(path)
    kind = "invalid_request_error" if refusal.status < 500 else None
    body = encode_json(
        error_for(dialect, refusal.status, refusal.message, kind, None, refusal.code)
    )
    try:
        reason = HTTPStatus(refusal.status).phrase
    except ValueError:
        reason = "Error"
    head = (
        f"HTTP/1.1 {refusal.status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class BufferUnreader(Unreader):  # type: ignore[misc]
    """gunicorn's unreader over bytes already received; past them it reads end-of-input."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__()
        self.buf.write(data)

    def feed(self, data: bytes) -> None:
        """Add bytes after those already held."""
        self.buf.seek(0, 2)
        self.buf.write(data)

    def chunk(self, size_hint: int | None = None) -> bytes:
        return b""


class RequestBuffer:
    """One request's bytes, from its first byte until it is whole (or refused)."""

    def __init__(self, cfg: Any, peer: Any, req_number: int, max_body: int) -> None:
        self.cfg = cfg
        self.peer = peer
        self.req_number = req_number
        self.max_body = max_body
        self.received = 0
        self.request: Request | None = None
        self.unreader: BufferUnreader | None = None
        self.refusal: Refusal | None = None
        # True once: the client asked for "100 Continue" before sending its body.
        self.send_continue = False
        self._head = bytearray()
        self._head_limit = _head_limit(cfg)
        self._need = 0  # Content-Length bytes still to come
        self._chunks: _ChunkScanner | None = None

    @property
    def path(self) -> str:
        """The request's path, for the dialect of a refusal: parsed, or read off the request
        line when the head itself was refused ("" when there is no such line)."""
        if self.request is not None:
            return str(self.request.path or "")
        parts = bytes(self._head).split(b"\n", 1)[0].split(b" ")
        if len(parts) < 3:
            return ""
        return parts[1].decode("latin-1").split("?", 1)[0].split("#", 1)[0]

    def feed(self, data: bytes) -> State:
        """Take the next bytes of the connection; say where the request stands."""
        self.received += len(data)
        if self.request is None:
            return self._feed_head(data)
        assert self.unreader is not None
        self.unreader.feed(data)
        return self._body_state(data)

    def eof(self) -> State:
        """The client closed its side: a request not yet whole will never be."""
        if self.received == 0:
            return State.EMPTY
        return self._refuse(
            Refusal(
                400,
                "incomplete_request",
                "The request ended before it was complete (its body is shorter than it "
                "announced, or its head or last chunk is missing); it was not forwarded.",
            )
        )

    # ------------------------------------------------------------------ head

    def _feed_head(self, data: bytes) -> State:
        searched = max(0, len(self._head) - 3)
        self._head += data
        head = self._head
        if b"\n" not in data and len(head) <= self._head_limit:
            return State.NEED_MORE  # no line ended: nothing new to parse
        end = head.find(b"\r\n\r\n", searched)
        bare_lf = head.count(b"\n") != head.count(b"\r\n")
        if end < 0 and not bare_lf and len(head) <= self._head_limit:
            return State.NEED_MORE
        unreader = BufferUnreader(bytes(head) if end < 0 else bytes(head[: end + 4]))
        try:
            request = Request(self.cfg, unreader, self.peer, self.req_number)
        except (h.NoMoreData, StopIteration):
            if len(head) > self._head_limit:
                return self._refuse(refusal_for(h.LimitRequestHeaders("request head too large")))
            return State.NEED_MORE
        except h.ParseException as exc:
            return self._refuse(refusal_for(exc))
        rest = bytes(head[end + 4 :]) if end >= 0 else b""
        self._head = bytearray()
        self.request, self.unreader = request, unreader
        # The whole body is read before the app runs: gunicorn must not send its own 100.
        expects = request._expected_100_continue
        request._expected_100_continue = False
        reader = request.body.reader if request.body is not None else None
        if isinstance(reader, ChunkedReader):
            self._chunks = _ChunkScanner(self.max_body)
        elif isinstance(reader, LengthReader):
            if reader.length > self.max_body:
                return self._refuse(_too_large(self.max_body))
            self._need = reader.length
        unreader.feed(rest)
        state = self._body_state(rest)
        self.send_continue = expects and state is State.NEED_MORE
        return state

    # ------------------------------------------------------------------ body

    def _body_state(self, data: bytes) -> State:
        if self._chunks is None:
            self._need -= len(data)
            return State.READY if self._need <= 0 else State.NEED_MORE
        found = self._chunks.feed(data)
        if isinstance(found, Refusal):
            return self._refuse(found)
        if found is None:
            return State.NEED_MORE
        return self._check_chunked(found)

    def _check_chunked(self, body_end: int) -> State:
        """Run gunicorn's own chunked reader over the whole body once, before the app does."""
        assert self.request is not None and self._chunks is not None
        reader = ChunkedReader(self.request, IterUnreader([bytes(self._chunks.data[:body_end])]))
        size = 0
        try:
            while piece := reader.read(1024 * 1024):
                size += len(piece)
        except (h.ParseException, h.NoMoreData) as exc:
            return self._refuse(refusal_for(exc))
        if size > self.max_body:
            return self._refuse(_too_large(self.max_body))
        return State.READY

    def _refuse(self, refusal: Refusal) -> State:
        self.refusal = refusal
        return State.REFUSED


def _too_large(limit: int) -> Refusal:
    return Refusal(
        413,
        "request_too_large",
        f"The request body is larger than the gateway's limit of {limit} bytes.",
    )


def _head_limit(cfg: Any) -> int:
    """Most bytes a request head may take before gunicorn's limits must have been hit."""
    fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= 32768 else 32768
    field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else 8190
    line = cfg.limit_request_line if cfg.limit_request_line > 0 else 8190
    return int(line + fields * (field_size + 2) + 4)


class _ChunkScanner:
    """Finds where a chunked body ends, as its bytes arrive, without decoding it.

    Only the framing is followed here (size lines, data, the CRLF after it, the trailers);
    gunicorn's reader checks every rule once the end is found. A bad size line, or a body
    whose chunks already add up past the limit, is refused at once.
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.data = bytearray()
        self._pos = 0  # where the next size line (or the trailers) starts
        self._size = 0
        self._trailers = False

    def feed(self, data: bytes) -> int | Refusal | None:
        """Add bytes; return the body's end offset once known, a refusal, or None."""
        self.data += data
        buf = self.data
        while True:
            if self._trailers:
                if buf[self._pos : self._pos + 2] == b"\r\n":
                    return self._pos + 2
                end = buf.find(b"\r\n\r\n", self._pos)
                if end >= 0:
                    return end + 4
                return None
            line_end = buf.find(b"\r\n", self._pos)
            if line_end < 0:
                if len(buf) - self._pos > MAX_CHUNK_LINE:
                    return refusal_for(h.InvalidChunkSize(b"chunk size line too long"))
                return None
            size_text = bytes(buf[self._pos : line_end]).split(b";", 1)[0].rstrip(b" \t")
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                return refusal_for(h.InvalidChunkSize(size_text[:40]))
            size = int(size_text, 16)
            if size == 0:
                self._pos, self._trailers = line_end + 2, True
                continue
            if self._size + size > self.max_body:
                return _too_large(self.max_body)
            after = line_end + 2 + size
            if len(buf) < after + 2:
                return None  # the size line is read again when more data has come
            if buf[after : after + 2] != b"\r\n":
                return refusal_for(h.ChunkMissingTerminator(bytes(buf[after : after + 2])))
            self._size += size
            self._pos = after + 2
