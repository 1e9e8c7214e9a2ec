"""The gunicorn worker: gthread, but a thread is given only a request that has fully arrived.

gunicorn's gthread worker waits (up to 5 s) for a connection's first byte on its event loop,
then hands the connection to a thread, which reads the rest of the request with blocking
reads and no time limit. A client that trickles its headers, or announces a body it never
sends, holds that thread for as long as it likes; a few dozen such connections hold every
thread, and ``worker_connections`` caps the connections a worker accepts at all. None of
gunicorn's settings bounds the time a request takes to arrive (``timeout`` is the worker
heartbeat, ``keepalive`` the idle time between requests).

:class:`BufferingWorker` reads every request on the event loop instead, without blocking,
into a :class:`~proxyapi.framing.RequestBuffer`, until it is whole; only then does a thread
get it, and that thread reads from the buffered bytes alone. A request not whole within
``server.client_timeout`` seconds (from its connection's accept, or for a kept-alive
connection from its first byte) is answered 408 and closed; idle kept-alive connections stay
on the event loop, as in gthread. Requests gunicorn's parser refuses, bodies over
``server.max_body_bytes`` and bodies cut short are answered there with OpenAI-shaped JSON,
never reaching the app. Accepting pauses while the threads and their queue are full, so a
busy worker leaves new connections to the others.

TLS and HTTP/2 (gunicorn's ``certfile``, ``http2_cleartext``) and the PROXY protocol keep
gthread's own handling.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import TConn, ThreadWorker

from proxyapi.config import ServerConfig
from proxyapi.framing import CONTINUE, Refusal, RequestBuffer, State, refusal_for, refusal_response
from proxyapi.logs import clip, escape_control

# Largest recv() on the event loop.
READ_SIZE = 64 * 1024
# After an error answer, how long unread input is drained before the socket is closed: closing
# with input pending sends a reset, which can destroy the answer before the client reads it.
LINGER_SECONDS = 2.0
# Refusals logged per window, at most; the rest are counted in one line.
REFUSALS_LOGGED = 20
REFUSAL_LOG_WINDOW = 10.0
# File descriptors kept free for upstream connections, cache files and the like, when
# worker_connections has to be lowered to fit the process's limit.
RESERVED_FDS = 256

_TIMED_OUT = Refusal(
    408,
    "request_timeout",
    "The request did not arrive in full within the gateway's client timeout; it was not forwarded.",
)
_BUSY = Refusal(503, "server_busy", "The gateway is holding too many incomplete requests.")
# Bytes of incomplete requests one worker holds at most (at least two whole bodies); past it,
# a connection that sends more is answered 503, so slow uploads cannot exhaust its memory.
MIN_PENDING_BYTES = 256 * 1024 * 1024


class _Reading:
    """A connection whose request is arriving, and by when it must have."""

    __slots__ = ("buffer", "deadline")

    def __init__(self, buffer: RequestBuffer, deadline: float) -> None:
        self.buffer = buffer
        self.deadline = deadline


class _PreparsedParser(RequestParser):  # type: ignore[misc]
    """A parser that hands out the one request the event loop has already read and parsed."""

    def __init__(self, buffer: RequestBuffer) -> None:
        # Not RequestParser.__init__: that would wrap the socket.
        self.cfg = buffer.cfg
        self.unreader = buffer.unreader
        self.source_addr = buffer.peer
        self.req_count = buffer.req_number
        self.mesg = None
        self._next = buffer.request

    def __next__(self) -> Any:
        if self._next is None:
            raise StopIteration()
        self.mesg, self._next = self._next, None
        return self.mesg


def server_settings() -> ServerConfig:
    """The ``server`` section of the config the master checked (defaults without it)."""
    from proxyapi import serving

    config = serving.master_config()
    return config.server if config is not None else ServerConfig()


class BufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gthread that reads each request whole on its event loop before a thread serves it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = server_settings()
        self.client_timeout = settings.client_timeout
        self.max_body = settings.max_body_bytes
        self.max_pending_bytes = max(MIN_PENDING_BYTES, 2 * self.max_body)
        cfg = self.cfg
        self.passthrough = bool(
            cfg.is_ssl or cfg.http2_cleartext not in ("off", None) or cfg.proxy_protocol != "off"
        )
        # Requests given to the thread pool and not finished; accepting pauses at the limit.
        self.in_pool = 0
        self.pool_limit = cfg.threads + max(4, cfg.threads // 4)
        # Each in the order its deadline comes (every entry gets the same allowance).
        self.reading: dict[TConn, _Reading] = {}
        self.lingering: dict[TConn, float] = {}
        self.pending_bytes = 0
        self.worker_connections: int = cfg.worker_connections
        self._log_window, self._logged, self._unlogged = time.monotonic(), 0, 0

    # ------------------------------------------------------------------ process

    def init_process(self) -> None:
        self._fit_connections_to_fd_limit()
        super().init_process()

    def _fit_connections_to_fd_limit(self) -> None:
        """Raise the open-file limit to its maximum; lower worker_connections if it is short."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            except (ValueError, OSError):
                pass
        if soft == resource.RLIM_INFINITY:
            return
        room = int(soft) - RESERVED_FDS
        if self.worker_connections > room:
            self.log.warning(
                "worker_connections lowered from %d to %d to fit the open-file limit (%d)",
                self.worker_connections,
                max(room, self.pool_limit),
                soft,
            )
            self.worker_connections = max(room, self.pool_limit)
            self.max_keepalived = self.worker_connections - self.cfg.threads

    # ------------------------------------------------------------------ connections in

    def accept(self, listener: socket.socket) -> None:
        try:
            super().accept(listener)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            # Out of file descriptors: stop accepting until a connection closes (the main
            # loop turns accepting back on when it can).
            self.log.warning("cannot accept: %s", exc.strerror)
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.in_pool < self.pool_limit)

    def enqueue_req(self, conn: TConn) -> None:
        """Give ``conn`` to a thread if its request is whole, else read it on the loop first."""
        if self.passthrough or getattr(conn, "ready", False):
            conn.ready = False
            self.in_pool += 1
            if self.in_pool >= self.pool_limit:
                self.set_accept_enabled(False)
            super().enqueue_req(conn)
            return
        # A new connection, a kept-alive one that became readable, or bytes a finished request
        # left behind (the start of the next one, pipelined).
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self._read_request(conn, leftover)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        self.in_pool -= 1
        super().finish_request(conn, fs)

    # ------------------------------------------------------------------ reading a request

    def _read_request(self, conn: TConn, initial: bytes) -> None:
        conn.sock.setblocking(False)
        number = (conn.parser.req_count + 1) if conn.parser is not None else 1
        buffer = RequestBuffer(self.cfg, conn.client, number, self.max_body)
        self.reading[conn] = _Reading(buffer, time.monotonic() + self.client_timeout)
        if initial and self._take(conn, initial):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn: TConn, _sock: Any) -> None:
        entry = self.reading.get(conn)
        if entry is None:
            return
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if data:
            self._take(conn, data)
        else:
            self._settle(conn, entry.buffer.eof())

    def _take(self, conn: TConn, data: bytes) -> bool:
        """Feed ``data``; return True when the connection has left the reading stage."""
        if self.pending_bytes + len(data) > self.max_pending_bytes:
            self._answer(conn, _BUSY)
            return True
        self.pending_bytes += len(data)
        return self._settle(conn, self.reading[conn].buffer.feed(data))

    def _settle(self, conn: TConn, state: State) -> bool:
        buffer = self.reading[conn].buffer
        if state is State.NEED_MORE:
            if buffer.send_continue:
                buffer.send_continue = False
                self._send(conn, CONTINUE)
            return False
        if state is State.EMPTY:
            self._close(conn)
        elif state is State.REFUSED:
            assert buffer.refusal is not None
            self._answer(conn, buffer.refusal)
        else:  # whole: a thread serves it from the buffered bytes
            self._stop_reading(conn)
            conn.parser = _PreparsedParser(buffer)
            conn.data_ready = True
            conn.ready = True
            self.enqueue_req(conn)
        return True

    def _stop_reading(self, conn: TConn) -> None:
        entry = self.reading.pop(conn, None)
        if entry is not None:
            self.pending_bytes -= entry.buffer.received
        self.lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    # ------------------------------------------------------------------ answering, closing

    def _log_refusal(self, addr: Any, refusal: Refusal) -> None:
        """One line per refusal, at most ``REFUSALS_LOGGED`` per ``REFUSAL_LOG_WINDOW``: many
        slow or broken clients at once must not flood the log."""
        self._roll_refusal_log()
        if self._logged >= REFUSALS_LOGGED:
            self._unlogged += 1
            return
        self._logged += 1
        self.log.warning(
            "refused a request from %s: %s %s",
            _address(addr),
            refusal.status,
            escape_control(clip(refusal.message)),
        )

    def _roll_refusal_log(self) -> None:
        now = time.monotonic()
        if now - self._log_window < REFUSAL_LOG_WINDOW:
            return
        if self._unlogged:
            self.log.warning(
                "%d more refused requests were not logged in the last %.0fs",
                self._unlogged,
                now - self._log_window,
            )
        self._log_window, self._logged, self._unlogged = now, 0, 0

    def _answer(self, conn: TConn, refusal: Refusal) -> None:
        """Send an error answer from the loop, then drain the input briefly and close."""
        self._log_refusal(conn.client, refusal)
        entry = self.reading.get(conn)
        path = entry.buffer.path if entry is not None else ""
        self._stop_reading(conn)
        self._send(conn, refusal_response(refusal, path))
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        self.lingering[conn] = time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))

    def _drain(self, conn: TConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)

    def _send(self, conn: TConn, data: bytes) -> None:
        # Small answers fit the socket's send buffer; a client that cannot take them is gone.
        with contextlib.suppress(OSError):
            conn.sock.send(data)

    def _close(self, conn: TConn) -> None:
        self._stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Time out requests that have not arrived whole, and end lingering connections."""
        super().murder_pending()
        now = time.monotonic()
        late = []
        for conn, entry in self.reading.items():
            if entry.deadline > now:
                break
            late.append((conn, entry.buffer.received))
        for conn, received in late:
            if received:
                self._answer(conn, _TIMED_OUT)
            else:
                self._close(conn)
        done = []
        for conn, deadline in self.lingering.items():
            if deadline > now:
                break
            done.append(conn)
        for conn in done:
            self._close(conn)
        self._roll_refusal_log()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        """Answer what fails in a thread as JSON too (gunicorn would send HTML)."""
        from gunicorn.http.errors import ParseException

        if isinstance(exc, ParseException):
            refusal = refusal_for(exc)
            self._log_refusal(addr, refusal)
        else:
            self.log.exception("error handling a request")
            refusal = Refusal(500, "internal_error", "The gateway hit an internal error.")
        with contextlib.suppress(OSError):
            client.send(refusal_response(refusal, getattr(req, "path", "") or ""))


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and addr:
        return escape_control(str(addr[0]))
    return escape_control(str(addr or "-"))
