"""What an upstream outcome means (DESIGN.md section 4), and the one exception boundary.

:func:`translated` turns ``requests``/``urllib3`` exceptions into the gateway's errors;
:func:`judge` sorts an HTTP answer into what the fallback loop does with it.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import requests
import urllib3.exceptions

from proxyapi.errors import (
    ProxyAPIError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRejected,
    UpstreamTimeout,
)
from proxyapi.upstream.retry import retry_after_seconds

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig
    from proxyapi.providers.base import Adapter, UpstreamReply

log = logging.getLogger("proxyapi.upstream")


class Verdict(enum.Enum):
    """What the fallback loop does with one provider's outcome."""

    OK = "ok"  # answered
    FAILURE = "failure"  # the provider failed: its breaker counts it; try the next provider
    FALLBACK = "fallback"  # not a failure (429, unknown model there); try the next provider
    RELAY = "relay"  # the client's request is at fault: relay the error, try nobody else


class ProviderFailure(Exception):
    """Raised inside a breaker's ``calling()`` block so pybreaker counts the failure."""

    def __init__(self, error: ProxyAPIError) -> None:
        super().__init__(error.description)
        self.error = error


def judge(adapter: Adapter, reply: UpstreamReply) -> tuple[Verdict, ProxyAPIError | None]:
    """Sort a complete HTTP answer; the error is what the client gets if nobody else answers."""
    status = reply.status
    if 200 <= status < 300:
        return Verdict.OK, None
    name = adapter.provider.name
    if status in (401, 403):
        log.warning("provider %s rejected the gateway's credentials (HTTP %s)", name, status)
        return Verdict.FAILURE, UpstreamError(
            f"Provider '{name}' rejected the gateway's credentials (HTTP {status}); the "
            "operator should check its api_key_env.",
            error_code="upstream_auth_failed",
        )
    if status >= 500:
        info = adapter.parse_error(reply)
        log.warning("provider %s answered HTTP %s: %s", name, status, info.message)
        return Verdict.FAILURE, UpstreamError(
            f"Provider '{name}' failed with HTTP {status}: {info.message}"
        )
    if status < 400:
        log.warning("provider %s answered unexpected HTTP %s", name, status)
        return Verdict.FAILURE, UpstreamMalformed(
            f"Provider '{name}' answered with unexpected HTTP {status}."
        )
    info = adapter.parse_error(reply)
    headers = {}
    wait = retry_after_seconds(reply.headers) if status == 429 else None
    if wait is not None:
        headers["Retry-After"] = str(math.ceil(wait))
    error = UpstreamRejected(
        status,
        info.message,
        type=info.type,
        param=info.param,
        error_code=info.code,
        headers=headers,
    )
    if status in (404, 429):
        # Rate limited there, or the model is unknown there: another provider may serve it.
        return Verdict.FALLBACK, error
    return Verdict.RELAY, error


@contextmanager
def translated(provider: ProviderConfig) -> Iterator[None]:
    """Turn requests/urllib3 exceptions raised inside into the gateway's errors."""
    name = provider.name
    try:
        yield
    except ProxyAPIError:
        raise
    except (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError) as exc:
        log.warning("provider %s: connect timeout: %s", name, exc)
        raise UpstreamTimeout(f"Provider '{name}' did not accept a connection in time.") from exc
    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError) as exc:
        log.warning("provider %s: read timeout: %s", name, exc)
        raise _read_timeout(provider) from exc
    except requests.exceptions.ConnectionError as exc:
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
            log.warning("provider %s: read timeout: %s", name, exc)
            raise _read_timeout(provider) from exc
        if isinstance(reason, urllib3.exceptions.ProtocolError):
            log.warning("provider %s: connection broke: %s", name, exc)
            raise _broken(name) from exc
        log.warning("provider %s: connection failed: %s", name, exc)
        raise UpstreamError(
            f"Provider '{name}' is unreachable.", error_code="upstream_unreachable"
        ) from exc
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        log.warning("provider %s: connection broke: %s", name, exc)
        raise _broken(name) from exc


def _read_timeout(provider: ProviderConfig) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"Provider '{provider.name}' sent nothing within its read timeout "
        f"({provider.timeout.read:g}s) or the request's deadline."
    )


def _broken(name: str) -> UpstreamError:
    return UpstreamError(
        f"The connection to provider '{name}' broke.", error_code="upstream_connection_broken"
    )
