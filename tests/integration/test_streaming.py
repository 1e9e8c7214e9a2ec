"""Streams through real gunicorn: disconnects, heartbeats, stalls."""

from __future__ import annotations

import json
import socket
import time

import requests

from tests.conftest import ALICE_KEY
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream, Fault

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def stream_body(gw: GatewayProcess, request_id: str | None = None, timeout: float = 15) -> bytes:
    """POST a streaming chat request and return the whole SSE body."""
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    resp = requests.post(
        f"{gw.url}/v1/chat/completions", json=CHAT, timeout=timeout, headers=headers
    )
    assert resp.status_code == 200, resp.text
    return resp.content


def raw_stream_request(gw: GatewayProcess) -> socket.socket:
    body = json.dumps(CHAT).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {ALICE_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_client_disconnect_closes_the_upstream_promptly(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    # A long stream: 200 tokens at 50 ms is 10 s if nobody stops it.
    fake.script(Fault(chunks=200, chunk_delay=0.05))
    sock = raw_stream_request(gateway)
    assert b"tok2" in read_until(sock, b"tok2")
    sock.close()
    closed_at = time.monotonic()
    deadline = closed_at + 5
    while time.monotonic() < deadline and fake.streams[0].disconnected is None:
        time.sleep(0.02)
    record = fake.streams[0]
    assert record.disconnected is not None, "the upstream kept streaming after the client left"
    assert record.disconnected - closed_at < 2.0
    assert record.finished is None and record.events_sent < 100


def test_heartbeats_while_upstream_is_silent(gateway: GatewayProcess, fake: FakeUpstream) -> None:
    # heartbeat_interval is 1 s in the test config; the upstream stalls for 2.5 s after 2 events.
    fake.script(Fault(chunks=3, stall_after=2, stall_for=2.5))
    body = stream_body(gateway)
    assert body.count(b": ping\n\n") >= 2
    before, _, after = body.partition(b": ping\n\n")
    assert before.endswith(b"\n\n") and b"tok0" in before and b"tok1" in after
    assert body.endswith(b"data: [DONE]\n\n: cost_usd=unpriced\n\n")


def test_stalled_stream_ends_with_a_timeout_event(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    # read timeout is 3 s in the test config; the upstream goes silent for 6 s.
    fake.script(Fault(chunks=3, stall_after=2, stall_for=6))
    content = stream_body(gateway)
    events = [e for e in content.split(b"\n\n") if e.startswith(b"data: ")]
    last = json.loads(events[-1][6:])
    assert last["error"]["type"] == "timeout" and last["error"]["code"] == "upstream_timeout"
    assert b"[DONE]" not in events[-1]


def test_concurrent_streams_run_side_by_side(gateway: GatewayProcess, fake: FakeUpstream) -> None:
    import concurrent.futures

    fake.default_chunk_delay = 0.2  # 5 tokens: about 1.2 s per stream

    def one() -> float:
        started = time.monotonic()
        content = stream_body(gateway)
        assert content.endswith(b"data: [DONE]\n\n: cost_usd=unpriced\n\n")
        return time.monotonic() - started

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: one(), range(6)))
    # Six 1.2 s streams on one worker with 8 threads finish together, not one after another.
    assert time.monotonic() - started < 4.0


def test_stream_cut_short_upstream_ends_with_an_error_event(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    fake.script(Fault(chunks=5, end_after=3))  # a clean end of the HTTP body, but no [DONE]
    content = stream_body(gateway, "cut-short-1")
    events = [e for e in content.split(b"\n\n") if e]
    assert b"tok1" in events[2]
    assert json.loads(events[-1][6:])["error"]["code"] == "upstream_stream_truncated"
    assert "[cut-short-1] proxyapi.streaming: stream from provider fake ended" in gateway.logs()


def test_upstream_failure_inside_a_stream_is_logged_with_the_request_id(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    fake.script(Fault(chunks=5, reset_after=3))
    content = stream_body(gateway, "reset-mid-1")
    assert b"upstream_connection_broken" in content
    # The upstream is read on the relay's helper thread; its log line still carries the id.
    assert "[reset-mid-1] proxyapi.upstream: provider fake: connection broke" in gateway.logs()
