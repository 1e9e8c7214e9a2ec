"""Relay a provider's server-sent events to the client as they arrive, in any dialect.

The upstream is read on a helper thread so the response thread can wake up while the upstream
is silent and send an SSE comment (``: ping``, which every SSE client ignores): that keeps
platform routers and proxies from cutting an idle stream, and it is the write that reveals a
client which has gone away. (A read timeout on the upstream socket cannot do this: a timeout
in the middle of a chunked read leaves urllib3's response in an unknown state.)

The upstream's bytes go through its adapter's translator (:class:`TranslatedStream`), which
hands out whole events in the client's dialect and says whether the stream ended properly and
what usage it reported; the relay knows no dialect. A :class:`Relay` first waits, before
anything is sent to the client, for the first whole event (:meth:`Relay.wait_first`): until
then the fallback loop may still try another provider. A heartbeat or an error event never
lands inside an event. A stream that ends without its proper end was cut short upstream; the
client gets an error event (framed by ``error_event``, the client's dialect) rather than an
answer that merely looks complete. When the client disconnects, gunicorn closes the body
generator; its ``finally`` aborts the upstream read at once, and the helper closes the
upstream connection, so the provider stops generating.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from proxyapi.errors import ProxyAPIError, UpstreamError, UpstreamTimeout, redact
from proxyapi.jsonio import encode_json
from proxyapi.providers.base import StreamTranslator, Usage

log = logging.getLogger(__name__)

HEARTBEAT = b": ping\n\n"
# Chunks buffered between the upstream reader and a slow client before the reader waits
# (which in turn applies TCP back-pressure to the provider).
QUEUE_CHUNKS = 256
# How often a reader blocked on a full queue looks whether the client has left.
_PUT_POLL = 0.5
_END = object()

ErrorEvent = Callable[[ProxyAPIError, Iterable[str]], bytes]


class ChunkSource(Protocol):
    """An upstream stream: whole events, what it reported, and a thread-safe way to stop it."""

    provider: str
    chunks: Iterator[bytes]

    @property
    def usage(self) -> Usage | None: ...

    @property
    def complete(self) -> bool: ...

    @property
    def final(self) -> dict[str, Any] | None: ...

    def abort(self) -> None: ...

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str]) -> bytes | None: ...


class TranslatedStream:
    """An upstream's raw bytes through its translator: whole events, usage, completeness."""

    def __init__(
        self,
        provider: str,
        raw: Iterable[bytes],
        translator: StreamTranslator,
        abort: Callable[[], None],
    ) -> None:
        self.provider = provider
        self.translator = translator
        self._abort = abort
        self.chunks = self._translate(raw)

    def _translate(self, raw: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for data in raw:
                yield from self.translator.feed(data)
            yield from self.translator.close()
        finally:
            close = getattr(raw, "close", None)
            if close is not None:
                close()

    @property
    def usage(self) -> Usage | None:
        return self.translator.usage

    @property
    def complete(self) -> bool:
        return self.translator.complete

    @property
    def final(self) -> dict[str, Any] | None:
        return self.translator.final

    def abort(self) -> None:
        self._abort()

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str]) -> bytes | None:
        return self.translator.error_event(exc, secrets)


def sse_error_event(exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
    """Format an error as the SSE event OpenAI sends (and its SDK raises) mid-stream.

    The message may quote a provider (its error text): ``secrets`` are scrubbed from it.
    """
    payload = exc.payload()
    payload["error"]["message"] = redact(payload["error"]["message"], secrets)
    return b"data: " + encode_json(payload) + b"\n\n"


class Relay:
    """Reads one upstream stream on a helper thread and hands out whole events."""

    def __init__(
        self,
        source: ChunkSource,
        heartbeat: float,
        secrets: Iterable[str] = (),
        error_event: ErrorEvent = sse_error_event,
    ) -> None:
        self.source = source
        self.heartbeat = heartbeat
        # Kept out of the error events sent mid-stream (they may quote the provider).
        self.secrets = tuple(secrets)
        self._secret_bytes = tuple(s.encode("utf-8", "surrogatepass") for s in self.secrets)
        # How an error is framed as an event in the client's dialect.
        self.error_event = error_event
        # Called once when the body ends: with the error that ended it, or None.
        self.on_finish: Callable[[ProxyAPIError | None], None] | None = None
        # Shown every batch of events sent to the client (a budget counts their text).
        self.watch: Callable[[bytes], None] | None = None
        # Called once, before the batch that ends the stream properly is sent (so a client
        # acting on the last event finds what it triggered done: a stored response).
        self.on_complete: Callable[[], None] | None = None
        # What follows the last event of a stream that ended properly (its cost, a comment).
        self.trailer: Callable[[], bytes] | None = None
        self._items: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._client_gone = threading.Event()
        self._ready = b""  # whole events read by wait_first, not yet sent
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

    @property
    def usage(self) -> Usage | None:
        """The usage the stream reported (its translator read it), if any."""
        return self.source.usage

    def _pump(self) -> None:
        chunks = self.source.chunks
        try:
            for chunk in chunks:
                if chunk and not self._put(chunk):
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

    def _ending(self) -> tuple[bytes, ProxyAPIError | None]:
        """What to send when the upstream ended: nothing more, or a truncation error."""
        if self.source.complete:
            return b"", None
        log.warning("stream from provider %s ended before it was complete", self.source.provider)
        error = UpstreamError(
            f"The stream from provider '{self.source.provider}' ended before it was complete.",
            error_code="upstream_stream_truncated",
        )
        return self._frame(error), error

    def _frame(self, exc: ProxyAPIError) -> bytes:
        """``exc`` as the event that ends the stream: framed by the stream itself when its
        dialect needs what was sent (a Responses stream's id), else by ``error_event``."""
        own = self.source.error_event(exc, self.secrets)
        return own if own is not None else self.error_event(exc, self.secrets)

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
                self._ready = item
            if error is not None:
                self.close()
                raise error

    def _observe(self, events: bytes) -> bytes:
        """Scrub secrets (a provider quoting our key back, in its own error event), and show
        the events to ``watch``; once the stream is complete, call ``on_complete``."""
        for secret in self._secret_bytes:
            if secret in events:
                events = events.replace(secret, b"[redacted]")
        if self.watch is not None and events:
            self.watch(events)
        if self.on_complete is not None and self.source.complete:
            callback, self.on_complete = self.on_complete, None
            try:
                callback()
            except Exception:  # the answer still goes out; what failed is logged
                log.exception(
                    "stream from provider %s: completion hook failed", self.source.provider
                )
        return events

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
                    # Between whole events: the translator holds any event still arriving.
                    yield HEARTBEAT
                    continue
                if item is _END:
                    last, error = self._ending()
                    last = self._observe(last)
                    if last:
                        yield last
                    if error is None and self.trailer is not None:
                        yield self.trailer()
                    return
                if isinstance(item, ProxyAPIError):
                    error = item
                    yield self._frame(item)
                    return
                assert isinstance(item, bytes)
                out = self._observe(item)
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
