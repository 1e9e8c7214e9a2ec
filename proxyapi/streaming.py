"""Relay a provider's server-sent events to the client as they arrive.

The upstream is read on a helper thread so the response thread can wake up while the upstream
is silent and send an SSE comment (``: ping``): that keeps platform routers and proxies from
cutting an idle stream, and it is the write that reveals a client which has gone away.
(A read timeout on the upstream socket cannot do this: a timeout in the middle of a chunked
read leaves urllib3's response in an unknown state.)

Only whole events are forwarded, so a heartbeat or an error event never lands inside one. A
stream that ends without ``data: [DONE]`` was cut short upstream; the client gets an error
event rather than an answer that merely looks complete.
When the client disconnects, gunicorn closes this generator; its ``finally`` aborts the
upstream read at once, and the helper closes the upstream connection, so the provider stops
generating.
"""

from __future__ import annotations

import contextvars
import json
import logging
import queue
import threading
from collections.abc import Iterator

from proxyapi.errors import ProxyAPIError, UpstreamError
from proxyapi.upstream import OpenedStream

log = logging.getLogger(__name__)

HEARTBEAT = b": ping\n\n"
DONE_EVENT = b"data: [DONE]"
# Chunks buffered between the upstream reader and a slow client before the reader waits
# (which in turn applies TCP back-pressure to the provider).
QUEUE_CHUNKS = 256
# How often a reader blocked on a full queue looks whether the client has left.
_PUT_POLL = 0.5
_END = object()


def sse_error_event(exc: ProxyAPIError) -> bytes:
    """Format an error as the SSE event OpenAI sends (and its SDK raises) mid-stream."""
    return b"data: " + json.dumps(exc.payload(), ensure_ascii=False).encode("utf-8") + b"\n\n"


def _event_end(buf: bytes | bytearray) -> int:
    """Return the index just past the last complete SSE event in ``buf`` (0 if none)."""
    end = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buf.rfind(sep)
        if at >= 0:
            end = max(end, at + len(sep))
    return end


def relay(stream: OpenedStream, heartbeat: float) -> Iterator[bytes]:
    """Yield whole SSE events from ``stream``, heartbeats while it is silent, then the end."""
    items: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
    client_gone = threading.Event()

    def put(item: object) -> bool:
        while not client_gone.is_set():
            try:
                items.put(item, timeout=_PUT_POLL)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for chunk in stream.chunks:
                if not put(chunk):
                    return
            put(_END)
        except ProxyAPIError as exc:
            put(exc)
        except Exception:  # a bug, not an upstream failure: log it, end the stream cleanly
            log.exception("stream relay from provider %s failed", stream.provider)
            put(UpstreamError(f"The stream from provider '{stream.provider}' failed."))
        finally:
            close = getattr(stream.chunks, "close", None)
            if close is not None:
                close()

    # The helper runs in a copy of this context, so its log lines carry the request id.
    reader = threading.Thread(
        target=contextvars.copy_context().run,
        args=(pump,),
        name=f"sse-{stream.provider}",
        daemon=True,
    )
    reader.start()
    pending = bytearray()
    done_seen = False
    try:
        while True:
            try:
                item = items.get(timeout=heartbeat)
            except queue.Empty:
                if not pending:
                    yield HEARTBEAT
                continue
            if item is _END:
                if DONE_EVENT in pending:  # a last event without its blank line
                    yield bytes(pending).rstrip(b"\r\n") + b"\n\n"
                    done_seen = True
                if not done_seen:
                    log.warning("stream from provider %s ended without [DONE]", stream.provider)
                    yield sse_error_event(
                        UpstreamError(
                            f"The stream from provider '{stream.provider}' ended before it "
                            "was complete.",
                            error_code="upstream_stream_truncated",
                        )
                    )
                return
            if isinstance(item, ProxyAPIError):
                yield sse_error_event(item)
                return
            assert isinstance(item, bytes)
            pending += item
            end = _event_end(pending)
            if end:
                out = bytes(pending[:end])
                del pending[:end]
                done_seen = done_seen or DONE_EVENT in out
                yield out
    finally:
        client_gone.set()
        stream.abort()
