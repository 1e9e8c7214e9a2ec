"""Hostile clients through real gunicorn: slow sockets, broken HTTP, bodies built to crash."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import requests

from tests.conftest import ALICE_KEY, UPSTREAM_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream, Fault
from tests.schemas import assert_valid

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}
CLIENT_TIMEOUT = 2.0
MAX_BODY = 256 * 1024
# A log line starts with a timestamp (ours, or gunicorn's in brackets); a traceback's lines
# are indented. Anything else at the left margin was planted by a client.
LOG_LINE = re.compile(r"^(\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|    |\{\"ts\")")


@pytest.fixture(scope="module")
def hostile(
    fake_server: FakeUpstream, start_gateway: Callable[..., GatewayProcess]
) -> GatewayProcess:
    """A gateway with short client timeouts, a small body limit, and a second provider type."""
    config = base_config(
        fake_server, client_timeout=CLIENT_TIMEOUT, max_body_bytes=MAX_BODY, request_timeout=30
    )
    config["cache"] = {"responses": "deterministic"}
    config["rate_limits"] = {"failed_auth": "3/minute"}
    config["providers"].append(
        # Never reached over the network: it cannot honour logprobs, and says so first.
        {
            "name": "claude",
            "type": "anthropic",
            "base_url": "http://127.0.0.1:9",
            "priority": 5,
            "models": ["gpt-4o-mini"],
        }
    )
    config["providers"].append(
        {
            "name": "globbed",
            "base_url": fake_server.base_url,
            "api_key_env": "FAKE_UPSTREAM_KEY",
            "models": ["fake-*"],
            "priority": 9,
        }
    )
    return start_gateway(config)


@pytest.fixture
def gw(hostile: GatewayProcess, fake: FakeUpstream) -> GatewayProcess:
    return hostile


def raw(gw: GatewayProcess, data: bytes, half_close: bool = False, timeout: float = 5) -> bytes:
    """Send raw bytes; return everything the gateway sends back until it closes."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"Content-Type: application/json" in head, head
    payload = json.loads(body)
    assert_valid("ErrorResponse", payload)
    return status, payload["error"]


def post(
    gw: GatewayProcess,
    body: bytes | dict[str, Any],
    path: str = "/v1/chat/completions",
    **headers: str,
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{gw.url}{path}", data=data, headers={**AUTH, **headers}, timeout=10)


# ------------------------------------------------------------------ slow clients


class SlowClients:
    """Connections that trickle their head, or announce a body and never send it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.trickling: list[socket.socket] = []
        self.stalled: list[socket.socket] = []
        self._stop = threading.Event()

    def open(self, trickling: int, stalled: int) -> None:
        for _ in range(trickling):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            self.trickling.append(s)
        for _ in range(stalled):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {ALICE_KEY}\r\n".encode()
                + b'Content-Length: 5000\r\n\r\n{"model": "gpt-4o-mini"'
            )
            self.stalled.append(s)
        threading.Thread(target=self._trickle, daemon=True).start()

    def _trickle(self) -> None:
        n = 0
        while not self._stop.wait(0.5):  # one more header line each, every half second
            n += 1
            for s in self.trickling:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Slow-%d: y\r\n" % n)

    def outcomes(self, within: float) -> list[bytes]:
        """What each connection got before the gateway closed it (b"" for a bare close)."""
        self._stop.set()
        until = time.monotonic() + within
        out = []
        for s in self.trickling + self.stalled:
            s.settimeout(max(0.05, until - time.monotonic()))
            try:
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
                out.append(got)
            except (TimeoutError, OSError):
                out.append(b"STILL OPEN")
            finally:
                s.close()
        return out


def timed(call: Callable[[], requests.Response]) -> tuple[float, requests.Response]:
    started = time.monotonic()
    resp = call()
    return time.monotonic() - started, resp


def test_slow_clients_hold_no_thread_and_are_closed_at_the_client_timeout(
    gw: GatewayProcess,
) -> None:
    # 8 threads serve 400 slow connections and 50 idle kept-alive ones without noticing.
    idle = [http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5) for _ in range(50)]
    for conn in idle:
        conn.request("GET", "/health")
        assert conn.getresponse().read() == b'{"status":"ok"}\n'
    slow = SlowClients(gw.port)
    started = time.monotonic()
    slow.open(trickling=200, stalled=200)
    time.sleep(0.3)
    health_took, health = timed(lambda: requests.get(f"{gw.url}/health", timeout=5))
    chat_took, chat = timed(lambda: post(gw, CHAT))
    assert health.status_code == 200 and chat.status_code == 200, chat.text
    assert health_took < 1.0 and chat_took < 1.0, (health_took, chat_took)
    outcomes = slow.outcomes(within=CLIENT_TIMEOUT + 3)
    closed_after = time.monotonic() - started
    assert b"STILL OPEN" not in outcomes
    timeouts = [status_and_error(o) for o in outcomes]
    assert {(status, e["code"]) for status, e in timeouts} == {(408, "request_timeout")}
    assert closed_after < CLIENT_TIMEOUT + 3
    # The trickled header lines did not buy more time: the limit is on the whole request.
    for conn in idle:
        conn.close()
    assert "refused a request from 127.0.0.1: 408" in gw.logs()


# ------------------------------------------------------------------ HTTP-level refusals


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT A REQUEST LINE\r\n\r\n", 400, "invalid_http_request"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_line_too_long"),
        (
            b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            431,
            "request_headers_too_large",
        ),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n",
            431,
            "request_headers_too_large",
        ),
        (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, br\r\n\r\n",
            501,
            "unsupported_transfer_coding",
        ),
        (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "invalid_chunked_body",
        ),
        (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"20000\r\n"
            + b"x" * 0x20000
            + b"\r\n"
            + b"20000\r\n"
            + b"x" * 0x20000
            + b"\r\n"
            + b"10\r\n"
            + b"x" * 16
            + b"\r\n0\r\n\r\n",
            413,
            "request_too_large",
        ),
        (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % (MAX_BODY + 1),
            413,
            "request_too_large",
        ),
    ],
)
def test_gunicorns_refusals_are_openai_shaped_json(
    gw: GatewayProcess, fake: FakeUpstream, request_bytes: bytes, status: int, code: str
) -> None:
    got_status, error = status_and_error(raw(gw, request_bytes))
    assert (got_status, error["code"]) == (status, code)
    assert not fake.calls()


def test_a_body_cut_short_is_never_forwarded(gw: GatewayProcess, fake: FakeUpstream) -> None:
    body = json.dumps(CHAT).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {ALICE_KEY}\r\n".encode()
        + b"Content-Length: %d\r\n\r\n" % (len(body) + 40)
    )
    # A body that would parse on its own, cut short of its announced length.
    status, error = status_and_error(raw(gw, head + body, half_close=True))
    assert (status, error["code"]) == (400, "incomplete_request")
    assert not fake.calls()


def test_a_whole_chunked_body_and_expect_100_continue_are_served(
    gw: GatewayProcess, fake: FakeUpstream
) -> None:
    body = json.dumps({"model": "text-embedding-3-small", "input": "hi"}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + b"0\r\n\r\n"
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {ALICE_KEY}\r\n".encode()
    )
    out = raw(gw, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in out
    assert b"X-Cache: HIT" in out  # the same body both times (embeddings are cached)
    assert len(fake.calls("/embeddings")) == 1


def test_pipelined_requests_are_answered_in_order(gw: GatewayProcess) -> None:
    two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(gw, two)
    assert out.count(b"HTTP/1.1 ") == 2
    assert out.index(b"200 OK") < out.index(b"404 NOT FOUND")


# ------------------------------------------------------------------ bodies built to crash


SURROGATE = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x\\ud800y"}]%s}'


@pytest.mark.parametrize(
    ("body", "extra"),
    [
        (SURROGATE % "", {}),
        (SURROGATE % ', "stream": true', {}),
        (SURROGATE % ', "temperature": 0', {}),  # cacheable: the key is computed from it
        ('{"model": "text-embedding-3-small", "input": ["a\\udfff"]}', {"path": "/v1/embeddings"}),
    ],
)
def test_a_lone_surrogate_is_relayed_as_the_escape_it_was(
    gw: GatewayProcess, fake: FakeUpstream, body: str, extra: dict[str, str]
) -> None:
    resp = post(gw, body.encode(), **extra)
    assert resp.status_code == 200, resp.text
    sent = fake.calls()[-1].body
    text = json.dumps(sent)
    assert "\\ud800" in text or "\\udfff" in text  # the upstream parsed the same string


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"model": "gpt-4o-\\ud800", "messages": []}', "'model' must not contain control"),
        (json.dumps({**CHAT, "model": "gpt\r\nINFO forged"}).encode(), "'model' must not contain"),
        (json.dumps({**CHAT, "model": "m" * 300}).encode(), "at most 256 characters"),
        (b"[" * 5000 + b"]" * 5000, "nested more than 100 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than 100 levels"),
        (b'{"model": "gpt-4o-mini", "n": ' + b"1" * 4301 + b"}", "too many digits"),
        (b'{"model": "gpt-4o-mini", "temperature": NaN}', "NaN is not a JSON value"),
        (b'{"model": "gpt-4o-mini", "temperature": Infinity}', "Infinity is not"),
        (b'{"model": "gpt-4o-mini", "temperature": -Infinity}', "-Infinity is not"),
        (b'{"model": "gpt-4o-mini", "temperature": 1e400}', "too large to be represented"),
    ],
)
def test_bodies_built_to_crash_get_a_400_and_one_log_line(
    gw: GatewayProcess, fake: FakeUpstream, body: bytes, fragment: str
) -> None:
    # The access line of the previous test's last request is written when its response
    # closes, which may be just after its client has it: let it land before counting.
    time.sleep(0.05)
    before = gw.logs()
    resp = post(gw, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert_valid("ErrorResponse", resp.json())
    assert fragment in error["message"]
    assert not fake.calls()
    time.sleep(0.05)
    new = gw.logs()[len(before) :]
    assert "Traceback" not in new and new.count("\n") == 1, new


def test_no_client_field_starts_a_log_line(gw: GatewayProcess, fake: FakeUpstream) -> None:
    forged = "\r\n2026-01-01 00:00:00,000 INFO [1] [-] proxyapi.access: FORGED"
    fake.script(Fault(status=500, body=json.dumps({"error": {"message": forged}}).encode()))
    post(gw, CHAT)  # the provider's error text is logged
    requests.get(f"{gw.url}/v1/models/x%0d%0aFORGED%1b[2J", headers=AUTH, timeout=5)
    requests.get(f"{gw.url}/v1/" + "p" * 1000 + "%0d%0aFORGED", headers=AUTH, timeout=5)
    post(gw, CHAT, **{"X-Request-ID": "id%0d%0aFORGED"})
    raw(gw, b"GET /\x1b[2J\r\nFORGED HTTP/1.1\r\n\r\n")
    time.sleep(0.1)
    lines = [line for line in gw.logs().splitlines() if line]
    assert any("FORGED" in line for line in lines)
    assert all(LOG_LINE.match(line) for line in lines), [
        line for line in lines if not LOG_LINE.match(line)
    ]
    assert "\x1b" not in gw.logs()
    access = [line for line in lines if "proxyapi.access: GET /v1/ppp" in line]
    assert access and all(len(line) < 600 for line in access)  # the 1000-char path is clipped


# ------------------------------------------------------------------ answers under failure


def test_a_provider_failure_outranks_a_later_providers_refusal(
    gw: GatewayProcess, fake: FakeUpstream
) -> None:
    fake.script(Fault(status=500))
    resp = post(gw, {**CHAT, "logprobs": True})
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["type"] == "upstream_error"
    assert post(gw, {**CHAT, "model": "claude/gpt-4o-mini", "logprobs": True}).status_code == 400


def test_the_gateways_own_deadline_is_not_retried_by_the_sdk(
    gw: GatewayProcess, fake: FakeUpstream
) -> None:
    client = openai.OpenAI(
        base_url=f"{gw.url}/v1",
        api_key=ALICE_KEY,
        max_retries=2,
        timeout=15,
        default_headers={"X-ProxyAPI-Timeout": "1"},
    )
    fake.mode = Fault(delay=2.5)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    took = time.monotonic() - started
    fake.mode = None
    client.close()
    assert info.value.status_code == 504
    assert info.value.response.headers["x-should-retry"] == "false"
    assert info.value.body["code"] == "deadline_exceeded"  # type: ignore[index]
    assert len(fake.calls("/chat/completions")) == 1 and took < 2.5


def test_asking_for_made_up_models_stores_nothing(gw: GatewayProcess, fake: FakeUpstream) -> None:
    def cache_files() -> int:
        # <tmp>/proxyapi-cache-<uid>/<ns>, beside the usage log
        (folder,) = [p for p in gw.tmp_dir.glob("proxyapi-cache-*/*") if p.is_dir()]
        return sum(1 for p in folder.iterdir())

    assert (
        requests.get(f"{gw.url}/v1/models/fake-model", headers=AUTH, timeout=5).json()["owned_by"]
        == "globbed"
    )
    files = cache_files()
    assert files > 0  # the provider's model list is there
    statuses = {
        requests.get(f"{gw.url}/v1/models/fake-{i}", headers=AUTH, timeout=5).status_code
        for i in range(300)
    }
    assert statuses == {404}
    assert cache_files() == files
    assert len(fake.calls("/models")) <= 1  # the provider's list, fetched once


def test_failed_authentications_are_limited_per_address(gw: GatewayProcess) -> None:
    def models(key: str, source: str) -> int:
        conn = http.client.HTTPConnection(
            "127.0.0.1", gw.port, timeout=5, source_address=(source, 0)
        )
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
        status = conn.getresponse().status
        conn.close()
        return status

    assert [models("pk-guess", "127.0.0.2") for _ in range(4)] == [401, 401, 401, 429]
    assert models(ALICE_KEY, "127.0.0.2") == 429  # whatever key it sends now
    assert models(ALICE_KEY, "127.0.0.3") == 200
    assert models("pk-guess", "127.0.0.3") == 401


@pytest.fixture
def secret_gateways(launch: Callable[..., GatewayProcess], fake: FakeUpstream) -> Iterator[Any]:
    yield lambda value: launch(base_config(fake), env={"FAKE_UPSTREAM_KEY": value})


def test_a_provider_key_pasted_with_a_newline_works(
    secret_gateways: Any, fake: FakeUpstream
) -> None:
    gw = secret_gateways(f"  {UPSTREAM_KEY}\n")
    assert post(gw, CHAT).status_code == 200
    assert fake.calls()[-1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_provider_key_with_a_newline_inside_stops_the_start_without_showing_it(
    secret_gateways: Any,
) -> None:
    with pytest.raises(RuntimeError) as info:
        secret_gateways(f"{UPSTREAM_KEY}\n{UPSTREAM_KEY}")
    assert "api_key_env names 'FAKE_UPSTREAM_KEY', whose value has whitespace" in str(info.value)
    assert UPSTREAM_KEY not in str(info.value)


def test_a_secret_the_provider_echoes_mid_stream_is_scrubbed(
    gw: GatewayProcess, fake: FakeUpstream
) -> None:
    stream = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
        + b'data: {"error": {"message": "key '
        + UPSTREAM_KEY.encode()
        + b' revoked"}}\n\n'
    )
    fake.script(Fault(body=stream, content_type="text/event-stream"))
    resp = requests.post(
        f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH, timeout=10
    )
    assert resp.status_code == 200
    assert UPSTREAM_KEY not in resp.text and "[redacted]" in resp.text
