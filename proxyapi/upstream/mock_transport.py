"""The transport of a ``type: mock`` provider: its answers, delivered as if over a socket.

A requests transport adapter (requests' own way to serve a URL scheme without a network):
:class:`MockTransport` takes the call the OpenAI adapter built, asks
:func:`proxyapi.mock.answers.plan` for the answer, and hands back a ``requests.Response``
whose urllib3 body arrives on the plan's schedule. Everything around it is the real path:
retries, breakers, deadlines, fallback, the stream relay, usage and cost. What a socket would
do, it does: a read that waits past the read timeout raises urllib3's timeout, a dropped
connection raises ``ConnectionResetError`` inside urllib3 (a ``ProtocolError``), and a
client that leaves interrupts a stalled answer.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError

from proxyapi.config import ProviderConfig
from proxyapi.mock.answers import Plan, plan


class _Schedule(io.RawIOBase):
    """A body that yields one part per read, each when the plan says, interruptible."""

    def __init__(self, delivery: Plan, read_timeout: float | None) -> None:
        super().__init__()
        self.plan = delivery
        self.read_timeout = read_timeout
        self.sent = 0
        self.pending = b""
        self.stop = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pending:
            self.pending = self._next()
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def _next(self) -> bytes:
        delivery = self.plan
        if self.sent >= len(delivery.parts) or self.stop.is_set():
            return b""
        if delivery.cut_after is not None and self.sent >= delivery.cut_after:
            raise ConnectionResetError("the mock provider dropped the connection, as told to")
        wait = delivery.interval if self.sent else 0.0
        if delivery.stall and self.sent == delivery.stall_after and self.sent:
            wait += delivery.stall
        self._wait(wait)
        if self.stop.is_set():
            return b""
        part = delivery.parts[self.sent]
        self.sent += 1
        return part

    def _wait(self, seconds: float) -> None:
        """Sleep, as a socket read would block: no longer than the read timeout."""
        if seconds <= 0:
            return
        limit = self.read_timeout
        if limit is not None and seconds > limit:
            self.stop.wait(limit)
            if not self.stop.is_set():
                raise TimeoutError("The mock provider's answer stalled past the read timeout.")
            return
        self.stop.wait(seconds)

    def interrupt(self) -> None:
        self.stop.set()


class _Response(urllib3.HTTPResponse):
    """A urllib3 response whose ``shutdown`` (a client gone) ends a scheduled body."""

    def __init__(self, schedule: _Schedule, **kwargs: Any) -> None:
        super().__init__(body=io.BufferedReader(schedule), **kwargs)
        self.schedule = schedule

    def shutdown(self) -> None:
        self.schedule.interrupt()


class MockTransport(HTTPAdapter):
    """Serves a mock provider's calls; retries as urllib3's pool would, with its ``Retry``.

    ``HTTPAdapter`` is the base (not requests' bare ``BaseAdapter``) so the worker's pool
    figures and everything else that expects a provider's adapter keep working; no pool is
    ever opened.
    """

    def __init__(self, provider: ProviderConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider = provider
        # Random failures are drawn per process; a test wanting a set fault uses a directive.
        self.draw = random.Random()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | urllib3.Timeout | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        method = request.method or "GET"
        url = request.url or ""
        body = request.body if isinstance(request.body, bytes) else None
        retries = self.max_retries
        # urllib3's pool runs this loop around a socket (HTTPConnectionPool.urlopen); without
        # one it is run here, with the same Retry object, so retries, Retry-After, backoff and
        # the request's deadline apply to mock calls exactly as to real ones.
        while True:
            delivery = plan(
                method,
                urlsplit(url).path,
                body,
                self.provider.mock,
                self.provider.models,
                int(time.time()),
                self.draw,
            )
            read_timeout = _read_timeout(timeout)
            try:
                _pause(delivery.latency + _head_stall(delivery), read_timeout)
                if delivery.reset:
                    raise ProtocolError(
                        "Connection aborted.", ConnectionResetError("reset by the mock provider")
                    )
            except (ProtocolError, ReadTimeoutError) as exc:
                try:
                    retries = retries.increment(method, url, error=exc)
                except MaxRetryError as gave_up:
                    # Only a dropped connection is retried here: requests' mapping of it.
                    raise requests.ConnectionError(gave_up, request=request) from exc
                except ReadTimeoutError as timed_out:
                    raise requests.ReadTimeout(timed_out, request=request) from exc
                retries.sleep()
                continue
            raw = _Response(
                _Schedule(delivery, read_timeout),
                headers=dict(delivery.headers),
                status=delivery.status,
                preload_content=False,
                decode_content=False,
                request_method=method,
                request_url=url,
            )
            has_retry_after = bool(raw.headers.get("Retry-After"))
            if retries.is_retry(method, delivery.status, has_retry_after):
                try:
                    retries = retries.increment(method, url, response=raw)
                except MaxRetryError:
                    if retries.raise_on_status:
                        raise
                    return self.build_response(request, raw)
                retries.sleep(raw)
                continue
            return self.build_response(request, raw)


def _head_stall(delivery: Plan) -> float:
    """A stall before any part (``stall_after`` 0) holds the head back, as a silent host does."""
    return delivery.stall if delivery.stall and not delivery.stall_after else 0.0


def _read_timeout(timeout: Any) -> float | None:
    """This attempt's read timeout (a urllib3 Timeout is cloned per attempt, as urlopen does)."""
    value: Any = timeout
    if isinstance(timeout, urllib3.Timeout):
        value = timeout.clone().read_timeout
    elif isinstance(timeout, tuple):
        value = timeout[1]
    return float(value) if isinstance(value, int | float) else None


def _pause(seconds: float, read_timeout: float | None) -> None:
    if seconds <= 0:
        return
    if read_timeout is not None and seconds > read_timeout:
        time.sleep(read_timeout)
        raise ReadTimeoutError(None, "mock", "Read timed out.")  # type: ignore[arg-type]
    time.sleep(seconds)
