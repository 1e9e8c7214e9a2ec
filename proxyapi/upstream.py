"""Everything that talks to providers: pooled connections, and the one exception boundary.

This is the only module that sends anything over the network, and the only one that sees
``requests`` or ``urllib3`` exceptions: :func:`_translated` turns them into the gateway's own
errors. Each worker process gets its own ``requests.Session`` and one ``HTTPAdapter`` (a
connection pool) per provider, created lazily on first use in that process, so nothing pooled
is ever shared across a fork.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import urllib3.exceptions
from flask import Flask
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from proxyapi.errors import (
    ProxyAPIError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRejected,
    UpstreamTimeout,
)
from proxyapi.providers import adapter_for
from proxyapi.providers.base import Adapter, Operation, UpstreamReply, UpstreamRequest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from proxyapi.config import Config, ProviderConfig
    from proxyapi.routing import Target

EXTENSION = "proxyapi.upstream"
log = logging.getLogger(__name__)

# Largest error body read from a provider; error bodies are small, anything bigger is noise.
MAX_ERROR_BODY = 64 * 1024
# read1() size for streams: returns whatever has arrived, up to this much.
STREAM_READ_SIZE = 64 * 1024
# No retries here: retrying a POST can bill twice, and retry policy is decided per provider.
NO_RETRIES = Retry(total=0, connect=0, read=False, redirect=False, status=0, raise_on_status=False)


@dataclass(frozen=True)
class Answer:
    """A complete OpenAI-shaped answer and who gave it."""

    provider: str
    body: bytes


@dataclass
class OpenedStream:
    """A stream whose upstream said 2xx: OpenAI SSE bytes to relay, and a way to abort it.

    ``abort`` may be called from any thread: it shuts the socket down so that a read blocked in
    ``chunks`` returns at once; ``chunks`` itself closes the upstream response when it ends.
    """

    provider: str
    chunks: Iterator[bytes]
    abort: Callable[[], None]


class _ProcessClients:
    """The pooled connections of one worker process."""

    def __init__(self, providers: Mapping[str, ProviderConfig]) -> None:
        self.pid = os.getpid()
        self.session = requests.Session()
        # Env proxies are read once here, not on every request (requests' trust_env does that).
        self.session.trust_env = False
        self.adapters: dict[str, HTTPAdapter] = {}
        self.proxies: dict[str, dict[str, str]] = {}
        for name, p in providers.items():
            # pool_block=False: a burst above pool_size opens extra short-lived connections
            # instead of waiting; requests never passes a pool timeout, so blocking would wait
            # forever.
            self.adapters[name] = HTTPAdapter(
                pool_connections=1,
                pool_maxsize=p.pool_size,
                max_retries=NO_RETRIES,
                pool_block=False,
            )
            self.proxies[name] = requests.utils.get_environ_proxies(p.base_url)


class Upstream:
    """Sends OpenAI operations to providers and returns OpenAI-shaped answers."""

    def __init__(self, config: Config) -> None:
        self.providers = {p.name: p for p in config.providers}
        self.adapters: dict[str, Adapter] = {p.name: adapter_for(p) for p in config.providers}
        self._lock = threading.Lock()
        self._clients: _ProcessClients | None = None

    # ----------------------------------------------------------------- per-process clients

    def _process_clients(self) -> _ProcessClients:
        clients = self._clients
        if clients is None or clients.pid != os.getpid():
            with self._lock:
                clients = self._clients
                if clients is None or clients.pid != os.getpid():
                    # A pool inherited through fork shares sockets with the parent: start fresh.
                    clients = self._clients = _ProcessClients(self.providers)
        return clients

    def _send(self, provider: ProviderConfig, call: UpstreamRequest) -> requests.Response:
        clients = self._process_clients()
        prepared = clients.session.prepare_request(
            requests.Request(call.method, call.url, headers=dict(call.headers), data=call.body)
        )
        # The provider's own adapter is called directly, not through Session.send: two
        # providers may share a base URL (two accounts of one host) yet need their own pools,
        # and a proxy must neither follow redirects nor keep cookies between clients.
        return clients.adapters[provider.name].send(
            prepared,
            stream=True,
            timeout=(provider.timeout.connect, provider.timeout.read),
            verify=True,
            cert=None,
            proxies=clients.proxies[provider.name],
        )

    # ----------------------------------------------------------------- operations

    def complete(self, targets: list[Target], op: Operation, body: Mapping[str, Any]) -> Answer:
        """Send a non-streaming request to the first target and return its parsed answer."""
        target = targets[0]
        adapter = self.adapters[target.provider.name]
        call = adapter.build(op, body, target.model, stream=False)
        with _translated(target.provider):
            resp = self._send(target.provider, call)
            try:
                reply = UpstreamReply(resp.status_code, resp.headers, resp.content)
            finally:
                resp.close()
        _check_status(adapter, reply)
        try:
            return Answer(target.provider.name, adapter.parse(op, reply))
        except UpstreamMalformed as exc:
            log.warning("provider %s: %s", target.provider.name, exc.description)
            raise

    def open_stream(
        self, targets: list[Target], op: Operation, body: Mapping[str, Any]
    ) -> OpenedStream:
        """Start a streaming request; return once the upstream has answered 2xx."""
        target = targets[0]
        provider = target.provider
        adapter = self.adapters[provider.name]
        call = adapter.build(op, body, target.model, stream=True)
        with _translated(provider):
            resp = self._send(provider, call)
        if not 200 <= resp.status_code < 300:
            with _translated(provider):
                try:
                    reply = UpstreamReply(resp.status_code, resp.headers, _read_capped(resp))
                finally:
                    resp.close()
            _check_status(adapter, reply)
        content_type = resp.headers.get("Content-Type", "")
        if "text/event-stream" not in content_type:
            resp.close()
            raise UpstreamMalformed(
                f"Provider '{provider.name}' answered a streaming request with "
                f"{content_type or 'no content type'} instead of an event stream."
            )
        translator = adapter.stream_translator(op)

        def chunks() -> Iterator[bytes]:
            try:
                with _translated(provider):
                    while True:
                        data = resp.raw.read1(STREAM_READ_SIZE, decode_content=True)
                        if not data:
                            break
                        if translator is None:
                            yield data
                        else:
                            yield from translator.feed(data)
                    if translator is not None:
                        yield from translator.close()
            finally:
                resp.close()

        def abort() -> None:
            # ValueError/RuntimeError: already finished or released, nothing to interrupt.
            with suppress(ValueError, RuntimeError, OSError):
                resp.raw.shutdown()

        return OpenedStream(provider.name, chunks(), abort)

    def list_models(self, provider: ProviderConfig) -> list[str]:
        """Ask a provider which models it has."""
        adapter = self.adapters[provider.name]
        call = adapter.build_list_models()
        if call is None:
            return []
        with _translated(provider):
            resp = self._send(provider, call)
            try:
                reply = UpstreamReply(resp.status_code, resp.headers, _read_capped(resp))
            finally:
                resp.close()
        _check_status(adapter, reply)
        return adapter.parse_list_models(reply)


def _read_capped(resp: requests.Response) -> bytes:
    data = resp.raw.read(MAX_ERROR_BODY, decode_content=True)
    return data or b""


def _check_status(adapter: Adapter, reply: UpstreamReply) -> None:
    """Raise the client-facing error for a non-2xx reply (DESIGN.md section 4)."""
    status = reply.status
    if 200 <= status < 300:
        return
    name = adapter.provider.name
    if status in (401, 403) or status >= 500 or status < 400:
        log.warning("provider %s answered HTTP %s", name, status)
    if status in (401, 403):
        # The provider refused *our* credentials: a gateway misconfiguration, never the
        # client's 401.
        raise UpstreamError(
            f"Provider '{name}' rejected the gateway's credentials (HTTP {status}); the "
            "operator should check its api_key_env.",
            error_code="upstream_auth_failed",
        )
    if 400 <= status < 500:
        info = adapter.parse_error(reply)
        headers = {}
        if status == 429 and reply.headers.get("Retry-After"):
            headers["Retry-After"] = reply.headers["Retry-After"]
        raise UpstreamRejected(
            status,
            info.message,
            type=info.type,
            param=info.param,
            error_code=info.code,
            headers=headers,
        )
    if status >= 500:
        info = adapter.parse_error(reply)
        raise UpstreamError(f"Provider '{name}' failed with HTTP {status}: {info.message}")
    raise UpstreamMalformed(f"Provider '{name}' answered with unexpected HTTP {status}.")


@contextmanager
def _translated(provider: ProviderConfig) -> Iterator[None]:
    """Turn requests/urllib3 exceptions raised inside into the gateway's errors."""
    name = provider.name
    try:
        yield
    except ProxyAPIError:
        raise
    except (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError) as exc:
        log.warning("provider %s: connect timeout: %s", name, exc)
        raise UpstreamTimeout(
            f"Provider '{name}' did not accept a connection within {provider.timeout.connect:g}s."
        ) from exc
    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError) as exc:
        log.warning("provider %s: read timeout: %s", name, exc)
        raise UpstreamTimeout(
            f"Provider '{name}' sent nothing for {provider.timeout.read:g}s."
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        log.warning("provider %s: connection failed: %s", name, exc)
        if _is_read_timeout(exc):
            raise UpstreamTimeout(
                f"Provider '{name}' sent nothing for {provider.timeout.read:g}s."
            ) from exc
        raise UpstreamError(
            f"Provider '{name}' is unreachable.", error_code="upstream_unreachable"
        ) from exc
    except (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    ) as exc:
        log.warning("provider %s: connection broke: %s", name, exc)
        raise UpstreamError(
            f"The connection to provider '{name}' broke.", error_code="upstream_connection_broken"
        ) from exc


def _is_read_timeout(exc: requests.exceptions.ConnectionError) -> bool:
    """Tell a read timeout that exhausted urllib3's retries (requests calls it ConnectionError)."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, urllib3.exceptions.ReadTimeoutError)


def init_app(app: Flask, config: Config) -> None:
    """Keep the app's :class:`Upstream` in ``app.extensions``."""
    app.extensions[EXTENSION] = Upstream(config)
