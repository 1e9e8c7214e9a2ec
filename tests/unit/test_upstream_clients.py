"""The direct call to requests' urllib3 pool sends what requests' own path sends, and raises
what it raises."""

from __future__ import annotations

import socket

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from proxyapi.config import ProviderConfig
from proxyapi.providers.base import UpstreamRequest
from proxyapi.upstream import clients as clients_module
from proxyapi.upstream.clients import ProcessClients
from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream

TIMEOUT = urllib3.Timeout(connect=2, read=5)


def _clients(base_url: str) -> ProcessClients:
    provider = ProviderConfig(
        name="fake", type="openai", base_url=base_url, models=("gpt-4o-mini",)
    )
    return ProcessClients({"fake": provider}, {"fake": lambda: 0.0})


def _call(base_url: str, **headers: str) -> UpstreamRequest:
    return UpstreamRequest(
        "POST",
        f"{base_url}/chat/completions",
        {
            "Authorization": f"Bearer {UPSTREAM_KEY}",
            "Content-Type": "application/json",
            **headers,
        },
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
    )


def test_the_direct_path_sends_what_requests_sends(fake: FakeUpstream) -> None:
    clients = _clients(fake.base_url)
    call = _call(fake.base_url, **{"user-agent": "client/1.0"})
    direct = clients.send("fake", call, TIMEOUT)
    assert isinstance(direct.raw, urllib3.HTTPResponse)
    assert direct.status_code == 200 and direct.headers["content-type"] == "application/json"
    assert direct.json()["object"] == "chat.completion"
    via_requests = clients._send_with_requests("fake", call, TIMEOUT)
    assert via_requests.status_code == 200
    first, second = fake.calls("/chat/completions")
    assert first.path == second.path == "/v1/chat/completions"
    assert first.raw == second.raw == call.body
    # The same headers, names compared as HTTP does; a call's header replaces a default of
    # another case (one User-Agent, the client's).
    sent = {k.lower(): v for k, v in first.headers.items()}
    assert sent == {k.lower(): v for k, v in second.headers.items()}
    assert sent["user-agent"] == "client/1.0" and len(first.headers) == len(sent)
    # One pooled connection served both calls' pool: the direct path reuses requests' pool.
    assert clients.pool_counts("fake")["requests"] == 2


def test_a_header_requests_would_refuse_is_refused(fake: FakeUpstream) -> None:
    clients = _clients(fake.base_url)
    with pytest.raises(requests.exceptions.InvalidHeader):
        clients.send("fake", _call(fake.base_url, **{"anthropic-beta": " leading-space"}), TIMEOUT)
    assert fake.calls() == []


def test_a_refused_connection_raises_what_requests_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    base = f"http://127.0.0.1:{port}/v1"
    clients = _clients(base)
    clients.adapters["fake"].max_retries = urllib3.Retry(0, read=False)
    with pytest.raises(requests.ConnectionError) as direct:
        clients.send("fake", _call(base), TIMEOUT)
    with pytest.raises(requests.ConnectionError) as via_requests:
        clients._send_with_requests("fake", _call(base), TIMEOUT)
    assert type(direct.value) is type(via_requests.value)


def test_a_replaced_adapter_send_takes_requests_path(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    original = HTTPAdapter.send

    def spy(self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: object) -> object:
        sent.append(str(request.url))
        return original(self, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HTTPAdapter, "send", spy)
    clients = _clients(fake.base_url)
    assert clients.send("fake", _call(fake.base_url), TIMEOUT).status_code == 200
    assert sent == [f"{fake.base_url}/chat/completions"]
    assert clients_module._ADAPTER_SEND is original
