"""The SSE relay: whole events, heartbeats, error events, abort on client exit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from proxyapi.errors import UpstreamTimeout
from proxyapi.streaming import HEARTBEAT, relay
from proxyapi.upstream import OpenedStream


class Source:
    """A scripted upstream: yields items; sleeps on floats; raises exceptions."""

    def __init__(self, *items: object) -> None:
        self.items = items
        self.closed = threading.Event()
        self.aborted = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        try:
            for item in self.items:
                if isinstance(item, float):
                    # An abort wakes a blocked read, as shutdown() does for a socket.
                    if self.aborted.wait(item):
                        return
                elif isinstance(item, BaseException):
                    raise item
                else:
                    assert isinstance(item, bytes)
                    yield item
        finally:
            self.closed.set()

    def stream(self) -> OpenedStream:
        return OpenedStream("up", self.chunks(), self.aborted.set)


def test_relays_only_whole_events_in_order() -> None:
    src = Source(b'data: {"a"', b':1}\n\ndata: {"b":2}\n\ndata: [DO', b"NE]\n\n")
    out = list(relay(src.stream(), heartbeat=5))
    assert out == [b'data: {"a":1}\n\ndata: {"b":2}\n\n', b"data: [DONE]\n\n"]
    assert src.closed.wait(1)


def test_crlf_events_count_as_whole() -> None:
    out = list(relay(Source(b"data: 1\r\n\r\ndata: [DONE]\r\n\r\n").stream(), heartbeat=5))
    assert out == [b"data: 1\r\n\r\ndata: [DONE]\r\n\r\n"]


def test_last_event_without_blank_line_is_completed() -> None:
    out = list(relay(Source(b"data: 1\n\ndata: [DONE]\n").stream(), heartbeat=5))
    assert out == [b"data: 1\n\n", b"data: [DONE]\n\n"]


def test_stream_ending_without_done_gets_an_error_event() -> None:
    out = list(relay(Source(b"data: 1\n\ndata: 2\n\ndata: par").stream(), heartbeat=5))
    assert out[0] == b"data: 1\n\ndata: 2\n\n"
    err = json.loads(out[1][6:])["error"]
    assert err["code"] == "upstream_stream_truncated" and len(out) == 2


def test_heartbeat_while_upstream_is_silent_but_not_inside_an_event() -> None:
    src = Source(b"data: 1\n\n", 0.35, b"data: 2\n\n", b"data: half", 0.35, b"\n\ndata: [DONE]\n\n")
    out = list(relay(src.stream(), heartbeat=0.1))
    assert out[0] == b"data: 1\n\n"
    first_gap = out[1 : out.index(b"data: 2\n\n")]
    assert first_gap and all(x == HEARTBEAT for x in first_gap)
    assert out[-1] == b"data: half\n\ndata: [DONE]\n\n"
    assert out[-2] == b"data: 2\n\n"  # no heartbeat was injected inside "data: half"


def test_upstream_error_mid_stream_becomes_an_sse_error_event() -> None:
    src = Source(
        b"data: 1\n\n", b"data: partial", UpstreamTimeout("Provider 'up' sent nothing for 3s.")
    )
    out = list(relay(src.stream(), heartbeat=5))
    assert out[0] == b"data: 1\n\n"
    assert len(out) == 2 and out[1].startswith(b"data: ") and out[1].endswith(b"\n\n")
    err = json.loads(out[1][6:])
    assert err["error"]["type"] == "timeout" and "sent nothing" in err["error"]["message"]


def test_client_leaving_aborts_and_closes_the_upstream() -> None:
    src = Source(b"data: 1\n\n", 30.0, b"data: never\n\n")
    gen = relay(src.stream(), heartbeat=5)
    assert next(gen) == b"data: 1\n\n"
    started = time.monotonic()
    gen.close()  # what gunicorn does when a write to the client fails
    assert src.aborted.is_set()
    assert src.closed.wait(2)
    assert time.monotonic() - started < 1


def test_unexpected_bug_in_the_reader_ends_with_an_error_event() -> None:
    out = list(relay(Source(b"data: 1\n\n", ValueError("bug")).stream(), heartbeat=5))
    assert len(out) == 2
    assert json.loads(out[-1][6:])["error"]["type"] == "upstream_error"
