"""The SSE relay: first event, whole events, heartbeats, error events, abort on client exit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from proxyapi.errors import ProxyAPIError, UpstreamTimeout
from proxyapi.providers.base import Usage
from proxyapi.providers.openai import OpenAIEventStream
from proxyapi.streaming import HEARTBEAT, Relay, TranslatedStream


class Raw:
    """A scripted upstream: yields bytes; sleeps on floats; raises exceptions."""

    def __init__(self, *items: object) -> None:
        self.items = items
        self.closed = threading.Event()
        self.aborted = threading.Event()
        self.chunks = self._chunks()

    def _chunks(self) -> Iterator[bytes]:
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

    def abort(self) -> None:
        self.aborted.set()


class Source(TranslatedStream):
    """A scripted OpenAI upstream through its translator, as the gateway reads one."""

    def __init__(self, *items: object, strip_usage: bool = False) -> None:
        raw = Raw(*items)
        super().__init__("up", raw.chunks, OpenAIEventStream(strip_usage), raw.abort)
        self.aborted, self.closed = raw.aborted, raw.closed


def run(*items: object, heartbeat: float = 5, first_timeout: float = 5) -> list[bytes]:
    relay = Relay(Source(*items), heartbeat)
    relay.wait_first(first_timeout)
    return list(relay.events())


def test_relays_only_whole_events_in_order() -> None:
    out = run(b'data: {"a"', b':1}\n\ndata: {"b":2}\n\ndata: [DO', b"NE]\n\n")
    assert out == [b'data: {"a":1}\n\ndata: {"b":2}\n\n', b"data: [DONE]\n\n"]


def test_crlf_events_count_as_whole() -> None:
    assert run(b"data: 1\r\n\r\ndata: [DONE]\r\n\r\n") == [b"data: 1\r\n\r\ndata: [DONE]\r\n\r\n"]


def test_last_event_without_blank_line_is_completed() -> None:
    assert run(b"data: 1\n\ndata: [DONE]\n") == [b"data: 1\n\n", b"data: [DONE]\n\n"]


def test_stream_ending_without_done_gets_an_error_event() -> None:
    finished: list[ProxyAPIError | None] = []
    relay = Relay(Source(b"data: 1\n\ndata: 2\n\ndata: par"), 5)
    relay.on_finish = finished.append
    relay.wait_first(5)
    out = list(relay.events())
    assert out[0] == b"data: 1\n\ndata: 2\n\n"
    assert json.loads(out[1][6:])["error"]["code"] == "upstream_stream_truncated"
    assert len(out) == 2
    assert finished and finished[0] is not None


def test_heartbeat_while_upstream_is_silent_but_not_inside_an_event() -> None:
    out = run(
        b"data: 1\n\n",
        0.35,
        b"data: 2\n\n",
        b"data: half",
        0.35,
        b"\n\ndata: [DONE]\n\n",
        heartbeat=0.1,
    )
    assert out[0] == b"data: 1\n\n"
    first_gap = out[1 : out.index(b"data: 2\n\n")]
    assert first_gap and all(x == HEARTBEAT for x in first_gap)
    # "data: half" is held whole by the translator: heartbeats go between events, never inside.
    assert out[-1] == b"data: half\n\ndata: [DONE]\n\n"
    after = out[out.index(b"data: 2\n\n") + 1 : -1]
    assert all(x == HEARTBEAT for x in after)


def test_upstream_error_mid_stream_becomes_an_sse_error_event() -> None:
    finished: list[ProxyAPIError | None] = []
    relay = Relay(Source(b"data: 1\n\n", b"data: partial", UpstreamTimeout("nothing for 3s")), 5)
    relay.on_finish = finished.append
    relay.wait_first(5)
    out = list(relay.events())
    assert out[0] == b"data: 1\n\n"
    assert len(out) == 2 and out[1].startswith(b"data: ") and out[1].endswith(b"\n\n")
    err = json.loads(out[1][6:])
    assert err["error"]["type"] == "timeout" and "nothing for 3s" in err["error"]["message"]
    assert isinstance(finished[0], UpstreamTimeout)


def test_failure_before_the_first_event_raises_and_aborts() -> None:
    src = Source(b"data: part", UpstreamTimeout("slow"))
    relay = Relay(src, 5)
    with pytest.raises(UpstreamTimeout):
        relay.wait_first(5)
    assert src.aborted.is_set()


def test_first_event_timeout_raises_and_aborts() -> None:
    src = Source(30.0, b"data: late\n\n")
    relay = Relay(src, 5)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        relay.wait_first(0.2)
    assert info.value.payload()["error"]["code"] == "upstream_first_token_timeout"
    assert 0.2 <= time.monotonic() - started < 1
    assert src.aborted.is_set() and src.closed.wait(1)


def test_client_leaving_aborts_and_closes_the_upstream() -> None:
    finished: list[ProxyAPIError | None] = []
    src = Source(b"data: 1\n\n", 30.0, b"data: never\n\n")
    relay = Relay(src, 5)
    relay.on_finish = finished.append
    relay.wait_first(5)
    gen = relay.events()
    assert next(gen) == b"data: 1\n\n"
    started = time.monotonic()
    gen.close()  # what gunicorn does when a write to the client fails
    assert src.aborted.is_set()
    assert src.closed.wait(2)
    assert time.monotonic() - started < 1
    assert finished == [None]  # the client left: not the provider's failure


def test_unexpected_bug_in_the_reader_ends_with_an_error_event() -> None:
    out = run(b"data: 1\n\n", ValueError("bug"))
    assert len(out) == 2
    assert json.loads(out[-1][6:])["error"]["type"] == "upstream_error"


USAGE_CHUNK = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}\n\n'


def test_usage_is_read_and_its_chunk_kept_or_stripped() -> None:
    for strip in (False, True):
        relay = Relay(
            Source(b"data: 1\n\n", USAGE_CHUNK, b"data: [DONE]\n\n", strip_usage=strip), 5
        )
        relay.wait_first(5)
        body = b"".join(relay.events())
        assert relay.usage == Usage(2, 3, 5)
        assert (USAGE_CHUNK in body) is not strip
        assert body.startswith(b"data: 1\n\n") and body.endswith(b"data: [DONE]\n\n")


def test_secrets_are_scrubbed_from_relayed_events_and_error_events() -> None:
    from proxyapi.errors import UpstreamStreamFailed, secret_forms

    secret = "sk-live-abc123"
    relay = Relay(
        Source(
            b'data: {"a": 1}\n\n',
            b'data: {"error": {"message": "bad key sk-live-',
            b'abc123"}}\n\n',
            UpstreamStreamFailed(f"provider says: key {secret} is revoked"),
        ),
        5,
        secret_forms([secret]),
    )
    relay.wait_first(5)
    out = b"".join(relay.events())
    assert secret.encode() not in out
    assert out.count(b"[redacted]") == 2
