"""The pooled connections of one worker process: a Session and one adapter per provider.

Created lazily, on first use in each process, so nothing pooled is ever shared across a fork
(requests and urllib3 pools are not fork-aware).

A request with a body goes straight to the adapter's urllib3 pool (:meth:`ProcessClients.send`):
requests' ``Session.prepare_request`` and ``HTTPAdapter.send`` cost about 180 µs of CPU per
call on top of urllib3's own 160 µs (bench/overhead.py, docs/performance.md), for work that
is the same on every call to a provider: merging the session's settings, parsing the URL,
choosing the pool, checking the certificate settings. That work is done once per provider
here, and the call keeps requests' semantics: the same pool (requests' ``PoolManager``, TLS
settings from ``get_connection_with_tls_context`` and ``cert_verify``), the same headers (the
session's defaults under the call's, each checked as requests checks them), the same urllib3
``Retry`` and timeout, the same exceptions (:func:`_as_requests_error` is
``HTTPAdapter.send``'s mapping) and a ``requests.Response`` around the same urllib3 response.
Anything else (a proxy from the environment, a body-less call, an ``HTTPAdapter.send``
replaced by a test double or an instrumentation, a mock provider's transport) takes
requests' own path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_encoding_from_headers
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import InvalidHeader as _InvalidHeader
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError

from proxyapi.config import ProviderConfig
from proxyapi.providers.base import UpstreamRequest
from proxyapi.upstream.mock_transport import MockTransport
from proxyapi.upstream.retry import ProviderRetry

# requests' own send, to tell whether something has replaced it (the responses library in
# tests, an instrumentation): then every call goes through it.
_ADAPTER_SEND = HTTPAdapter.send


class ProcessClients:
    """One ``requests.Session`` and one ``HTTPAdapter`` (pool + Retry) per provider."""

    def __init__(
        self,
        providers: Mapping[str, ProviderConfig],
        failure_rates: Mapping[str, Callable[[], float]],
    ) -> None:
        self.pid = os.getpid()
        self.session = requests.Session()
        # Env proxies are read once here, not on every request (requests' trust_env does that).
        self.session.trust_env = False
        self.adapters: dict[str, HTTPAdapter] = {}
        self.proxies: dict[str, dict[str, str]] = {}
        for name, p in providers.items():
            retry = ProviderRetry.for_policy(p.retry, failure_rate=failure_rates[name])
            # pool_block=False: a burst above pool_size opens extra short-lived connections
            # instead of waiting; requests never passes a pool timeout, so blocking would wait
            # forever.
            if p.type == "mock":
                self.adapters[name] = MockTransport(p, max_retries=retry)
                self.proxies[name] = {}
                continue
            self.adapters[name] = HTTPAdapter(
                pool_connections=1, pool_maxsize=p.pool_size, max_retries=retry, pool_block=False
            )
            self.proxies[name] = requests.utils.get_environ_proxies(p.base_url)
        # Per URL: the pool requests would pick for it, and the path it would send.
        self._routes: dict[tuple[str, str], tuple[HTTPConnectionPool, str]] = {}
        self._default_headers = dict(self.session.headers)

    def send(self, name: str, call: UpstreamRequest, timeout: urllib3.Timeout) -> requests.Response:
        """Send ``call`` to provider ``name`` (streamed: the body is read by the caller)."""
        adapter = self.adapters[name]
        if (
            call.body is None
            or self.proxies[name]
            or HTTPAdapter.send is not _ADAPTER_SEND
            or type(adapter).send is not _ADAPTER_SEND
        ):
            return self._send_with_requests(name, call, timeout)
        pool, path = self._route(name, call.url)
        headers: dict[str, Any] = {**self._default_headers}
        # requests matches header names case-insensitively: a call's header replaces a
        # default of any case.
        lowered = {k.lower() for k in call.headers}
        for k in [k for k in headers if k.lower() in lowered]:
            del headers[k]
        for item in call.headers.items():
            check_header_validity(item)
        headers.update(call.headers)
        headers["Content-Length"] = str(len(call.body))
        try:
            raw = pool.urlopen(
                method=call.method,
                url=path,
                body=call.body,
                headers=headers,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=adapter.max_retries,
                timeout=timeout,
                chunked=False,
            )
        except Exception as exc:
            mapped = _as_requests_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        response = requests.Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = raw.reason or ""
        response.url = call.url
        response.connection = adapter
        return response

    def _route(self, name: str, url: str) -> tuple[HTTPConnectionPool, str]:
        known = self._routes.get((name, url))
        if known is not None:
            return known
        adapter = self.adapters[name]
        probe = requests.PreparedRequest()
        probe.prepare(method="POST", url=url)
        # requests' stubs say ConnectionPool; its PoolManager hands out HTTP(S)ConnectionPools.
        pool = cast(
            HTTPConnectionPool,
            adapter.get_connection_with_tls_context(probe, True, proxies={}, cert=None),
        )
        adapter.cert_verify(pool, url, True, None)  # type: ignore[no-untyped-call]
        parts = urlsplit(url)
        route = (pool, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        self._routes[(name, url)] = route
        return route

    def _send_with_requests(
        self, name: str, call: UpstreamRequest, timeout: urllib3.Timeout
    ) -> requests.Response:
        prepared = self.session.prepare_request(
            requests.Request(call.method, call.url, headers=dict(call.headers), data=call.body)
        )
        # The provider's own adapter is called directly, not through Session.send: two
        # providers may share a base URL (two accounts of one host) yet need their own pools
        # and retries, and a proxy must neither follow redirects nor keep cookies.
        return self.adapters[name].send(
            prepared,
            stream=True,
            # requests passes a urllib3 Timeout through as is (its stubs only know numbers).
            timeout=timeout,  # type: ignore[arg-type]
            verify=True,
            cert=None,
            proxies=self.proxies[name],
        )

    def pool_counts(self, name: str) -> dict[str, int]:
        """Connections this process opened to a provider, and how many requests reused one."""
        opened = sent = 0
        pools = self.adapters[name].poolmanager.pools
        for key in list(pools.keys()):
            with suppress(KeyError):  # evicted meanwhile
                pool = pools[key]
                opened += pool.num_connections
                sent += pool.num_requests
        return {
            "connections_opened": opened,
            "requests": sent,
            "connections_reused": max(0, sent - opened),
        }


def _as_requests_error(exc: Exception) -> Exception:
    """The requests exception ``HTTPAdapter.send`` raises for a urllib3 one (same order)."""
    if isinstance(exc, ProtocolError | OSError):
        return requests.ConnectionError(exc)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.ConnectTimeout(exc)
        if isinstance(reason, ResponseError):
            return requests.exceptions.RetryError(exc)
        if isinstance(reason, _ProxyError):
            return requests.exceptions.ProxyError(exc)
        if isinstance(reason, _SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.ConnectionError(exc)
    if isinstance(exc, ClosedPoolError):
        return requests.ConnectionError(exc)
    if isinstance(exc, _ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(exc, _SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.ReadTimeout(exc)
    if isinstance(exc, _InvalidHeader):
        return requests.exceptions.InvalidHeader(exc)
    return exc  # any other urllib3 error, as requests lets it through
