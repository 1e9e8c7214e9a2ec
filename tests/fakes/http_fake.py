"""What the fake providers share: a threaded loopback server that records traffic and plays
scripted faults, and the handler plumbing (bodies, resets, chunked writes)."""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

F = TypeVar("F")  # the fault type of a fake
R = TypeVar("R")  # its recorded request type
S = TypeVar("S")  # its recorded stream type


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hung up; report anything else (a bug in the fake)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ScriptedFake(Generic[F, R, S]):
    """A fake provider on a free loopback port: start with :meth:`start`, stop with
    :meth:`stop`; :meth:`script` queues faults for the next requests."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.requests: list[R] = []
        self.streams: list[S] = []
        self._faults: deque[F] = deque()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.mode: F | None = None  # applies to every request when no fault is queued
        self.server = FakeServer(("127.0.0.1", 0), handler)
        self.server.fake = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> Self:
        # A short poll interval keeps stop() quick.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        """Forget recorded traffic and queued faults."""
        with self._lock:
            self.requests.clear()
            self.streams.clear()
            self._faults.clear()
        self.mode = None

    def script(self, *faults: F) -> None:
        """Queue faults for the next requests, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def next_fault(self) -> F | None:
        with self._lock:
            return self._faults.popleft() if self._faults else self.mode

    def record(self, rec: R) -> None:
        with self._lock:
            self.requests.append(rec)

    def calls(self, path_suffix: str = "") -> list[R]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]  # type: ignore[attr-defined]


class FakeHandler(BaseHTTPRequestHandler):
    """Request plumbing of the fakes' handlers."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle + delayed ACK add 40 ms.
    disable_nagle_algorithm = True
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.raw_body = raw
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        self.wfile = Sink()  # type: ignore[assignment]  # the stdlib flushes wfile afterwards

    def _act_out(self, fault: Any) -> bool:
        """Play a fault's delay, reset or raw body; True if that answered the request."""
        if fault.delay:
            self.server.fake.stopping.wait(fault.delay)
        if fault.reset:
            self._reset()
            return True
        if fault.body is not None:
            self.send_response(fault.status or 200)
            self.send_header("Content-Type", fault.content_type or "application/json")
            self.send_header("Content-Length", str(len(fault.body)))
            for k, v in fault.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(fault.body)
            return True
        return False

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class Sink:
    """A write-only file that drops everything (after a deliberate reset)."""

    closed = False

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
