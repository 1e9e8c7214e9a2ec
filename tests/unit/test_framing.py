"""Reading a request whole off the wire, byte by byte if need be (proxyapi.framing)."""

from __future__ import annotations

import json

import pytest
from gunicorn.config import Config

from proxyapi.framing import RequestBuffer, State, refusal_response

PEER = ("127.0.0.1", 5000)
BODY = b'{"model": "m", "messages": []}'


def buffer(max_body: int = 1000) -> RequestBuffer:
    return RequestBuffer(Config(), PEER, 1, max_body)


def post(body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def chunked(*chunks: bytes, tail: bytes = b"0\r\n\r\n") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + tail
    return b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def feed_all(buf: RequestBuffer, raw: bytes, step: int) -> list[State]:
    return [buf.feed(raw[i : i + step]) for i in range(0, len(raw), step)]


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_a_request_is_ready_only_when_its_body_is_whole(step: int) -> None:
    buf = buffer()
    states = feed_all(buf, post(), step)
    assert states[-1] is State.READY and set(states[:-1]) <= {State.NEED_MORE}
    assert buf.request is not None and buf.request.path == "/v1/chat/completions"
    assert buf.request.body.read(10_000) == BODY


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_a_chunked_body_is_ready_after_its_last_chunk(step: int) -> None:
    buf = buffer()
    states = feed_all(buf, chunked(b'{"model":', b' "e", "input": "x"}'), step)
    assert states[-1] is State.READY and set(states[:-1]) <= {State.NEED_MORE}
    assert buf.request is not None
    assert json.loads(buf.request.body.read(10_000)) == {"model": "e", "input": "x"}


def test_pipelined_bytes_stay_for_the_next_request() -> None:
    buf = buffer()
    assert buf.feed(post() + b"GET /health HTTP/1.1\r\n") is State.READY
    assert buf.request is not None and buf.request.body.read(10_000) == BODY
    assert buf.unreader is not None and buf.unreader.take_buffered() == b"GET /health HTTP/1.1\r\n"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "invalid_http_request"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 414, "request_line_too_long"),
        (
            b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n",
            431,
            "request_headers_too_large",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\nX: y\n\n", 400, "invalid_http_request"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked, br\r\n\r\n",
            501,
            "unsupported_transfer_coding",
        ),
        (chunked(tail=b"zz\r\n"), 400, "invalid_chunked_body"),
        (
            chunked(b"abc", tail=b"0\r\n\r\n").replace(b"3\r\nabc\r\n", b"3\r\nabcXY"),
            400,
            "invalid_chunked_body",
        ),
        (post(b"x" * 1001), 413, "request_too_large"),
        (chunked(b"x" * 600, b"y" * 600), 413, "request_too_large"),
    ],
)
def test_what_gunicorn_would_refuse_is_refused_with_its_status(
    raw: bytes, status: int, code: str
) -> None:
    buf = buffer()
    assert buf.feed(raw) is State.REFUSED
    assert buf.refusal is not None
    assert (buf.refusal.status, buf.refusal.code) == (status, code)


def test_too_many_headers_is_a_431() -> None:
    raw = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n"
    buf = buffer()
    assert buf.feed(raw) is State.REFUSED
    assert buf.refusal is not None and buf.refusal.status == 431


def test_an_announced_body_too_large_is_refused_before_it_arrives() -> None:
    buf = buffer(max_body=100)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
    assert buf.feed(head) is State.REFUSED
    assert buf.refusal is not None and buf.refusal.status == 413


def test_a_body_cut_short_is_refused_not_passed_on() -> None:
    buf = buffer()
    raw = post()
    assert buf.feed(raw[:-5]) is State.NEED_MORE
    assert buf.eof() is State.REFUSED
    assert buf.refusal is not None and buf.refusal.code == "incomplete_request"
    assert buffer().eof() is State.EMPTY  # nothing sent: nothing to answer


def test_expect_100_continue_is_asked_for_once_and_not_by_gunicorn() -> None:
    buf = buffer()
    raw = post(extra=b"Expect: 100-continue\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert buf.feed(head + b"\r\n\r\n") is State.NEED_MORE
    assert buf.send_continue
    assert buf.request is not None and not buf.request._expected_100_continue
    assert buf.feed(body) is State.READY


def test_a_slow_head_is_parsed_only_when_a_line_ends() -> None:
    buf = buffer()
    for byte in b"GET /health HTTP/1.1":
        assert buf.feed(bytes([byte])) is State.NEED_MORE
    assert buf.feed(b"\r\nHost: x\r\n\r\n") is State.READY


def test_a_refusal_is_an_openai_shaped_http_response() -> None:
    buf = buffer()
    buf.feed(b"GET /\x1b[31m HTTP/1.1\r\n\r\n")
    assert buf.refusal is not None
    raw = refusal_response(buf.refusal)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http_request"
    assert set(error) == {"message", "type", "param", "code"}
