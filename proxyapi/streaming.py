"""Relay a provider's server-sent events to the client as they arrive.

The upstream is read on a helper thread so the response thread can wake up while the upstream
is silent and send an SSE comment (``: ping``): that keeps platform routers and proxies from
cutting an idle stream, and it is the write that reveals a client which has gone away.
(A read timeout on the upstream socket cannot do this: a timeout in the middle of a chunked
read leaves urllib3's response in an unknown state.)

A :class:`Relay` first waits, before anything is sent to the client, for the first whole event
(:meth:`Relay.wait_first`): until then the fallback loop may still try another provider. Only
whole events are forwarded, so a heartbeat or an error event never lands inside one. A stream
that ends without ``data: [DONE]`` was cut short upstream; the client gets an error event
rather than an answer that merely looks complete. When the client disconnects, gunicorn closes
the body generator; its ``finally`` aborts the upstream read at once, and the helper closes the
upstream connection, so the provider stops generating.
"""

from __future__ import annotations

import contextvars
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from proxyapi.errors import ProxyAPIError, UpstreamError, UpstreamTimeout, redact
from proxyapi.jsonio import encode_json
from proxyapi.providers.base import Usage

log = logging.getLogger(__name__)

HEARTBEAT = b": ping\n\n"
DONE_EVENT = b"data: [DONE]"
# Chunks buffered between the upstream reader and a slow client before the reader waits
# (which in turn applies TCP back-pressure to the provider).
QUEUE_CHUNKS = 256
# How often a reader blocked on a full queue looks whether the client has left.
_PUT_POLL = 0.5
_END = object()


class ChunkSource(Protocol):
    """An upstream stream: OpenAI SSE bytes, and a thread-safe way to interrupt reading them."""

    provider: str
    chunks: Iterator[bytes]

    def abort(self) -> None: ...


def sse_error_event(exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
    """Format an error as the SSE event OpenAI sends (and its SDK raises) mid-stream.

    The message may quote a provider (its error text): ``secrets`` are scrubbed from it.
    """
    payload = exc.payload()
    payload["error"]["message"] = redact(payload["error"]["message"], secrets)
    return b"data: " + encode_json(payload) + b"\n\n"


def _event_end(buf: bytes | bytearray) -> int:
    """Return the index just past the last complete SSE event in ``buf`` (0 if none)."""
    end = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buf.rfind(sep)
        if at >= 0:
            end = max(end, at + len(sep))
    return end


class Relay:
    """Reads one upstream stream on a helper thread and hands out whole events."""

    def __init__(self, source: ChunkSource, heartbeat: float, secrets: Iterable[str] = ()) -> None:
        self.source = source
        self.heartbeat = heartbeat
        # Kept out of the error events sent mid-stream (they may quote the provider).
        self.secrets = tuple(secrets)
        self._secret_bytes = tuple(s.encode("utf-8", "surrogatepass") for s in self.secrets)
        # Called once when the body ends: with the error that ended it, or None.
        self.on_finish: Callable[[ProxyAPIError | None], None] | None = None
        # The usage the stream reported, and whether to keep its usage-only chunk from the
        # client (the gateway asked for it to count tokens; the client did not).
        self.usage: Usage | None = None
        self.strip_usage = False
        # Shown every batch of events sent to the client (a budget counts their text).
        self.watch: Callable[[bytes], None] | None = None
        self._items: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._client_gone = threading.Event()
        self._pending = bytearray()
        self._ready = b""  # whole events read by wait_first, not yet sent
        self._done_seen = False
        # The helper runs in a copy of this context, so its log lines carry the request id.
        self._reader = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._pump,),
            name=f"sse-{source.provider}",
            daemon=True,
        )
        self._reader.start()

    # ------------------------------------------------------------------ helper thread

    def _put(self, item: object) -> bool:
        while not self._client_gone.is_set():
            try:
                self._items.put(item, timeout=_PUT_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        chunks = self.source.chunks
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(_END)
        except ProxyAPIError as exc:
            self._put(exc)
        except Exception:  # a bug, not an upstream failure: log it, end the stream cleanly
            log.exception("stream relay from provider %s failed", self.source.provider)
            self._put(UpstreamError(f"The stream from provider '{self.source.provider}' failed."))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    # ------------------------------------------------------------------ response thread

    def _take(self, chunk: bytes) -> bytes:
        """Add upstream bytes; return the whole events now complete (maybe none)."""
        self._pending += chunk
        end = _event_end(self._pending)
        if not end:
            return b""
        out = bytes(self._pending[:end])
        del self._pending[:end]
        self._done_seen = self._done_seen or DONE_EVENT in out
        return out

    def _ending(self) -> tuple[bytes, ProxyAPIError | None]:
        """What to send when the upstream ended: its last event, or a truncation error."""
        if DONE_EVENT in self._pending:  # a last event without its blank line
            return bytes(self._pending).rstrip(b"\r\n") + b"\n\n", None
        if self._done_seen:
            return b"", None
        log.warning("stream from provider %s ended without [DONE]", self.source.provider)
        error = UpstreamError(
            f"The stream from provider '{self.source.provider}' ended before it was complete.",
            error_code="upstream_stream_truncated",
        )
        return sse_error_event(error, self.secrets), error

    def wait_first(self, timeout: float) -> None:
        """Wait for the first whole event; raise the upstream's error, or a timeout, instead.

        On failure the upstream has been aborted, and nothing has been sent to the client.
        """
        until = time.monotonic() + timeout
        while not self._ready:
            left = until - time.monotonic()
            try:
                item = self._items.get(timeout=max(left, 0.0)) if left > 0 else _TIMED_OUT
            except queue.Empty:
                item = _TIMED_OUT
            error: ProxyAPIError | None = None
            if item is _TIMED_OUT:
                error = UpstreamTimeout(
                    f"Provider '{self.source.provider}' sent no first event within {timeout:.3g}s.",
                    error_code="upstream_first_token_timeout",
                )
            elif item is _END:
                self._ready, error = self._ending()
                if error is None:
                    return
            elif isinstance(item, ProxyAPIError):
                error = item
            else:
                assert isinstance(item, bytes)
                self._ready = self._take(item)
            if error is not None:
                self.close()
                raise error

    def _observe(self, events: bytes) -> bytes:
        """Scrub secrets; note the usage the events report; drop the usage-only chunk when
        asked to."""
        for secret in self._secret_bytes:
            if secret in events:  # a provider quoting our key back (in its own error event)
                events = events.replace(secret, b"[redacted]")
        if self.watch is not None and events:
            self.watch(events)
        if b'"usage"' not in events:
            return events
        kept = []
        for event in events.split(b"\n\n"):
            data = event[6:] if event.startswith(b"data: {") else b""
            if b'"usage"' in data:
                try:
                    chunk = json.loads(data)
                except ValueError:
                    chunk = None
                if isinstance(chunk, dict):
                    self.usage = Usage.from_openai(chunk.get("usage")) or self.usage
                    if self.strip_usage and chunk.get("choices") == []:
                        continue
            kept.append(event)
        return b"\n\n".join(kept)

    def events(self) -> Iterator[bytes]:
        """Yield the response body: whole events, heartbeats while silent, then the end."""
        error: ProxyAPIError | None = None
        try:
            ready, self._ready = self._observe(self._ready), b""
            if ready:  # an empty write could end a chunked body early
                yield ready
            while True:
                try:
                    item = self._items.get(timeout=self.heartbeat)
                except queue.Empty:
                    if not self._pending:
                        yield HEARTBEAT
                    continue
                if item is _END:
                    last, error = self._ending()
                    last = self._observe(last)
                    if last:
                        yield last
                    return
                if isinstance(item, ProxyAPIError):
                    error = item
                    yield sse_error_event(item, self.secrets)
                    return
                assert isinstance(item, bytes)
                out = self._observe(self._take(item))
                if out:
                    yield out
        finally:
            self.close()
            if self.on_finish is not None:
                self.on_finish(error)

    def close(self) -> None:
        """Stop reading the upstream (from any thread); the helper closes the connection."""
        self._client_gone.set()
        self.source.abort()


_TIMED_OUT = object()
